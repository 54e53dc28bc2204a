//! TCP: the sans-IO connection state machine ([`conn`]) and RTO estimation
//! ([`rtt`]). The socket layer (demultiplexing, listener and accept queue, timer
//! wheel integration, checksums and offloads) sits on top and feeds it segments.

pub mod cc;
pub mod conn;
pub mod listener;
pub mod rtt;

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
