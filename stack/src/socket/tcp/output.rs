//! TCP output and timers: every *dirty* listener and connection is asked for
//! its segments (`poll_transmit` into a buffer from the stash, payload after
//! a full headroom), its wheel timer is re-armed when its deadline moved
//! earlier, and finished orphans are reclaimed; timer expiry and failed
//! address resolution are fed back to the state machines.

use std::net::IpAddr;

use pmd::Mbuf;

use super::input::drain_events;
use super::table::{Owner, STASH};
use super::TcpSocketError;
use crate::iface::{Stack, StackTimer, ETH, V6};
use crate::tcp::State;
use crate::timer::{TimerId, TimerWheel};
use crate::wire;

/// Largest TCP header (with options).
const TCP_MAX: usize = wire::tcp::MAX_HEADER_LEN;

impl Stack {
    /// A buffer for `poll_transmit`, reset to the pool's headroom.
    pub(crate) fn tcp_buffer(&mut self) -> Option<Mbuf> {
        if let Some(m) = self.tcp.spare.take() {
            return Some(m);
        }
        if self.tcp.stash.is_empty() {
            // All or nothing; with fewer left, one at a time (and counted).
            let _ = self.pool.alloc_bulk(&mut self.tcp.stash, STASH);
        }
        let mut m = match self.tcp.stash.pop() {
            Some(m) => m,
            None => self.alloc()?,
        };
        if m.headroom() < ETH + V6 + TCP_MAX {
            // A pool without room for the headers cannot carry TCP.
            self.stats.drops.no_buffers += 1;
            m.reset();
            return None;
        }
        Some(m)
    }

    /// Asks every dirty listener and connection for its segments, then re-arms
    /// their timers and reclaims finished connections.
    pub(crate) fn tcp_output(&mut self) {
        let mut listeners = std::mem::take(&mut self.tcp.listeners_dirty);
        for li in listeners.drain(..) {
            self.tcp_output_listener(li);
        }
        // Listeners marked during the pass (out of buffers) wait for the next.
        listeners.append(&mut self.tcp.listeners_dirty);
        self.tcp.listeners_dirty = listeners;
        // Connections may be marked dirty again while we work (an accepted
        // connection, a reset); loop until quiet. One that found the pool
        // empty is deferred to the next pass rather than retried here.
        let mut deferred = std::mem::take(&mut self.tcp.deferred);
        while let Some(i) = self.tcp.dirty.pop() {
            if !self.tcp_output_conn(i) {
                deferred.push(i);
            }
        }
        for &i in &deferred {
            self.tcp.mark_dirty(i);
        }
        deferred.clear();
        self.tcp.deferred = deferred;
    }

    pub(crate) fn tcp_output_listener(&mut self, li: u32) {
        let now = self.now;
        match self.tcp.listeners[li as usize].entry.as_mut() {
            Some(l) => l.in_dirty = false,
            None => return,
        }
        loop {
            let Some(mut m) = self.tcp_buffer() else {
                // Out of buffers: try again on the next pass.
                self.tcp.mark_listener(li, false);
                break;
            };
            let cap = m.tailroom();
            let Some(l) = self.tcp.listeners[li as usize].entry.as_mut() else {
                self.tcp.spare = Some(m);
                return;
            };
            let buf = m.append(cap).expect("tailroom");
            let Some((flow, t)) = l.listener.poll_transmit(now, buf) else {
                m.trim(cap);
                self.tcp.spare = Some(m);
                break;
            };
            m.trim(cap - t.repr.payload_len);
            match self.route(flow.remote.ip()) {
                Ok((_, nh)) => self.tcp_emit(m, &t.repr, &flow, nh),
                Err(_) => self.stats.drops.no_route += 1,
            }
        }
        self.tcp_pump_listener(li);
        let slot = &mut self.tcp.listeners[li as usize];
        let Some(l) = slot.entry.as_mut() else { return };
        let want = l.listener.poll_timeout();
        rearm(&mut self.timers, &mut l.timer, want, StackTimer::TcpListener(li, slot.generation));
    }

