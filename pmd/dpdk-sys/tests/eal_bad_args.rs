//! A bad EAL argument makes `rte_eal_init` fail with -1 and a readable
//! `rte_errno`. This is its own test binary (its own process) because a
//! process initialises EAL once; the successful init is in
//! `eal_null_port.rs`.

mod common;

use common::eal_init;
use dpdk_sys::*;

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
