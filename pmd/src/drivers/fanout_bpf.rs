//! Our RSS as a classic BPF program, for `PACKET_FANOUT_CBPF`: the kernel runs
//! it on every frame an `af_packet` port receives and delivers the frame to
//! the fanout socket (= receive queue) it returns, so the port steers exactly
//! as [`crate::rss::Rss::queue_of_frame`] says instead of by the kernel's own
//! flow hash.
//!
//! Why classic BPF: it needs no BPF toolchain at build time and no CAP_BPF at
//! run time (CAP_NET_RAW, which the port needs anyway, suffices), and the
//! Toeplitz hash needs no loops or tables when unrolled: per input bit, a
//! test and a conditional XOR of the key window for that bit (a constant),
//! 5 instructions. IPv4 (96 bits) and IPv6 (288 bits) together stay well
//! under the 4096-instruction limit.
//!
//! The program sees the frame from its network header (offsets relative to
//! `SKF_NET_OFF`) and the EtherType as `skb->protocol`. Exactly as
//! [`Rss`](crate::rss::Rss): IPv4 not fragmented with TCP/UDP hashes the
//! 4-tuple when the hash types ask for it, else the addresses (when they do);
//! IPv6 likewise by its next header (extension headers not walked); anything
//! else hashes to 0. A frame shorter than a header the program reads ends it
//! with 0 (queue 0) where `Rss` would give `reta[0]`; the same with the
//! round-robin tables this crate builds. VLAN-tagged frames (not offloaded)
//! are not IP to the program, where `Rss` skips one tag.

use crate::port::RssHashTypes;
use crate::rss::{Rss, KEY_LEN};

/// `linux/if_packet.h`.
pub(crate) const PACKET_FANOUT_CBPF: u32 = 6;
/// `linux/if_packet.h`.
pub(crate) const PACKET_FANOUT_DATA: libc::c_int = 22;

const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const XOR: u16 = 0xa0;
const MOD: u16 = 0x90;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const TAX: u16 = 0x00;

/// `SKF_NET_OFF`: loads relative to the network header.
const NET: u32 = (-0x100000i32) as u32;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: the EtherType, host order.
const PROTOCOL: u32 = (-0x1000i32) as u32;

/// The hash lives in scratch word 0, the byte being hashed in word 1.
const HASH: u32 = 0;
const BYTE: u32 = 1;

/// One instruction, as `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A program under construction: forward jumps to labels are patched when
/// the label is placed. Conditional jumps only ever skip the next
/// instruction (a `JA` to a label), so their 8-bit offsets never overflow.
struct Asm {
    code: Vec<Insn>,
    /// (instruction index of a JA, label).
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push(Insn { code, jt: 0, jf: 0, k });
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn ja(&mut self, l: usize) {
        self.fixups.push((self.code.len(), l));
        self.op(JMP | JA, 0);
    }
    /// Jumps to `l` when `A == k` (or `A & k != 0` for `JSET`).
    fn jump_if(&mut self, cond: u16, k: u32, l: usize) {
        self.code.push(Insn { code: JMP | cond | K, jt: 0, jf: 1, k });
        self.ja(l);
    }
    /// XORs into the hash the key windows of the set bits of the byte at
    /// `load` (an instruction that loads it into A), input position `pos`.
    fn hash_byte(&mut self, windows: &[u32], load: (u16, u32), pos: usize) {
        self.op(load.0, load.1);
        self.op(ST, BYTE);
        for j in 0..8 {
            self.op(LD | MEM, BYTE);
            // Bit clear: skip the 3-instruction XOR.
            self.code.push(Insn { code: JMP | JSET | K, jt: 0, jf: 3, k: 0x80 >> j });
            self.op(LD | MEM, HASH);
            self.op(ALU | XOR | K, windows[8 * pos + j]);
            self.op(ST, HASH);
        }
    }
    fn finish(mut self) -> Vec<Insn> {
        for (at, l) in self.fixups {
            let target = self.labels[l].expect("every label placed");
            self.code[at].k = (target - at - 1) as u32;
        }
        self.code
    }
}

