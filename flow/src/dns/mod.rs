//! A DNS stub resolver over [`Datagram`](crate::Datagram) (and a [`Flow`](crate::Flow)
//! for truncated answers), so it runs on our stack and on the kernel's.
//!
//! * [`message`]: the sans-IO core — build a query, judge an answer
//!   (hickory-proto is the wire codec);
//! * [`cache`]: the per-core cache (TTLs, an explicit cap);
//! * [`hosts`]: a static table;
//! * [`resolver`]: the driver on the executor (UDP, TCP on truncation,
//!   timeouts, retries, counters).

pub mod cache;
pub mod hosts;
pub mod message;
pub mod resolver;

use std::fmt;
use std::net::IpAddr;

use crate::connect::dial::LocalBoxFuture;
use crate::happy_eyeballs::Family;

pub use hosts::Hosts;
pub use resolver::{Resolver, ResolverConfig, ResolverStats};

/// Why a lookup failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The name does not exist (NXDOMAIN).
    NoSuchName(String),
    /// No server answered in time after every retry.
    TimedOut {
        /// The name.
        name: String,
        /// Queries sent.
        tries: u32,
    },
    /// A server answered with an error code.
    Server {
        /// The name.
        name: String,
        /// The response code.
        rcode: String,
    },
    /// Sending or receiving failed.
    Io(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NoSuchName(n) => write!(f, "{n}: no such name"),
            ResolveError::TimedOut { name, tries } => write!(f, "{name}: no answer after {tries} queries"),
            ResolveError::Server { name, rcode } => write!(f, "{name}: server answered {rcode}"),
            ResolveError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Something that turns a name into addresses of one family.
pub trait Lookup {
    /// The addresses of `name` in `family` (empty: the name has none).
    fn lookup(&self, name: &str, family: Family) -> LocalBoxFuture<'static, Result<Vec<IpAddr>, ResolveError>>;
}
