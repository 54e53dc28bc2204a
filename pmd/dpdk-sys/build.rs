//! Build script for `dpdk-sys`.
//!
//! 1. Finds the system's DPDK with pkg-config (`libdpdk`, >= 22.11).
//! 2. Compiles `csrc/shim.c` (non-inline wrappers for DPDK's static-inline
//!    fast path) with exactly the cflags DPDK's pkg-config file gives.
//! 3. Emits the link lines: the shim archive first, then DPDK's shared
//!    libraries (dynamic linking, so EAL auto-loads its PMD directory).
//! 4. Runs bindgen over `csrc/wrapper.h` with the same cflags.
//!
//! Nothing here knows a struct layout or an offset: every layout comes from
//! the headers that are installed, so the crate follows DPDK from one LTS
//! release to the next.

use std::env;
use std::path::PathBuf;
use std::process;

/// Oldest DPDK this crate is written and tested against.
const MIN_DPDK: &str = "22.11";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let csrc = manifest_dir.join("csrc");
    for f in ["wrapper.h", "shim.h", "shim.c"] {
        println!("cargo:rerun-if-changed={}", csrc.join(f).display());
    }

    let dpdk = probe_dpdk();

    // Split pkg-config's cflags into include dirs, defines and other flags
    // (`-include rte_config.h`, `-march=...`). The pkg-config crate already
    // parsed -I and -D; everything else we take verbatim from the tool.
    let other_cflags = other_cflags();

    // ---- C shim -------------------------------------------------------
    let mut cc = cc::Build::new();
    cc.file(csrc.join("shim.c"))
        .include(&csrc)
        .warnings(true)
        .extra_warnings(true)
        // DPDK headers cast away const and compare signed/unsigned in
        // places; those are theirs, not ours.
        .flag_if_supported("-Wno-cast-qual")
        .flag_if_supported("-Wno-sign-compare")
        .flag_if_supported("-Wno-unused-parameter")
        // Experimental APIs used inside inline bodies (none today, but the
        // set moves between releases) must not stop the build.
        .define("ALLOW_EXPERIMENTAL_API", None)
        .opt_level(3);
    for inc in &dpdk.include_paths {
        cc.include(inc);
    }
    for (k, v) in &dpdk.defines {
        cc.define(k, v.as_deref());
    }
    for f in &other_cflags {
        cc.flag(f);
    }
    // Emits `rustc-link-lib=static=dpdk_shim` before the DPDK libraries
    // below, so the linker sees the shim's undefined references
    // (rte_eth_fp_ops, rte_mempool_ops_table, ...) before it decides which
    // --as-needed shared libraries are needed.
    cc.compile("dpdk_shim");

    // ---- link DPDK (dynamic) -----------------------------------------
    for p in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
    for lib in &dpdk.libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    // rte_bus_vdev.h is bound, but librte_bus_vdev is a driver library that
    // libdpdk.pc lists only for static linking. Link it when it is there.
    if !dpdk.libs.iter().any(|l| l == "rte_bus_vdev") {
        let found = dpdk.link_paths.iter().chain(dpdk.libdir.iter()).any(|d| d.join("librte_bus_vdev.so").exists());
        if found {
            println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
        } else {
            println!("cargo:warning=librte_bus_vdev.so not found; rte_vdev_* functions will not link");
        }
    }

    // Metadata for dependents (`links = "dpdk"` => DEP_DPDK_*).
    println!("cargo:version={}", dpdk.version);
    let incs: Vec<String> = dpdk.include_paths.iter().map(|p| p.display().to_string()).collect();
    println!("cargo:include={}", env::join_paths(&incs).unwrap().to_string_lossy());
    if let Some(dir) = &dpdk.libdir {
        println!("cargo:libdir={}", dir.display());
    }

    // ---- bindgen -------------------------------------------------------
    let mut clang_args: Vec<String> = Vec::new();
    for inc in &dpdk.include_paths {
        clang_args.push(format!("-I{}", inc.display()));
    }
    clang_args.push(format!("-I{}", csrc.display()));
    for (k, v) in &dpdk.defines {
        clang_args.push(match v {
            Some(v) => format!("-D{k}={v}"),
            None => format!("-D{k}"),
        });
    }
    clang_args.push("-DALLOW_EXPERIMENTAL_API".into());
    clang_args.extend(other_cflags.iter().cloned());

    // Generate code for the crate's declared MSRV (rust-version), not for
    // whatever bindgen considers the newest stable.
    let rust_target =
        env::var("CARGO_PKG_RUST_VERSION").ok().and_then(|v| v.parse::<bindgen::RustTarget>().ok()).unwrap_or_default();

    let bindings = bindgen::Builder::default()
        .rust_target(rust_target)
        .header(csrc.join("wrapper.h").to_string_lossy())
        .clang_args(&clang_args)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        // Unprefixed constants that the bound API takes or returns.
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("E_RTE_.*")
        // Per-lcore variables are C `__thread` variables: Rust cannot bind
        // a foreign thread-local, so they are reached through the shim.
        .blocklist_item("per_lcore_.*")
        // Packed protocol headers from rte_flow.h's includes that rustc
        // rejects as bindgen writes them (a packed struct holding a
        // repr(align) union; a derive(Debug) over a packed bitfield
        // struct). Opaque keeps their size and alignment, drops fields.
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_.*")
        // Static-inline functions have no symbol in the shared libraries;
        // the shim wraps the ones we need.
        .generate_inline_functions(false)
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .impl_debug(false)
        .prepend_enum_name(false)
        // C enum constants share one namespace, so plain top-level consts
        // never collide and read like the C (`RTE_ETH_MQ_RX_NONE`). This
        // also gives anonymous enums' constants (`E_RTE_SECONDARY`) a
        // stable path, which module-style enums would not.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .size_t_is_usize(true)
        .generate_comments(true)
        .clang_arg("-fparse-all-comments")
        .generate()
        .unwrap_or_else(|e| {
            eprintln!("error: bindgen failed on {}: {e}", csrc.join("wrapper.h").display());
            eprintln!("       (bindgen needs libclang: `apt-get install libclang-dev`)");
            process::exit(1);
        });
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("write bindings.rs");
}

