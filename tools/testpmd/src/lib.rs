//! `testpmd`: DPDK testpmd's forwarding modes and counters over any `pmd` port
//! spec, and a DTS-style conformance checklist.
//!
//! * [`fwd`]: the forwarding engines (`io`, `mac`, `macswap`, `5tswap`,
//!   `rxonly`, `txonly`, `flowgen`, `icmpecho`) as a per-core
//!   [`pmd::runtime::Lcore`];
//! * [`conformance`]: the checklist `testpmd conformance --port SPEC` runs
//!   (PASS / FAIL / UNSUPPORTED per check);
//! * the binary (`src/main.rs`): the CLI, with DPDK's flag names.
//!
//! It is a tool built on `pmd`, not part of it: `pmd` is buffers, the port
//! traits, the drivers and the per-core runtime.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conformance;
pub mod fwd;
