//! The sockets of a [`Stack`](crate::Stack), each over the interface's
//! receive demux and its shared IP emit path (the layout of smoltcp's
//! `socket/`):
//!
//! * [`udp`]: UDP sockets — bind, zero-copy receive queue, send by prepending
//!   headers into the payload buffer's headroom.
//! * [`echo`]: ICMP / ICMPv6 echo sockets (`ping`).
//! * [`tcp`]: TCP sockets — the connection table, the listen backlog and
//!   accept queue, handles and readiness tokens — over the sans-IO state
//!   machines in [`crate::tcp`].

pub mod echo;
pub mod tcp;
pub mod udp;