/// The program for `rss`: the receive queue of each frame.
pub(crate) fn program(rss: &Rss) -> Vec<Insn> {
    let key = rss.key();
    // The 32 key bits starting at input bit i, for every bit of a 36-byte input.
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
    a.op(LD | H | ABS, PROTOCOL);
    a.jump_if(JEQ, 0x0800, v4);
    a.jump_if(JEQ, 0x86dd, v6);
    a.ja(zero);
    for (family, start) in [(false, v4), (true, v6)] {
        a.place(start);
        a.op(LD | IMM, 0);
        a.op(ST, HASH);
        let (addr_at, addr_len) = if family { (8u32, 32usize) } else { (12, 8) };
        for i in 0..addr_len {
            a.hash_byte(&windows, (LD | B | ABS, NET.wrapping_add(addr_at + i as u32)), i);
        }
        let (tcp, udp, addrs) = if family {
            (RssHashTypes::IPV6_TCP, RssHashTypes::IPV6_UDP, RssHashTypes::IPV6)
        } else {
            (RssHashTypes::IPV4_TCP, RssHashTypes::IPV4_UDP, RssHashTypes::IPV4)
        };
        // Where the addresses-only hash goes: kept, or 0 without that type.
        let two_tuple = if t.contains(addrs) { done } else { zero };
        let ports = a.label();
        if !family {
            a.op(LD | H | ABS, NET.wrapping_add(6));
            a.jump_if(JSET, 0x3fff, two_tuple);
        }
        a.op(LD | B | ABS, NET.wrapping_add(if family { 6 } else { 9 }));
        for (proto, ty) in [(6, tcp), (17, udp)] {
            a.jump_if(JEQ, proto, if t.contains(ty) { ports } else { two_tuple });
        }
        a.ja(two_tuple);
        a.place(ports);
        if family {
            for i in 0..4 {
                a.hash_byte(&windows, (LD | B | ABS, NET.wrapping_add(40 + i)), 32 + i as usize);
            }
        } else {
            // X = the IPv4 header length.
            a.op(LD | B | ABS, NET);
            a.op(ALU | AND | K, 0x0f);
            a.op(ALU | LSH | K, 2);
            a.op(MISC | TAX, 0);
            for i in 0..4 {
                a.hash_byte(&windows, (LD | B | IND, NET.wrapping_add(i)), 8 + i as usize);
            }
        }
        a.ja(done);
    }
    a.place(zero);
    a.op(LD | IMM, 0);
    a.op(ST, HASH);
    a.place(done);
    a.op(LD | MEM, HASH);
    let reta = rss.reta();
    a.op(ALU | MOD | K, reta.len() as u32);
    for (i, &q) in reta.iter().enumerate() {
        a.code.push(Insn { code: JMP | JEQ | K, jt: 0, jf: 1, k: i as u32 });
        a.op(RET | K, q as u32);
    }
    a.op(RET | K, 0);
    let _ = (W, LDX);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::{MICROSOFT_KEY, SYMMETRIC_KEY};
    use crate::RssConfig;
    use proptest::prelude::*;

    /// The classic BPF machine, for the instructions `program` emits: the
    /// packet is the frame from its network header, `protocol` the EtherType.
    /// `None` where the kernel would end the program with 0 (a load past the
    /// end).
    fn run(prog: &[Insn], frame: &[u8]) -> Option<u32> {
        let protocol = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) as u32;
        let pkt = &frame[14..];
        let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0;
        let load = |off: u32, size: usize| -> Option<u32> {
            if off == PROTOCOL {
                return Some(protocol);
            }
            let at = off.wrapping_sub(NET) as usize;
            let b = pkt.get(at..at + size)?;
            Some(b.iter().fold(0u32, |v, &x| v << 8 | x as u32))
        };
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                c if c == LD | H | ABS => a = load(i.k, 2)?,
                c if c == LD | B | ABS => a = load(i.k, 1)?,
                c if c == LD | B | IND => a = load(i.k.wrapping_add(x), 1)?,
                c if c == LD | IMM => a = i.k,
                c if c == LD | MEM => a = m[i.k as usize],
                c if c == ST => m[i.k as usize] = a,
                c if c == ALU | AND | K => a &= i.k,
                c if c == ALU | LSH | K => a <<= i.k,
                c if c == ALU | XOR | K => a ^= i.k,
                c if c == ALU | MOD | K => a %= i.k,
                c if c == MISC | TAX => x = a,
                c if c == JMP | JA => pc += i.k as usize,
                c if c == JMP | JEQ | K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                c if c == JMP | JSET | K => pc += if a & i.k != 0 { i.jt } else { i.jf } as usize,
                c if c == RET | K => return Some(i.k),
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
    fn non_ip_frames_go_to_the_first_table_entry() {
        let mut cfg = RssConfig::spread(&MICROSOFT_KEY, 4);
        cfg.reta = vec![2, 1, 0, 3];
        let rss = Rss::new(&cfg).unwrap();
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(run(&program(&rss), &arp), Some(2));
    }
}
