use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use super::control::Shared;
use super::rx::refill;
use super::vring::{ring_layout, RingMem, UsedElem, Vq};
use super::*;
use crate::port::{Counter, RxCounters, TxCounters};
use crate::{free_bulk, MacAddr, Mbuf, Mempool, MempoolConfig, RxQueue, TxQueue};
#[test]
fn ring_layout_keeps_used_on_its_own_pages() {
    for q in [16usize, 256, 1024, 32768] {
        let (d, a, u, end) = ring_layout(q);
        assert_eq!(d, 0);
        assert!(a >= 16 * q && a % 64 == 0);
        assert!(u >= a + 6 + 2 * q && u % 4096 == 0);
        assert!(end >= u + 6 + 8 * q && end % 4096 == 0);
    }
}

#[test]
fn feature_names_are_readable() {
    assert_eq!(F::names(F::VERSION_1 | F::MRG_RXBUF), "VIRTIO_NET_F_MRG_RXBUF|VIRTIO_F_VERSION_1");
    assert_eq!(F::names(1 << 40), "bit 40");
}

#[test]
fn options_name_the_bad_one() {
    let e = Options { qsize: 100, ..Default::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("qsize"), "{e}");
    let e = Options { queues: 0, ..Default::default() }.validate().unwrap_err().to_string();
    assert!(e.contains("queues"), "{e}");
}

// -----------------------------------------------------------------------
// The ring logic against a device simulated in this process: it reads the
// available ring and descriptors we wrote and writes used entries the way a
// back end may (in order or not, one entry per buffer or one per batch).
// -----------------------------------------------------------------------

/// The device side of one ring.
struct FakeDev {
    vq: Arc<Vq>,
    /// Next available position to take.
    next: u16,
    /// Our shadow of `used.idx`.
    used: u16,
}

impl FakeDev {
    /// A polling device: it asks not to be kicked.
    fn new(vq: &Arc<Vq>) -> FakeDev {
        vq.used_flags().store(VRING_USED_F_NO_NOTIFY.to_le(), Ordering::Release);
        FakeDev { vq: vq.clone(), next: 0, used: 0 }
    }

    /// Takes the next available buffer: (descriptor id, address, length, flags).
    fn take(&mut self) -> Option<(u16, u64, u32, u16)> {
        let vq = &*self.vq;
        if self.next == u16::from_le(vq.avail_idx().load(Ordering::Acquire)) {
            return None;
        }
        // SAFETY: inside the ring (masked), published by the acquire load above.
        let id = u16::from_le(unsafe { vq.avail.add(2 + (self.next & (vq.size - 1)) as usize).read_volatile() });
        assert!(id < vq.size, "descriptor id {id} out of range");
        // SAFETY: `id < size`.
        let d = unsafe { vq.desc.add(id as usize).read_volatile() };
        self.next = self.next.wrapping_add(1);
        Some((id, u64::from_le(d.addr), u32::from_le(d.len), u16::from_le(d.flags)))
    }

    /// Writes the used entry `k` places after the current used index.
    fn put(&mut self, k: u16, id: u16, len: u32) {
        let vq = &*self.vq;
        let i = self.used.wrapping_add(k) & (vq.size - 1);
        // SAFETY: the used ring's entries start 4 bytes in; `i < size`.
        unsafe {
            (vq.used.add(2) as *mut UsedElem)
                .add(i as usize)
                .write_volatile(UsedElem { id: (id as u32).to_le(), len: len.to_le() })
        };
    }

    /// Makes `n` more buffers used.
    fn advance(&mut self, n: u16) {
        self.used = self.used.wrapping_add(n);
        self.vq.used_idx().store(self.used.to_le(), Ordering::Release);
    }
}

