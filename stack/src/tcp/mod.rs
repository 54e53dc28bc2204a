//! TCP: the sans-IO connection state machine ([`conn`]) with its send
//! buffer ([`send`]) and receive queue ([`recv`]), its configuration and the
//! configuration's text form ([`config`]), the listener ([`listener`]: listen
//! and SYN backlogs, SYN cookies, RFC 6528 ISNs), RTO estimation ([`rtt`]) and
//! congestion control ([`cc`]). The socket layer
//! (demultiplexing, accept queue, timer wheel integration, checksums and
//! offloads) is `Stack`'s ([`crate::socket::tcp`]).

pub mod cc;
pub mod config;
pub mod conn;
pub mod listener;
pub mod recv;
pub mod rtt;
pub mod send;

pub use cc::CongestionControl;
pub use config::{Keepalive, TcpConfig, TcpConfigError};
pub use conn::{Connection, Event, Ports, State, TcpError, Transmit};
pub use listener::{FlowId, ListenConfig, Listener, ListenerStats, SynCookies};
pub use rtt::RtoConfig;

#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_common;
