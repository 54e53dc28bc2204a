//! `lb`: a full-proxy L4 load balancer written over the Flow API, so the same
//! code runs on our stack (`--stack user`, a pmd port) or the kernel's
//! (`--stack kernel`).
//!
//! ```sh
//! lb init > lb.toml                 # every key, with its value and a comment
//! lb check -c lb.toml               # exit 2 naming the key path at fault
//! lb run -c lb.toml --stack kernel --cores 0
//! lb run -c lb.toml --stack user --port tap:lb0 --ip 198.18.1.1/24 --cores 0
//! lb run -c lb.toml --stack user --port 'tap:lb0?queues=2' --ip 198.18.1.1/24 --cores 0,1 --rss-key microsoft
//! ```
//!
//! Rooms: [`config`] (the TOML file, checked into the values the data path
//! uses), [`maglev`] (NSDI'16 §3.4 consistent hashing), [`balance`] (picking a
//! server: Maglev, smooth weighted round robin, leastconn; per core),
//! [`proxy`] (accept, pick, connect, the session), [`splice`] (the data
//! phase: bounded buffers, half-close, idle timeouts), [`tcplog`],
//! [`proxy_proto`]
//! (PROXY protocol v1/v2, sent and strictly parsed), [`health`] (active
//! checks on one core, verdicts to all), [`control`] (what crosses cores:
//! commands, reloads, counters), [`admin`] (`/metrics`, `/stats`, runtime
//! API), [`run`] (`lb run`: runtimes, signals, reload), [`cli`].
//!
//! Per core, shared-nothing: each core builds its own balancer state (its own
//! Maglev table copy, connection counts, queue and counters) from the same
//! checked config; nothing on the data path is shared between cores.
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod cli;
pub mod config;
pub mod control;
pub mod forward;
pub mod health;
pub mod maglev;
pub mod proxy;
pub mod proxy_proto;
pub mod run;
pub mod splice;
pub mod tcplog;

pub use cli::main_with;
