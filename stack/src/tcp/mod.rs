//! TCP: the sans-IO connection state machine ([`conn`]) and RTO estimation
//! ([`rtt`]). The socket layer (demultiplexing, listener and accept queue, timer
//! wheel integration, checksums and offloads) sits on top and feeds it segments.

pub mod conn;
pub mod rtt;

pub use conn::{Connection, Event, Ports, State, TcpConfig, TcpConfigError, TcpError, Transmit};
pub use rtt::RtoConfig;

#[cfg(test)]
mod tests;
