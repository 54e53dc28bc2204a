//! Our RSS as an eBPF socket-filter program for a TAP's queue steering
//! (`TUNSETSTEERINGEBPF`): the kernel runs it on every frame it sends into
//! the TAP and puts the frame on the queue it returns, so a `tap?queues=N`
//! port steers exactly as [`crate::rss::Rss::queue_of_frame`] says instead of
//! by the kernel's flow hash.
//!
//! The TAP takes eBPF only (AF_PACKET's fanout takes classic BPF, see
//! `fanout_bpf`), so the program is emitted here as eBPF instructions, with
//! no toolchain: the same unrolled Toeplitz hash (per input bit a test and a
//! 32-bit XOR of that bit's key window), using the socket-filter packet loads
//! (`LD_ABS`/`LD_IND`, frame offsets: the program sees the frame from its
//! Ethernet header). Loading it (`bpf(BPF_PROG_LOAD)`) needs CAP_BPF (or
//! CAP_SYS_ADMIN), which a TAP user has as root; where loading fails the port
//! reports it and the caller can fall back to software dispatch.
//!
//! The program agrees with `Rss` on IPv4/IPv6 with and without ports, on
//! fragments and on non-IP frames (hash 0, `reta[0]`); a frame shorter than a
//! header it reads ends it with 0 (queue 0), and VLAN tags are not skipped
//! (as in `fanout_bpf`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::port::RssHashTypes;
use crate::rss::{Rss, KEY_LEN};

/// One eBPF instruction, as `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

const LD_ABS_B: u8 = 0x30;
const LD_ABS_H: u8 = 0x28;
const LD_IND_B: u8 = 0x50;
const MOV64_X: u8 = 0xbf;
const MOV32_K: u8 = 0xb4;
const AND64_K: u8 = 0x57;
const LSH64_K: u8 = 0x67;
const XOR32_K: u8 = 0xa4;
const MOD32_K: u8 = 0x94;
const MOV32_X: u8 = 0xbc;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JSET_K: u8 = 0x45;
const EXIT: u8 = 0x95;

/// Registers: r0 loads, r1 the context on entry, r6 the context (packet
/// loads need it there), r7 the hash, r8 the byte being hashed, r9 the IPv4
/// header length.
const R0: u8 = 0;
const R1: u8 = 1;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;