    /// Sends what connection `i` has to send; `false` if the pool ran dry
    /// (the caller retries on the next pass).
    pub(crate) fn tcp_output_conn(&mut self, i: u32) -> bool {
        let now = self.now;
        match self.tcp.entry_mut(i) {
            Some(e) => e.in_dirty = false,
            None => return true,
        }
        let mut complete = true;
        // Resolved once for the pass (unicast next hops only; anything else
        // goes through `output`).
        let mut mac = None;
        loop {
            let Some(mut m) = self.tcp_buffer() else {
                complete = false;
                break;
            };
            let cap = m.tailroom();
            let e = self.tcp.entry_mut(i).expect("checked");
            let buf = m.append(cap).expect("tailroom");
            let Some(t) = e.conn.poll_transmit(now, buf) else {
                m.trim(cap);
                self.tcp.spare = Some(m);
                break;
            };
            m.trim(cap - t.repr.payload_len);
            let (flow, nh) = (e.flow, e.next_hop);
            if mac.is_none() {
                mac = self.neighbor_unicast(nh);
            }
            self.tcp_emit_to(m, &t.repr, &flow, nh, mac);
        }
        let generation = self.tcp.conns[i as usize].generation;
        let e = self.tcp.entry_mut(i).expect("checked");
        if drain_events(&mut e.conn) {
            self.tcp.mark_ready(i);
        }
        let e = self.tcp.entry_mut(i).expect("checked");
        if e.conn.state() == State::Closed {
            let (unflow, flow, owner) = (std::mem::replace(&mut e.in_flows, false), e.flow, e.owner);
            if unflow {
                self.tcp.flows.remove(&flow);
            }
            if owner == Owner::Orphan {
                if let Some(id) = self.tcp.remove(i) {
                    self.timers.cancel(id);
                }
                return true;
            }
        }
        let e = self.tcp.entry_mut(i).expect("checked");
        let want = e.conn.poll_timeout();
        rearm(&mut self.timers, &mut e.timer, want, StackTimer::TcpConn(i, generation));
        complete
    }

    pub(crate) fn tcp_conn_timer(&mut self, i: u32, generation: u32) {
        if self.tcp.conns.get(i as usize).map_or(true, |s| s.generation != generation) {
            return;
        }
        let now = self.now;
        let Some(e) = self.tcp.entry_mut(i) else { return };
        e.timer = None;
        e.conn.handle_timeout(now);
        if drain_events(&mut e.conn) {
            self.tcp.mark_ready(i);
        }
        self.tcp.mark_dirty(i);
    }

    pub(crate) fn tcp_listener_timer(&mut self, li: u32, generation: u32) {
        let now = self.now;
        let Some(slot) = self.tcp.listeners.get_mut(li as usize) else { return };
        if slot.generation != generation {
            return;
        }
        let Some(l) = slot.entry.as_mut() else { return };
        l.timer = None;
        l.listener.handle_timeout(now);
        self.tcp.mark_listener(li, false);
    }

    /// Address resolution of `ip` failed: connections still opening through it
    /// are unreachable.
    pub(crate) fn tcp_neighbor_failed(&mut self, ip: IpAddr) {
        let opening: Vec<u32> = (0..self.tcp.conns.len() as u32)
            .filter(|&i| self.tcp.entry(i).is_some_and(|e| e.next_hop == ip && e.conn.state() == State::SynSent))
            .collect();
        for i in opening {
            let e = self.tcp.entry_mut(i).expect("just found");
            e.failure = Some(TcpSocketError::Unreachable);
            e.conn.abort();
            drain_events(&mut e.conn);
            self.tcp.mark_ready(i);
            self.tcp.mark_dirty(i);
        }
    }
}

/// Arms `timer` for `want` when that is earlier than what is armed. A later
/// deadline keeps the armed timer: it fires early, the state machine does
/// nothing, and the output pass re-arms (cheaper than moving a timer on every
/// ACK that pushes the RTO back).
fn rearm(
    wheel: &mut TimerWheel<StackTimer>,
    timer: &mut Option<(TimerId, u64)>,
    want: Option<u64>,
    payload: StackTimer,
) {
    let Some(w) = want else { return };
    if timer.is_some_and(|(_, at)| at <= w) {
        return;
    }
    if let Some((id, _)) = timer.take() {
        wheel.cancel(id);
    }
    *timer = Some((wheel.insert(w, payload), w));
}
