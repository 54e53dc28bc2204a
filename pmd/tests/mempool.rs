//! Mempool and mbuf behaviour: exhaustion is an error, nothing leaks, caches are
//! per thread, buffers can be freed on any thread, and external memory works.

use std::ptr::NonNull;
use std::sync::Mutex;

use pmd::mbuf::MbufHdr;
use pmd::mempool::{ExternalPool, DEFAULT_HEADROOM};
use pmd::{Mbuf, MbufMeta, Mempool, MempoolConfig, PmdError};

fn pool(count: usize, cache: usize) -> Mempool {
    Mempool::new(&MempoolConfig::new("test", count, 2048, DEFAULT_HEADROOM, cache)).unwrap()
}

#[test]
fn exhaustion_is_an_error_and_recovers() {
    let p = pool(64, 16);
    let mut held = Vec::new();
    p.alloc_bulk(&mut held, 64).unwrap();
    assert_eq!(p.available(), 0);
    match p.alloc() {
        Err(PmdError::Exhausted { pool, wanted: 1 }) => assert_eq!(pool, "test"),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    let mut more = Vec::new();
    assert!(p.alloc_bulk(&mut more, 8).is_err());
    assert!(more.is_empty(), "bulk allocation is all or nothing");
    assert!(p.alloc_failures() >= 2);
    held.truncate(10);
    assert_eq!(p.available(), 54);
    p.alloc_bulk(&mut more, 8).unwrap();
    drop(held);
    drop(more);
    assert_eq!(p.available(), 64);
}

#[test]
fn bulk_all_or_nothing_without_cache() {
    let p = pool(10, 0);
    let mut v = Vec::new();
    assert!(p.alloc_bulk(&mut v, 11).is_err());
    assert!(v.is_empty());
    p.alloc_bulk(&mut v, 10).unwrap();
    pmd::free_bulk(&mut v);
    assert!(v.is_empty());
    assert_eq!(p.available(), 10);
}

#[test]
fn config_errors_name_the_field() {
    let e = |c: MempoolConfig| Mempool::new(&c).unwrap_err().to_string();
    assert!(e(MempoolConfig::new("p", 0, 2048, 128, 0)).contains("count"));
    assert!(e(MempoolConfig::new("p", 16, 0, 128, 0)).contains("data_room"));
    assert!(e(MempoolConfig::new("p", 16, 2048, 128, 32)).contains("cache_size"));
    assert!(e(MempoolConfig::new("p", 100_000, 2048, 128, 1000)).contains("cache_size"));
}

#[test]
fn available_counts_buffers_cached_on_other_threads() {
    let p = pool(1024, 64);
    let p2 = p.clone();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        p2.alloc_bulk(&mut v, 40).unwrap();
        drop(v); // into this thread's cache
    })
    .join()
    .unwrap();
    assert_eq!(p.available(), 1024);
}

#[test]
fn buffers_freed_on_another_thread_come_home() {
    let p = pool(4096, 256);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Mbuf>>();
    let consumer = std::thread::spawn(move || {
        let mut n = 0;
        for mut batch in rx {
            n += batch.len();
            pmd::free_bulk(&mut batch);
        }
        n
    });
    for _ in 0..1000 {
        let mut v = Vec::new();
        while p.alloc_bulk(&mut v, 32).is_err() {
            std::thread::yield_now();
        }
        tx.send(v).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), 32_000);
    assert_eq!(p.available(), 4096);
}

#[test]
fn window_moves_are_bounds_checked() {
    let p = pool(4, 0);
    let mut m = p.alloc().unwrap();
    assert_eq!((m.len(), m.headroom(), m.capacity()), (0, 128, 128 + 2048));
    m.extend_from_slice(b"payload").unwrap();
    m.prepend(4).unwrap().copy_from_slice(b"hdr:");
    assert_eq!(m.data(), b"hdr:payload");
    assert_eq!(m.headroom(), 124);
    assert!(m.prepend(125).is_none());
    assert!(m.adj(12).is_none());
    m.adj(4).unwrap();
    m.trim(3).unwrap();
    assert_eq!(m.data(), b"payl");
    assert!(m.trim(5).is_none());
    assert!(m.append(m.tailroom() + 1).is_none());
    assert!(m.set_len(2048 + 128).is_none());
    m.set_meta(MbufMeta { rss_hash: 7, rx_flags: pmd::RxFlags::RSS_HASH, ..MbufMeta::default() });
    let c = m.try_clone().unwrap();
    assert_eq!((c.data(), c.meta().rss_hash, c.headroom()), (m.data(), 7, m.headroom()));
    assert_ne!(c.data_ptr(), m.data_ptr());
    m.reset();
    assert_eq!((m.len(), m.headroom(), m.meta().rss_hash), (0, 128, 0));
    drop((m, c));
    assert_eq!(p.available(), 4);
}

