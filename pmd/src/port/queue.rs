//! The per-core queue handles: [`RxQueue`] and [`TxQueue`], the
//! [`Received`] bursts a receive queue vouches for, and the downcasts that
//! turn a boxed handle back into its driver's type for a monomorphised loop.

use std::any::{Any, TypeId};

use crate::Mbuf;

/// Lets a boxed queue handle be turned back into its concrete type
/// ([`downcast_rx`], [`downcast_tx`]); implemented for every `'static` type.
pub trait QueueAny: Any + Send {
    /// The box as a `Box<dyn Any>`.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<Q: Any + Send> QueueAny for Q {
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// The concrete queue behind `q`, if it is an `R`; `q` back otherwise.
///
/// Why: ports hand out `Box<dyn RxQueue>` so that code can mix drivers. A
/// poll loop that knows its driver at compile time (a DPDK-only forwarder)
/// can take the concrete handle and be generic over it instead: the burst
/// calls are then direct and inline, nothing is dispatched per burst.
pub fn downcast_rx<R: RxQueue>(q: Box<dyn RxQueue>) -> Result<R, Box<dyn RxQueue>> {
    // `Any::type_id` through the trait object: the concrete type's id.
    if Any::type_id(&*q) != TypeId::of::<R>() {
        return Err(q);
    }
    Ok(*q.into_any().downcast::<R>().unwrap_or_else(|_| unreachable!("type id checked")))
}

/// The concrete queue behind `q`, if it is a `T`; `q` back otherwise (see
/// [`downcast_rx`]).
pub fn downcast_tx<T: TxQueue>(q: Box<dyn TxQueue>) -> Result<T, Box<dyn TxQueue>> {
    if Any::type_id(&*q) != TypeId::of::<T>() {
        return Err(q);
    }
    Ok(*q.into_any().downcast::<T>().unwrap_or_else(|_| unreachable!("type id checked")))
}

/// A receive queue handle, owned by one core.
pub trait RxQueue: QueueAny {
    /// Appends up to `max` received frames to `out` and returns how many.
    /// Never blocks; returns 0 when nothing is waiting or the port is stopped.
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize;

    /// [`rx_burst`](Self::rx_burst), returning the vector as a [`Received`]
    /// burst that carries what this queue can vouch for about its handles, so
    /// that [`TxQueue::tx_received`] can skip checks that proof makes
    /// redundant. Queues that vouch for nothing (the default) lose nothing.
    #[inline]
    fn rx_received<'a>(&mut self, out: &'a mut Vec<Mbuf>, max: usize) -> Received<'a> {
        self.rx_burst(out, max);
        Received::unproven(out)
    }
}

/// What a receive queue vouches for about every handle of a [`Received`]
/// burst. Only this crate's drivers can state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Nothing.
    Unknown,
    /// Each handle is an `rte_mbuf` of a DPDK mempool, as a DPDK receive
    /// queue wrote it.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    DpdkMbufs,
}

/// A burst as a receive queue wrote it, with what that queue vouches for about
/// its handles (see [`RxQueue::rx_received`]).
///
/// Why a type: a DPDK transmit queue must prove every handle it passes to the
/// device is an `rte_mbuf` (a native buffer there would be memory corruption,
/// not a dropped frame), which costs an address check per frame. A DPDK
/// receive queue knows that of what it just wrote, but a plain
/// `&mut Vec<Mbuf>` could be changed between receive and transmit. This type
/// holds the vector and hands out only shared references to its handles, so
/// nothing can be swapped in while the proof lives. The frames' bytes and
/// metadata stay the caller's to read; to change anything, take the vector
/// back with [`into_vec`](Self::into_vec), which drops the proof.
///
/// Only this crate's drivers can vouch for a burst; anyone else gets an
/// unproven one:
///
/// ```compile_fail
/// let mut v = Vec::new();
/// let r = pmd::Received::vouched(&mut v, pmd::port::Origin::DpdkMbufs);
/// ```
///
/// ```
/// let mut v = Vec::new();
/// let r = pmd::Received::unproven(&mut v);
/// assert!(r.is_empty());
/// ```
#[derive(Debug)]
pub struct Received<'a> {
    buf: &'a mut Vec<Mbuf>,
    origin: Origin,
}

impl<'a> Received<'a> {
    /// `buf` with nothing vouched for.
    #[inline]
    pub fn unproven(buf: &'a mut Vec<Mbuf>) -> Received<'a> {
        Received { buf, origin: Origin::Unknown }
    }

    /// `buf`, every handle of which is what `origin` says.
    #[inline]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) fn vouched(buf: &'a mut Vec<Mbuf>, origin: Origin) -> Received<'a> {
        Received { buf, origin }
    }

    #[inline]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// Frames in the burst (the whole vector, including any it held before).
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the burst is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The frames.
    #[inline]
    pub fn frames(&self) -> &[Mbuf] {
        self.buf
    }

    /// The vector back, without the proof.
    #[inline]
    pub fn into_vec(self) -> &'a mut Vec<Mbuf> {
        self.buf
    }
}

/// A transmit queue handle, owned by one core.
pub trait TxQueue: QueueAny {
    /// Sends frames from the front of `pkts`, removes the ones it took, and returns
    /// how many. Frames it could not send stay in `pkts`, in order, and remain the
    /// caller's (to retry or free).
    ///
    /// Call it every poll iteration, even with nothing to send: decorators (delay,
    /// rate shaping) and drivers that batch doorbells release queued frames here.
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize;

    /// [`tx_burst`](Self::tx_burst) of a burst as a receive queue wrote it;
    /// unsent frames stay in the vector as with `tx_burst`. A queue may use
    /// what the receiving queue vouched for (see [`Received`]); the default
    /// ignores it.
    #[inline]
    fn tx_received(&mut self, burst: Received<'_>) -> usize {
        self.tx_burst(burst.into_vec())
    }
}

impl<T: RxQueue + ?Sized> RxQueue for Box<T> {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        (**self).rx_burst(out, max)
    }

    #[inline]
    fn rx_received<'a>(&mut self, out: &'a mut Vec<Mbuf>, max: usize) -> Received<'a> {
        (**self).rx_received(out, max)
    }
}

impl<T: TxQueue + ?Sized> TxQueue for Box<T> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        (**self).tx_burst(pkts)
    }

    #[inline]
    fn tx_received(&mut self, burst: Received<'_>) -> usize {
        (**self).tx_received(burst)
    }
}
