//! Unit tests of the options; the driver against the kernel is tested in
//! `pmd/tests/af_xdp.rs` (root, a testbed namespace).

use super::*;

fn opts(spec: &str) -> Result<Options, PmdError> {
    options_of(&Spec::parse(spec).unwrap())
}

#[test]
fn the_defaults_are_the_issue_s_spec() {
    let o = opts("af_xdp:p0").unwrap();
    assert_eq!(o, Options::default());
    assert_eq!((o.frame_size, o.num_frames, o.rx_size, o.tx_size), (2048, 4096, 2048, 2048));
    assert_eq!((o.zero_copy, o.busy_poll, o.need_wakeup), (ZeroCopy::Auto, 0, true));
    // 2048 - MbufHdr (128) - XDP_PACKET_HEADROOM (256).
    assert_eq!(o.max_frame(), 1664);
}

#[test]
fn every_option_is_read() {
    let o = opts(
        "af_xdp:p0?queues=2&zero_copy=off&frame_size=4096&num_frames=512&rx_size=256&tx_size=128&busy_poll=50&need_wakeup=0",
    )
    .unwrap();
    assert_eq!(
        o,
        Options {
            queues: 2,
            zero_copy: ZeroCopy::Off,
            frame_size: 4096,
            num_frames: 512,
            rx_size: 256,
            tx_size: 128,
            busy_poll: 50,
            need_wakeup: false
        }
    );
    assert_eq!(opts("af_xdp:p0?zero_copy=on").unwrap().zero_copy, ZeroCopy::On);
}

#[test]
fn inconsistent_sizes_name_the_option() {
    let e = opts("af_xdp:p0?rx_size=4096").unwrap_err().to_string();
    assert!(e.contains("'num_frames'") && e.contains("6144"), "{e}");
    let e = opts("af_xdp:p0?busy_poll=2000000").unwrap_err().to_string();
    assert!(e.contains("'busy_poll'"), "{e}");
}