#[test]
fn clone_fails_cleanly_when_exhausted() {
    let p = pool(2, 0);
    let a = p.alloc().unwrap();
    let b = p.alloc().unwrap();
    assert!(matches!(a.try_clone(), Err(PmdError::Exhausted { .. })));
    drop((a, b));
    assert_eq!(p.available(), 2);
}

#[test]
fn allocation_resets_window_and_metadata() {
    let p = pool(1, 0);
    let mut m = p.alloc().unwrap();
    m.adj(0).unwrap();
    m.extend_from_slice(&[1; 100]).unwrap();
    m.prepend(20).unwrap();
    m.set_meta(MbufMeta { vlan_tci: 5, tx_flags: pmd::TxFlags::VLAN_INSERT, ..MbufMeta::default() });
    drop(m);
    let m = p.alloc().unwrap();
    assert_eq!((m.len(), m.headroom()), (0, DEFAULT_HEADROOM));
    assert_eq!(m.meta(), MbufMeta::default());
}

/// A stand-in for DPDK: foreign objects `[MbufHdr | private area | data]`, owned
/// by a foreign free list. The private area's first 8 bytes hold the pointer to
/// our pool (written by `from_external`); the rest is the foreign owner's.
/// Shows that the stack-facing `Mbuf` reads and writes the foreign memory in
/// place and that freeing goes back to the foreign owner.
#[repr(C, align(64))]
struct ForeignObj {
    hdr: std::mem::MaybeUninit<MbufHdr>,
    private: [u8; 64],
    data: [u8; 512],
}

struct ForeignPool {
    objs: Box<[std::cell::UnsafeCell<ForeignObj>]>,
    free: Mutex<Vec<usize>>,
}

// SAFETY: objects are only touched by whoever owns them (free list or an Mbuf).
unsafe impl Sync for ForeignPool {}
// SAFETY: as above; nothing is tied to a thread.
unsafe impl Send for ForeignPool {}

impl ForeignPool {
    fn obj(&self, i: usize) -> *mut ForeignObj {
        self.objs[i].get()
    }
}

struct Shared(std::sync::Arc<ForeignPool>);

// SAFETY: `free` only receives headers made by `alloc_bulk` below.
unsafe impl ExternalPool for Shared {
    fn alloc_bulk(&self, pool: &Mempool, out: &mut Vec<Mbuf>, n: usize) -> Result<(), PmdError> {
        let mut free = self.0.free.lock().unwrap();
        if free.len() < n {
            return Err(PmdError::Exhausted { pool: pool.name().into(), wanted: n });
        }
        for _ in 0..n {
            let i = free.pop().unwrap();
            let o = self.0.obj(i);
            // SAFETY: object `i` was free, so we own it; the header slot and data are
            // inside it and live as long as the pool.
            let m = unsafe {
                (*o).private[8] = i as u8; // the object remembers its index
                Mbuf::from_external(
                    NonNull::new_unchecked((*o).hdr.as_mut_ptr()),
                    pool,
                    NonNull::new_unchecked((*o).data.as_mut_ptr()),
                    512,
                    64,
                    0,
                    MbufMeta::default(),
                )
            };
            out.push(m);
        }
        Ok(())
    }

    unsafe fn free(&self, hdr: NonNull<MbufHdr>) {
        // `hdr` is the first field of one of our objects.
        let o = hdr.as_ptr() as *mut ForeignObj;
        // SAFETY: we own the object again.
        let i = unsafe { (*o).private[8] } as usize;
        self.0.free.lock().unwrap().push(i);
    }

    fn available(&self) -> usize {
        self.0.free.lock().unwrap().len()
    }
}

