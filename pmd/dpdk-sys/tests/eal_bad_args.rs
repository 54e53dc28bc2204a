//! A bad EAL argument makes `rte_eal_init` fail with -1 and a readable
//! `rte_errno`. This is its own test binary (its own process) because a
//! process initialises EAL once; the successful init is in
//! `eal_null_port.rs`.

use dpdk_sys::*;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::ptr;

fn eal_init(args: &[&str]) -> c_int {
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| CString::new(*a).unwrap().into_raw()).collect();
    let argc = argv.len() as c_int;
    argv.push(ptr::null_mut());
    let argv = Box::leak(argv.into_boxed_slice());
    // SAFETY: argv is a leaked, NULL-terminated array of `argc` valid,
    // leaked C strings, so whatever EAL keeps or permutes stays valid.
    unsafe { rte_eal_init(argc, argv.as_mut_ptr()) }
}

#[test]
fn bad_eal_argument_fails_with_einval() {
    let ret = eal_init(&["dpdk-sys-test", "--no-huge", "--no-shconf", "--no-pci", "--definitely-not-an-eal-flag"]);
    assert_eq!(ret, -1);
    let e = errno();
    let text = strerror(e);
    eprintln!("rte_eal_init -> {ret}, rte_errno {e}: {text}");
    assert_eq!(e, 22, "EINVAL");
    assert_eq!(text, "Invalid argument");
}
