//! The TCP socket table of one stack: slab slots with generations (so a
//! stale handle is an error, never another connection), the 4-tuple index,
//! the listeners with their **accept queues** (a listener's listen backlog
//! and SYN backlog are enforced by [`Listener`](crate::tcp::Listener); the
//! established connections waiting for `accept` live here), the readiness
//! and dirty lists, and the transmit buffer stash.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pmd::Mbuf;

use super::flow_hash::FlowHash;
use super::{token, TcpHandle, TcpListenerHandle, TcpSocketError, LISTENER_TOKEN};
use crate::tcp::{Connection, FlowId, Listener, TcpConfig};
use crate::timer::TimerId;

/// Transmit buffers taken from the pool at once.
pub(super) const STASH: usize = 32;

/// Who holds a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Established, waiting in listener `index`'s accept queue.
    Queued(u32),
    /// The application holds its handle.
    App,
    /// Closed by the application; finishing in the background.
    Orphan,
}

pub(super) struct ConnEntry {
    pub(super) conn: Connection,
    pub(super) flow: FlowId,
    pub(super) next_hop: IpAddr,
    pub(super) owner: Owner,
    /// In `TcpTable::flows` (removed once CLOSED so the 4-tuple can be reused).
    pub(super) in_flows: bool,
    pub(super) timer: Option<(TimerId, u64)>,
    pub(super) in_ready: bool,
    pub(super) in_dirty: bool,
    /// A failure the state machine does not know about (unreachable).
    pub(super) failure: Option<TcpSocketError>,
}

pub(super) struct ConnSlot {
    pub(super) generation: u32,
    pub(super) entry: Option<ConnEntry>,
}

pub(super) struct ListenEntry {
    pub(super) listener: Listener,
    pub(super) key: (Option<IpAddr>, u16),
    pub(super) queue: VecDeque<u32>,
    pub(super) timer: Option<(TimerId, u64)>,
    pub(super) in_ready: bool,
    pub(super) in_dirty: bool,
}

pub(super) struct ListenSlot {
    pub(super) generation: u32,
    pub(super) entry: Option<ListenEntry>,
}

/// The TCP sockets of one stack.
pub(crate) struct TcpTable {
    pub(super) secret: [u8; 16],
    pub(super) conns: Vec<ConnSlot>,
    pub(super) free: Vec<u32>,
    pub(super) live: usize,
    pub(super) flows: HashMap<FlowId, u32, FlowHash>,
    pub(super) listeners: Vec<ListenSlot>,
    pub(super) listen_addrs: HashMap<(Option<IpAddr>, u16), u32>,
    pub(super) ready: Vec<u64>,
    pub(super) dirty: Vec<u32>,
    pub(super) listeners_dirty: Vec<u32>,
    /// A buffer `poll_transmit` did not use, kept for the next one.
    pub(super) spare: Option<Mbuf>,
    /// Buffers taken from the pool in one bulk call (at most [`STASH`]): one
    /// pool operation per burst of segments instead of one per segment.
    pub(super) stash: Vec<Mbuf>,
    /// Connections whose output found the pool empty, for the next pass.
    pub(super) deferred: Vec<u32>,
    /// Received mbufs the connections hold (bounded by `tcp_rx_mbufs`).
    pub(super) rx_mbufs: usize,
    pub(crate) next_ephemeral: u16,
    /// The configuration of the last active open, shared with the next one
    /// that asks for the same values (connections hold it by reference).
    pub(super) connect_cfg: Option<Arc<TcpConfig>>,
}

impl TcpTable {
    /// A table for at most `max` connections. The slab and the flow index
    /// are reserved for `max` up front: the address space is taken once, the
    /// pages only as connections use them, and the data path never stops to
    /// rehash or move a large table (a latency spike at every doubling).
    pub(crate) fn new(secret: [u8; 16], max: usize) -> Self {
        TcpTable {
            secret,
            conns: Vec::with_capacity(max),
            free: Vec::new(),
            live: 0,
            flows: HashMap::with_capacity_and_hasher(max, FlowHash::new(&secret)),
            listeners: Vec::new(),
            listen_addrs: HashMap::new(),
            ready: Vec::new(),
            dirty: Vec::new(),
            listeners_dirty: Vec::new(),
            spare: None,
            stash: Vec::new(),
            deferred: Vec::new(),
            rx_mbufs: 0,
            next_ephemeral: 49152,
            connect_cfg: None,
        }
    }