/// A foreign pool of `n` objects, all free.
fn foreign_pool(n: usize) -> std::sync::Arc<ForeignPool> {
    std::sync::Arc::new(ForeignPool {
        objs: (0..n)
            .map(|_| {
                std::cell::UnsafeCell::new(ForeignObj {
                    private: [0; 64],
                    hdr: std::mem::MaybeUninit::uninit(),
                    data: [0; 512],
                })
            })
            .collect(),
        free: Mutex::new((0..n).collect()),
    })
}

#[test]
fn external_pool_buffers_are_used_in_place_and_go_home() {
    let fp = foreign_pool(8);
    let pool = Mempool::external("foreign", 8, 448, 64, Box::new(Shared(fp.clone())));
    assert_eq!(pool.available(), 8);
    let mut v = Vec::new();
    pool.alloc_bulk(&mut v, 3).unwrap();
    let mut m = v.pop().unwrap();
    m.extend_from_slice(b"zero copy").unwrap();
    let i = {
        let free = fp.free.lock().unwrap();
        (0..8).find(|i| {
            !free.contains(i) && {
                // SAFETY: test-only peek at the foreign data of an allocated object.
                let data = unsafe { &(*fp.obj(*i)).data };
                &data[64..73] == b"zero copy"
            }
        })
    };
    let i = i.expect("the Mbuf's bytes are the foreign object's bytes");
    // SAFETY: as above.
    assert_eq!(m.data_ptr(), unsafe { (*fp.obj(i)).data.as_ptr().add(64) });
    let c = m.try_clone().unwrap();
    assert_eq!(c.data(), b"zero copy");
    assert_eq!(pool.available(), 4);
    drop((m, c));
    pmd::free_bulk(&mut v);
    assert_eq!(pool.available(), 8);
}

#[test]
fn dropping_the_last_pool_handle_with_buffers_out_is_safe() {
    // The pool must stay valid for the late frees (valgrind/ASan would flag a
    // use-after-free here); it is leaked on purpose instead of freed.
    let p = pool(8, 0);
    let mut v = Vec::new();
    p.alloc_bulk(&mut v, 3).unwrap();
    drop(p);
    v[0].extend_from_slice(b"still usable").unwrap();
    assert_eq!(v[0].data(), b"still usable");
    let again = v[0].pool();
    assert_eq!(again.in_use(), 3);
    drop(v);
    assert_eq!(again.available(), 8, "everything came home");
}

#[test]
fn shared_pools_live_in_a_memfd_another_mapping_sees() {
    let cfg = MempoolConfig::new("shared", 64, 2048, 128, 0);
    let pool = Mempool::new_shared(&cfg).unwrap();
    let shm = pool.shared_memory().expect("a shared pool has its memory as a file");
    assert_eq!(shm.len % 4096, 0);
    assert!(Mempool::new(&cfg).unwrap().shared_memory().is_none(), "heap pools are not shared");
    // The descriptor is a memfd; another mapping of it (what a vhost-user back
    // end does) sees the bytes we write into a buffer, at the same offset.
    let link = std::fs::read_link(format!("/proc/self/fd/{}", shm.fd)).unwrap();
    assert!(link.to_string_lossy().starts_with("/memfd:pmd-pool-shared"), "{link:?}");
    let mut m = pool.alloc().unwrap();
    m.extend_from_slice(b"seen by the back end").unwrap();
    let off = m.data_ptr() as usize - shm.addr;
    assert!(off + m.len() <= shm.len);
    let file = std::fs::read(format!("/proc/self/fd/{}", shm.fd)).unwrap();
    assert_eq!(file.len(), shm.len);
    assert_eq!(&file[off..off + m.len()], b"seen by the back end");
    drop(m);
    assert_eq!(pool.available(), 64);
}

#[test]
fn free_bulk_returns_buffers_of_two_external_pools_to_their_own_owners() {
    let (fa, fb) = (foreign_pool(4), foreign_pool(4));
    let a = Mempool::external("fa", 4, 448, 64, Box::new(Shared(fa.clone())));
    let b = Mempool::external("fb", 4, 448, 64, Box::new(Shared(fb.clone())));
    let mut v = Vec::new();
    a.alloc_bulk(&mut v, 2).unwrap();
    b.alloc_bulk(&mut v, 3).unwrap();
    a.alloc_bulk(&mut v, 1).unwrap();
    assert_eq!((a.available(), b.available()), (1, 1));
    pmd::free_bulk(&mut v);
    assert_eq!((a.available(), b.available()), (4, 4));
}