struct Dpdk {
    version: String,
    include_paths: Vec<PathBuf>,
    link_paths: Vec<PathBuf>,
    libs: Vec<String>,
    defines: Vec<(String, Option<String>)>,
    libdir: Option<PathBuf>,
}

fn probe_dpdk() -> Dpdk {
    let lib = pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        // Link lines are emitted by hand after the shim (see main).
        .cargo_metadata(false)
        .env_metadata(true)
        .statik(false)
        .probe("libdpdk");
    let lib = match lib {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!();
            eprintln!("error: dpdk-sys could not find DPDK >= {MIN_DPDK} with pkg-config (libdpdk).");
            eprintln!();
            eprintln!("  On Debian/Ubuntu install it with:   apt-get install libdpdk-dev libclang-dev");
            eprintln!("  A DPDK built from source: point PKG_CONFIG_PATH at the directory holding");
            eprintln!("  its libdpdk.pc, e.g. PKG_CONFIG_PATH=/opt/dpdk/lib/x86_64-linux-gnu/pkgconfig");
            eprintln!();
            eprintln!("  pkg-config said: {e}");
            process::exit(1);
        }
    };
    // pkg-config lists rte_* libraries; it may also list system libraries
    // (bsd, numa, ...) which we keep: they are DPDK's dependencies.
    let libdir = pkg_config::get_variable("libdpdk", "libdir").ok().map(PathBuf::from).filter(|p| p.is_dir());
    Dpdk {
        version: lib.version.clone(),
        // The pkg-config crate asks with PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1,
        // so a dependency's `-I/usr/include` can appear; as an explicit -I
        // it would be searched before the compiler's own builtin headers.
        include_paths: lib
            .include_paths
            .iter()
            .filter(|p| !matches!(p.to_str(), Some("/usr/include" | "/usr/local/include")))
            .cloned()
            .collect(),
        link_paths: lib.link_paths.clone(),
        libs: lib.libs.clone(),
        defines: lib.defines.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        libdir,
    }
}

/// The cflags from `pkg-config --cflags libdpdk` that are neither -I nor -D
/// (which the pkg-config crate already parsed): on Debian 12 that is
/// `-include rte_config.h -march=corei7`. `-include X` stays a pair of
/// adjacent arguments (cc's `flag()` and clang both keep the order).
fn other_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = process::Command::new(&pkg_config).args(["--cflags", "libdpdk"]).output().unwrap_or_else(|e| {
        eprintln!("error: running {pkg_config}: {e}");
        process::exit(1);
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = Vec::new();
    let mut it = text.split_whitespace();
    while let Some(tok) = it.next() {
        if tok.starts_with("-I") || tok.starts_with("-D") {
            continue;
        }
        if tok == "-include" {
            if let Some(hdr) = it.next() {
                flags.push("-include".to_string());
                flags.push(hdr.to_string());
            }
            continue;
        }
        flags.push(tok.to_string());
    }
    flags
}