    pub(crate) fn set_secret(&mut self, secret: [u8; 16]) {
        self.secret = secret;
    }

    pub(super) fn entry(&self, i: u32) -> Option<&ConnEntry> {
        self.conns.get(i as usize).and_then(|s| s.entry.as_ref())
    }

    pub(super) fn entry_mut(&mut self, i: u32) -> Option<&mut ConnEntry> {
        self.conns.get_mut(i as usize).and_then(|s| s.entry.as_mut())
    }

    pub(super) fn app(&self, h: TcpHandle) -> Result<&ConnEntry, TcpSocketError> {
        match self.conns.get(h.index as usize) {
            Some(ConnSlot { generation, entry: Some(e) }) if *generation == h.generation && e.owner == Owner::App => {
                Ok(e)
            }
            _ => Err(TcpSocketError::InvalidHandle),
        }
    }

    pub(super) fn app_mut(&mut self, h: TcpHandle) -> Result<&mut ConnEntry, TcpSocketError> {
        match self.conns.get_mut(h.index as usize) {
            Some(ConnSlot { generation, entry: Some(e) }) if *generation == h.generation && e.owner == Owner::App => {
                Ok(e)
            }
            _ => Err(TcpSocketError::InvalidHandle),
        }
    }

    pub(super) fn listener_mut(&mut self, h: TcpListenerHandle) -> Result<&mut ListenEntry, TcpSocketError> {
        match self.listeners.get_mut(h.index as usize) {
            Some(ListenSlot { generation, entry: Some(e) }) if *generation == h.generation => Ok(e),
            _ => Err(TcpSocketError::InvalidHandle),
        }
    }

    pub(super) fn insert(&mut self, e: ConnEntry) -> u32 {
        let flow = e.flow;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(ConnSlot { generation: 0, entry: None });
                (self.conns.len() - 1) as u32
            }
        };
        self.conns[i as usize].entry = Some(e);
        self.flows.insert(flow, i);
        self.live += 1;
        self.mark_dirty(i);
        i
    }

    pub(super) fn mark_dirty(&mut self, i: u32) {
        if let Some(e) = self.entry_mut(i) {
            if !e.in_dirty {
                e.in_dirty = true;
                self.dirty.push(i);
            }
        }
    }

    pub(super) fn mark_ready(&mut self, i: u32) {
        let generation = self.conns[i as usize].generation;
        let Some(e) = self.entry_mut(i) else { return };
        match e.owner {
            Owner::App if !e.in_ready => {
                e.in_ready = true;
                self.ready.push(token(i, generation));
            }
            _ => {}
        }
    }

    pub(super) fn mark_listener(&mut self, li: u32, ready: bool) {
        let generation = self.listeners[li as usize].generation;
        let Some(l) = self.listeners[li as usize].entry.as_mut() else { return };
        if ready && !l.in_ready {
            l.in_ready = true;
            self.ready.push(LISTENER_TOKEN | token(li, generation));
        }
        if !l.in_dirty {
            l.in_dirty = true;
            self.listeners_dirty.push(li);
        }
    }

    /// Frees a slot; returns its timer to cancel.
    pub(super) fn remove(&mut self, i: u32) -> Option<TimerId> {
        let slot = &mut self.conns[i as usize];
        let e = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        if e.in_flows {
            self.flows.remove(&e.flow);
        }
        self.free.push(i);
        self.live -= 1;
        self.rx_mbufs -= e.conn.rx_mbufs();
        e.timer.map(|(id, _)| id)
    }

    pub(super) fn listener_for(&self, local: SocketAddr) -> Option<u32> {
        self.listen_addrs
            .get(&(Some(local.ip()), local.port()))
            .or_else(|| self.listen_addrs.get(&(None, local.port())))
            .copied()
    }
}