struct Asm {
    code: Vec<Insn>,
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(Insn { code, dst, src, off, imm });
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    /// A jump (`JA`, or conditional on r0 against `imm`) to label `l`.
    fn jump(&mut self, code: u8, imm: i32, l: usize) {
        self.fixups.push((self.code.len(), l));
        self.op(code, R0, 0, 0, imm);
    }
    fn hash_byte(&mut self, windows: &[u32], load: (u8, u8, i32), pos: usize) {
        self.op(load.0, 0, load.1, 0, load.2);
        self.op(MOV64_X, R8, R0, 0, 0);
        for j in 0..8 {
            // Set: skip the JA and XOR; clear: the JA skips the XOR.
            self.op(JSET_K, R8, 0, 1, 0x80 >> j);
            self.op(JA, 0, 0, 1, 0);
            self.op(XOR32_K, R7, 0, 0, windows[8 * pos + j] as i32);
        }
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in self.fixups {
            let target = self.labels[l].expect("every label placed");
            self.code[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.code
    }
}

/// The steering program for `rss`.
pub(crate) fn program(rss: &Rss) -> Vec<Insn> {
    let key = rss.key();
    let windows: Vec<u32> = (0..8 * 36)
        .map(|b| {
            let mut w = [0u8; 8];
            let start = b / 8;
            let end = (start + 8).min(KEY_LEN);
            w[..end - start].copy_from_slice(&key[start..end]);
            ((u64::from_be_bytes(w) << (b % 8)) >> 32) as u32
        })
        .collect();
    let t = rss.hash_types();
    let mut a = Asm { code: Vec::new(), fixups: Vec::new(), labels: Vec::new() };
    let (v4, v6, zero, done) = (a.label(), a.label(), a.label(), a.label());
    a.op(MOV64_X, R6, R1, 0, 0);
    a.op(MOV32_K, R7, 0, 0, 0);
    a.op(LD_ABS_H, 0, 0, 0, 12);
    a.jump(JEQ_K, 0x0800, v4);
    a.jump(JEQ_K, 0x86dd, v6);
    a.jump(JA, 0, zero);
    for (family, start) in [(false, v4), (true, v6)] {
        a.place(start);
        let (addr_at, addr_len) = if family { (22, 32usize) } else { (26, 8) };
        for i in 0..addr_len {
            a.hash_byte(&windows, (LD_ABS_B, 0, addr_at + i as i32), i);
        }
        let (tcp, udp, addrs) = if family {
            (RssHashTypes::IPV6_TCP, RssHashTypes::IPV6_UDP, RssHashTypes::IPV6)
        } else {
            (RssHashTypes::IPV4_TCP, RssHashTypes::IPV4_UDP, RssHashTypes::IPV4)
        };
        let two_tuple = if t.contains(addrs) { done } else { zero };
        let ports = a.label();
        if !family {
            a.op(LD_ABS_H, 0, 0, 0, 14 + 6);
            a.jump(JSET_K, 0x3fff, two_tuple);
        }
        a.op(LD_ABS_B, 0, 0, 0, if family { 14 + 6 } else { 14 + 9 });
        for (proto, ty) in [(6, tcp), (17, udp)] {
            a.jump(JEQ_K, proto, if t.contains(ty) { ports } else { two_tuple });
        }
        a.jump(JA, 0, two_tuple);
        a.place(ports);
        if family {
            for i in 0..4 {
                a.hash_byte(&windows, (LD_ABS_B, 0, 54 + i), 32 + i as usize);
            }
        } else {
            a.op(LD_ABS_B, 0, 0, 0, 14);
            a.op(AND64_K, R0, 0, 0, 0x0f);
            a.op(LSH64_K, R0, 0, 0, 2);
            a.op(MOV64_X, R9, R0, 0, 0);
            for i in 0..4 {
                a.hash_byte(&windows, (LD_IND_B, R9, 14 + i), 8 + i as usize);
            }
        }
        a.jump(JA, 0, done);
    }
    a.place(zero);
    a.op(MOV32_K, R7, 0, 0, 0);
    a.place(done);
    a.op(MOV32_X, R0, R7, 0, 0);
    let reta = rss.reta();
    a.op(MOD32_K, R0, 0, 0, reta.len() as i32);
    for (i, &q) in reta.iter().enumerate() {
        a.op(JNE_K, R0, 0, 2, i as i32);
        a.op(MOV32_K, R0, 0, 0, q as i32);
        a.op(EXIT, 0, 0, 0, 0);
    }
    a.op(MOV32_K, R0, 0, 0, 0);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

/// `bpf(BPF_PROG_LOAD)` attributes, as far as a socket filter needs them
/// (the rest of `union bpf_attr` is zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    rest: [u64; 12],
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `_IOR('T', 224, int)`.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// Loads `prog` as a socket filter; on refusal the error carries the
/// verifier's log.
pub(crate) fn load(prog: &[Insn]) -> io::Result<OwnedFd> {
    let raw: Vec<u64> = prog
        .iter()
        .map(|i| {
            u64::from(i.code)
                | u64::from(i.dst & 0xf) << 8
                | u64::from(i.src & 0xf) << 12
                | u64::from(i.off as u16) << 16
                | u64::from(i.imm as u32) << 32
        })
        .collect();
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: raw.len() as u32,
        insns: raw.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid BPF_PROG_LOAD attribute block of the size
    // passed; the instruction array, the license string and the log buffer
    // it points to outlive the call.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>())
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let tail = String::from_utf8_lossy(&log[end.saturating_sub(300)..end]).into_owned();
        return Err(io::Error::new(e.kind(), format!("{e}; verifier: {tail}")));
    }
    // SAFETY: the syscall returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Makes `prog` the steering program of the TAP `queue_fd` belongs to (`None`
/// detaches it, back to the kernel's own choice).
pub(crate) fn attach(queue_fd: &OwnedFd, prog: Option<&OwnedFd>) -> io::Result<()> {
    let fd: libc::c_int = prog.map_or(-1, |p| p.as_raw_fd());
    // SAFETY: TUNSETSTEERINGEBPF reads one int from the pointer, which is live.
    let rc = unsafe { libc::ioctl(queue_fd.as_raw_fd(), TUNSETSTEERINGEBPF as _, &fd as *const libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::{MICROSOFT_KEY, SYMMETRIC_KEY};
    use crate::RssConfig;
    use proptest::prelude::*;

    /// The eBPF machine for the instructions `program` emits; `None` where
    /// the kernel would end the program with 0 (a packet load past the end).
    fn run(prog: &[Insn], frame: &[u8]) -> Option<u32> {
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let load = |at: i64, size: usize| -> Option<u64> {
            let at = usize::try_from(at).ok()?;
            Some(frame.get(at..at + size)?.iter().fold(0u64, |v, &b| v << 8 | b as u64))
        };
        loop {
            let i = prog[pc];
            pc += 1;
            let (d, s, imm) = (i.dst as usize, i.src as usize, i.imm as i64);
            let jump = |pc: &mut usize| *pc = (*pc as isize + i.off as isize) as usize;
            match i.code {
                LD_ABS_B => r[0] = load(imm, 1)?,
                LD_ABS_H => r[0] = load(imm, 2)?,
                LD_IND_B => r[0] = load(r[s] as i64 + imm, 1)?,
                MOV64_X => r[d] = r[s],
                MOV32_X => r[d] = r[s] as u32 as u64,
                MOV32_K => r[d] = imm as u32 as u64,
                AND64_K => r[d] &= imm as u64,
                LSH64_K => r[d] <<= imm,
                XOR32_K => r[d] = (r[d] as u32 ^ imm as u32) as u64,
                MOD32_K => r[d] = (r[d] as u32 % imm as u32) as u64,
                JA => jump(&mut pc),
                JEQ_K if r[d] == imm as u64 => jump(&mut pc),
                JNE_K if r[d] != imm as u64 => jump(&mut pc),
                JSET_K if r[d] & imm as u64 != 0 => jump(&mut pc),
                JEQ_K | JNE_K | JSET_K => {}
                EXIT => return Some(r[0] as u32),
                c => panic!("unexpected instruction {c:#x}"),
            }
        }
    }

    proptest! {
        #[test]
        fn the_program_names_the_queue_rss_names(
            body in proptest::collection::vec(any::<u8>(), 0..64),
            v6 in any::<bool>(),
            proto in prop_oneof![Just(6u8), Just(17), Just(1), Just(58)],
            frag in any::<bool>(),
            types in 0u32..64,
            symmetric in any::<bool>(),
            queues in 1u16..5,
        ) {
            let key = if symmetric { &SYMMETRIC_KEY } else { &MICROSOFT_KEY };
            let mut cfg = RssConfig::spread(key, queues);
            cfg.hash_types = RssHashTypes::from_bits_truncate(types);
            let rss = Rss::new(&cfg).unwrap();
            let prog = program(&rss);
            prop_assert!(prog.len() < 4096, "{} instructions", prog.len());
            let f = crate::rss::test_frame(v6, proto, frag, &body);
            prop_assert_eq!(run(&prog, &f), Some(rss.queue_of_frame(&f) as u32));
        }
    }

    #[test]
    fn the_kernel_verifier_accepts_the_program_when_we_may_load_one() {
        let rss = Rss::new(&RssConfig::spread(&MICROSOFT_KEY, 4)).unwrap();
        match load(&program(&rss)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                // Not root: nothing to check here (the testbed tests load it as root).
            }
            Err(e) => panic!("BPF_PROG_LOAD: {e}"),
        }
    }
}