/// A frame of `len` bytes carrying `seq` and a pattern of it.
fn frame(len: usize, seq: u32) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(7).wrapping_add(seq) as u8).collect();
    d[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
    d[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
    d[12..14].copy_from_slice(&[0x08, 0x00]);
    d[14..18].copy_from_slice(&seq.to_be_bytes());
    d
}

/// Writes a received frame into a posted buffer (header with `nbufs`);
/// returns the used length.
fn fill(addr: u64, posted: u32, f: &[u8], nbufs: u16) -> u32 {
    let total = HDR_LEN + f.len();
    assert!(total <= posted as usize, "{total} > {posted}");
    let mut hdr = [0u8; HDR_LEN];
    hdr[10..12].copy_from_slice(&nbufs.to_le_bytes());
    // SAFETY: GPA = VA: the descriptor's address is our buffer, `posted` bytes long.
    unsafe {
        std::ptr::copy_nonoverlapping(hdr.as_ptr(), addr as *mut u8, HDR_LEN);
        std::ptr::copy_nonoverlapping(f.as_ptr(), (addr as *mut u8).add(HDR_LEN), f.len());
    }
    total as u32
}

/// A sent buffer's bytes (header checked to be all zero), as the device reads them.
fn sent_frame(addr: u64, len: u32) -> Vec<u8> {
    // SAFETY: GPA = VA: the descriptor describes `len` bytes of our buffer.
    let b = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    assert_eq!(&b[..HDR_LEN], &[0u8; HDR_LEN], "a zero virtio-net header in front of every frame");
    b[HDR_LEN..].to_vec()
}

struct Rig {
    pool: Mempool,
    rx: VirtioRx,
    tx: VirtioTx,
    rxd: FakeDev,
    txd: FakeDev,
    shared: Arc<Shared>,
}

/// One queue pair of `qsize` entries, receive ring filled as `configure` does.
fn rig(in_order: bool, qsize: u16, mrg: bool, pool_size: usize, cache: usize) -> Rig {
    let pool =
        Mempool::new_shared(&MempoolConfig::new("vu-sim", pool_size, 2048, crate::mempool::DEFAULT_HEADROOM, cache))
            .unwrap();
    let mem = pool.shared_memory().unwrap();
    let chunk = ring_layout(qsize as usize).3;
    let rings = Arc::new(RingMem::new(2 * chunk).unwrap());
    let rvq = Arc::new(Vq::new(0, qsize, in_order, &rings, 0).unwrap());
    let tvq = Arc::new(Vq::new(1, qsize, in_order, &rings, chunk).unwrap());
    let shared = Arc::new(Shared { mtu: AtomicU16::new(1500), ..Default::default() });
    shared.started.store(true, Ordering::Release);
    shared.up.store(true, Ordering::Release);
    shared.promisc.store(true, Ordering::Release);
    let posted = HDR_LEN + pool.data_room();
    {
        // SAFETY: no handle exists yet.
        let st = unsafe { rvq.state() };
        let mut fresh = Vec::new();
        refill(&rvq, st, &pool, &mut fresh, posted, &Counter::default());
    }
    let rx = VirtioRx {
        vq: rvq.clone(),
        shared: shared.clone(),
        pool: pool.clone(),
        mac: MacAddr([0x02, 0, 0, 0, 0, 0xbb]),
        csum: false,
        mrg,
        headroom: pool.headroom() as u32,
        posted,
        fresh: Vec::new(),
        counters: Arc::new(RxCounters::default()),
    };
    let tx = VirtioTx {
        vq: tvq.clone(),
        shared: shared.clone(),
        pool: pool.clone(),
        region: (mem.addr as u64, (mem.addr + mem.len) as u64),
        offloads: false,
        done: Vec::new(),
        copies: Arc::new(Counter::default()),
        counters: Arc::new(TxCounters::default()),
    };
    Rig { pool, rxd: FakeDev::new(&rvq), txd: FakeDev::new(&tvq), rx, tx, shared }
}

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn check_frames(got: &[Mbuf], want: &[Vec<u8>]) {
    assert_eq!(got.len(), want.len());
    for (m, w) in got.iter().zip(want) {
        assert_eq!(m.data(), &w[..], "frame {:?}", &w[14..18]);
    }
}

/// Receives many rounds (wrapping the ring and the 16-bit indices) with
/// the device returning buffers in order, or shuffled within each round
/// (without IN_ORDER); every frame arrives once, intact, in the order the
/// device used them, and every buffer goes home.
fn rx_rounds(in_order: bool, seed: u64) {
    let mut r = rig(in_order, 64, true, 1024, 32);
    let mut rng = Rng(seed);
    let mut seq = 0u32;
    let mut total = 0u64;
    for _ in 0..3000 {
        // Whatever is available, some of it.
        let mut taken = Vec::new();
        while let Some(b) = r.rxd.take() {
            taken.push(b);
        }
        let keep = rng.below(taken.len() + 1);
        // Buffers not used this round go back in front of the queue (the
        // device takes them next round; avail positions are not re-read).
        let back = taken.split_off(keep);
        r.rxd.next = r.rxd.next.wrapping_sub(back.len() as u16);
        if !in_order {
            for i in (1..taken.len()).rev() {
                taken.swap(i, rng.below(i + 1));
            }
        }
        let mut want = Vec::new();
        for (k, &(id, addr, posted, flags)) in taken.iter().enumerate() {
            assert_eq!(flags, VRING_DESC_F_WRITE);
            let f = frame(60 + rng.below(1455), seq);
            seq += 1;
            let len = fill(addr, posted, &f, 1);
            r.rxd.put(k as u16, id, len);
            want.push(f);
        }
        r.rxd.advance(taken.len() as u16);
        let mut got = Vec::new();
        while got.len() < want.len() {
            let n = r.rx.rx_burst(&mut got, 1 + rng.below(40));
            assert!(n > 0 || got.len() == want.len(), "frames stuck in the ring");
        }
        check_frames(&got, &want);
        total += got.len() as u64;
        free_bulk(&mut got);
    }
    assert_eq!(r.rx.counters.packets.get(), total);
    assert_eq!(r.rx.counters.errors.get() + r.rx.counters.nombuf.get(), 0);
    assert!(total > 30_000, "{total}");
    let pool = r.pool.clone();
    drop(r);
    assert_eq!(pool.in_use(), 0, "every buffer home");
}

#[test]
fn rx_in_order_delivers_every_frame_intact() {
    rx_rounds(true, 1);
}

#[test]
fn rx_out_of_order_delivers_every_frame_intact() {
    rx_rounds(false, 2);
}

/// In order, a device may report a batch with one used entry for its last
/// buffer (virtio 1.1, 2.7.9): the buffers before it were filled to the end.
#[test]
fn rx_in_order_batch_reported_by_its_last_entry() {
    let mut r = rig(true, 64, true, 1024, 32);
    // Full-length frames must fit the MTU.
    r.shared.mtu.store((r.pool.data_room() - 14) as u16, Ordering::Release);
    for round in 0..40u32 {
        let n = 1 + (round as usize * 7) % 20;
        let mut want = Vec::new();
        let mut last = (0, 0);
        for k in 0..n {
            let (id, addr, posted, _) = r.rxd.take().unwrap();
            let len = if k + 1 == n { 100 } else { posted as usize - HDR_LEN };
            let f = frame(len, round * 100 + k as u32);
            last = (id, fill(addr, posted, &f, 1));
            want.push(f);
        }
        // Stale entries the driver must not read: wrong ids everywhere.
        for k in 0..n as u16 {
            r.rxd.put(k, 0xffff, 1);
        }
        r.rxd.put(0, last.0, last.1);
        r.rxd.advance(n as u16);
        let mut got = Vec::new();
        // Small bursts, so a batch is split over calls.
        while got.len() < want.len() {
            assert!(r.rx.rx_burst(&mut got, 3) > 0, "round {round}: stuck");
        }
        check_frames(&got, &want);
        free_bulk(&mut got);
    }
    assert_eq!(r.rx.counters.errors.get(), 0);
    let pool = r.pool.clone();
    drop(r);
    assert_eq!(pool.in_use(), 0);
}

/// Used entries that break the order or name no buffer are counted as
/// errors; nothing is handed up twice, nothing leaks, and the ring goes on.
#[test]
fn rx_bad_used_entries_are_errors_not_crashes() {
    for in_order in [true, false] {
        let mut r = rig(in_order, 16, true, 256, 0);
        let (id, addr, posted, _) = r.rxd.take().unwrap();
        let len = fill(addr, posted, &frame(64, 0), 1);
        // An id the device was never given (in order: ahead of every used one).
        r.rxd.put(0, 200, len);
        r.rxd.advance(1);
        let mut got = Vec::new();
        assert_eq!(r.rx.rx_burst(&mut got, 32), 0);
        assert_eq!(r.rx.counters.errors.get(), 1);
        // The same descriptor reported twice: the second one is an error.
        let (id2, addr, posted, _) = r.rxd.take().unwrap();
        let len = fill(addr, posted, &frame(64, 1), 1);
        r.rxd.put(0, id2, len);
        r.rxd.put(1, id2, len);
        r.rxd.advance(2);
        assert_eq!(r.rx.rx_burst(&mut got, 32), 1, "in_order={in_order}");
        assert_eq!(r.rx.counters.errors.get(), 2, "in_order={in_order}");
        let _ = id;
        // And the ring still works, from where the used index says the
        // device is (in order, the third position counts as used: its
        // buffer was freed, and the device must not take it).
        r.rxd.next = r.rxd.used;
        let (id3, addr, posted, _) = r.rxd.take().unwrap();
        let f = frame(80, 2);
        let len = fill(addr, posted, &f, 1);
        r.rxd.put(0, id3, len);
        r.rxd.advance(1);
        let mut more = Vec::new();
        assert_eq!(r.rx.rx_burst(&mut more, 32), 1, "in_order={in_order}");
        check_frames(&more, &[f]);
        free_bulk(&mut got);
        free_bulk(&mut more);
        let pool = r.pool.clone();
        drop(r);
        assert_eq!(pool.in_use(), 0, "in_order={in_order}");
    }
}

/// A frame the device spread over two buffers (`num_buffers` = 2) is
/// dropped as one error, both buffers freed; the next frame is fine.
#[test]
fn rx_frame_over_two_buffers_is_one_error() {
    for in_order in [true, false] {
        let mut r = rig(in_order, 16, true, 256, 0);
        let (id0, a0, p0, _) = r.rxd.take().unwrap();
        let (id1, a1, p1, _) = r.rxd.take().unwrap();
        let (id2, a2, p2, _) = r.rxd.take().unwrap();
        let big = frame(p0 as usize - HDR_LEN, 9);
        r.rxd.put(0, id0, fill(a0, p0, &big, 2));
        r.rxd.put(1, id1, fill(a1, p1, &frame(100, 10), 0));
        let f = frame(70, 11);
        r.rxd.put(2, id2, fill(a2, p2, &f, 1));
        r.rxd.advance(3);
        let mut got = Vec::new();
        assert_eq!(r.rx.rx_burst(&mut got, 32), 1);
        check_frames(&got, &[f]);
        assert_eq!(r.rx.counters.errors.get(), 1);
        free_bulk(&mut got);
        let pool = r.pool.clone();
        drop(r);
        assert_eq!(pool.in_use(), 0);
    }
}

/// Sends many bursts; the device returns buffers one entry each (shuffled
/// without IN_ORDER) or, in order, sometimes one entry per batch. Every
/// frame reaches the device once, intact, in order; every buffer goes home.
fn tx_rounds(in_order: bool, batch_entries: bool, seed: u64) {
    let mut r = rig(in_order, 64, true, 1024, 32);
    let mut rng = Rng(seed);
    let (mut seq, mut seen) = (0u32, 0u32);
    let mut pending: Vec<(u16, u32)> = Vec::new();
    for _ in 0..3000 {
        let n = 1 + rng.below(40);
        let mut burst: Vec<Mbuf> = (0..n)
            .map(|_| {
                let mut m = r.pool.alloc().unwrap();
                m.extend_from_slice(&frame(60 + rng.below(1455), seq)).unwrap();
                seq += 1;
                m
            })
            .collect();
        let sent = r.tx.tx_burst(&mut burst);
        seq -= burst.len() as u32;
        free_bulk(&mut burst);
        assert!(sent > 0 || pending.len() == 64, "nothing sent with {} in flight", pending.len());
        // The device reads what was posted, in order.
        while let Some((id, addr, len, flags)) = r.txd.take() {
            assert_eq!(flags, 0);
            let f = sent_frame(addr, len);
            assert_eq!(u32::from_be_bytes(f[14..18].try_into().unwrap()), seen);
            assert_eq!(f, frame(f.len(), seen));
            seen += 1;
            pending.push((id, len));
        }
        // ... and gives some of them back.
        let k = rng.below(pending.len() + 1);
        let mut back: Vec<(u16, u32)> = pending.drain(..k).collect();
        if in_order && batch_entries && !back.is_empty() {
            let (id, len) = *back.last().unwrap();
            r.txd.put(0, id, len);
        } else {
            if !in_order {
                for i in (1..back.len()).rev() {
                    back.swap(i, rng.below(i + 1));
                }
            }
            for (j, &(id, len)) in back.iter().enumerate() {
                r.txd.put(j as u16, id, len);
            }
        }
        r.txd.advance(back.len() as u16);
    }
    assert_eq!(seen, seq);
    assert_eq!(r.tx.counters.packets.get(), seq as u64);
    assert!(seq > 20_000, "{seq}");
    let pool = r.pool.clone();
    drop(r);
    assert_eq!(pool.in_use(), 0, "every buffer home");
}

#[test]
fn tx_in_order_one_entry_per_buffer() {
    tx_rounds(true, false, 3);
}

#[test]
fn tx_in_order_one_entry_per_batch() {
    tx_rounds(true, true, 4);
}

#[test]
fn tx_out_of_order() {
    tx_rounds(false, false, 5);
}

/// A fixed workload for instruction counts of the data path
/// (`VU_ITERS=20000 valgrind --tool=callgrind --toggle-collect='*rx_burst*'`
/// on the test binary with `--exact drivers::virtio_user::tests::data_path_workload`);
/// as a test, a short run of it. Bursts of 32 through both rings, the device
/// answering one entry per buffer.
#[test]
fn data_path_workload() {
    let iters: usize = std::env::var("VU_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let modes = match std::env::var("VU_IN_ORDER").as_deref() {
        Ok("1") => vec![true],
        Ok("0") => vec![false],
        _ => vec![true, false],
    };
    for in_order in modes {
        let mut r = rig(in_order, 256, true, 4096, 256);
        let template = frame(64, 0);
        let mut got = Vec::with_capacity(64);
        let mut burst = Vec::with_capacity(64);
        for _ in 0..iters {
            for k in 0..32 {
                let (id, addr, posted, _) = r.rxd.take().unwrap();
                let len = fill(addr, posted, &template, 1);
                r.rxd.put(k, id, len);
            }
            r.rxd.advance(32);
            assert_eq!(r.rx.rx_burst(&mut got, 32), 32);
            std::mem::swap(&mut got, &mut burst);
            assert_eq!(r.tx.tx_burst(&mut burst), 32);
            let mut k = 0;
            while let Some((id, _, len, _)) = r.txd.take() {
                r.txd.put(k, id, len);
                k += 1;
            }
            r.txd.advance(k);
        }
    }
}
