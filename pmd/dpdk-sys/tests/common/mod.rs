//! Shared by the dpdk-sys tests (each its own process: EAL initialises once
//! per process).

use dpdk_sys::rte_eal_init;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::ptr;

/// Calls `rte_eal_init` with `args` (args[0] is the program name).
/// Returns its result; the CStrings are leaked on purpose: EAL may keep
/// pointers into argv for the life of the process.
pub fn eal_init(args: &[&str]) -> c_int {
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| CString::new(*a).unwrap().into_raw()).collect();
    let argc = argv.len() as c_int;
    argv.push(ptr::null_mut());
    let argv = Box::leak(argv.into_boxed_slice());
    // SAFETY: argv is a leaked, NULL-terminated array of `argc` valid,
    // NUL-terminated, leaked C strings, so every pointer EAL keeps or
    // permutes stays valid for the rest of the process.
    unsafe { rte_eal_init(argc, argv.as_mut_ptr()) }
}
