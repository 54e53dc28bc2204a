//! TCP: the sans-IO connection state machine ([`conn`]), the listener
//! ([`listener`]: backlog, SYN cookies, RFC 6528 ISNs), RTO estimation
//! ([`rtt`]) and congestion control ([`cc`]). The socket layer
//! (demultiplexing, accept queue, timer wheel integration, checksums and
//! offloads) is `Stack`'s: see `Stack::tcp_listen` and `Stack::tcp_connect`.

pub mod cc;
pub mod conn;
pub mod listener;
pub mod recv;
pub mod rtt;
mod text;

pub use cc::CongestionControl;
pub use conn::{Connection, Event, Keepalive, Ports, State, TcpConfig, TcpConfigError, TcpError, Transmit};
pub use listener::{FlowId, ListenConfig, Listener, ListenerStats, SynCookies};
pub use rtt::RtoConfig;

#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_common;
