//! Test helpers shared by the TCP test modules.

use super::*;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// The configuration the tests use unless they say otherwise.
pub(crate) fn cfg() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        send_buffer: 64 * 1024,
        recv_buffer: 64 * 1024,
        rto: RtoConfig { initial_ns: SEC, min_ns: 200 * MS, max_ns: 60 * SEC },
        max_retransmits: 8,
        syn_retries: 4,
        time_wait_ns: 4 * SEC,
        window_scale: Some(7),
        timestamps: true,
        sack: true,
        nagle: false,
        congestion: CongestionControl::NewReno,
        delayed_ack_ns: None,
        keepalive: None,
        challenge_ack_limit: 10,
        default_peer_mss: 536,
    }
}
