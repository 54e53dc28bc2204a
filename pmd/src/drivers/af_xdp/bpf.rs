//! The XDP side: an `XSKMAP`, the six-instruction redirect program, and the
//! `bpf_link` that attaches it to the interface, all through the `bpf(2)`
//! syscall (no libbpf, no libxdp, no bpffs; see the module docs of `af_xdp`
//! for why).
//!
//! The program is what libxdp's `xsk_def_xdp_prog_5.3.o` does:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
//! r1 = map_fd ll                ; the XSKMAP (two-slot ld_imm64, src = PSEUDO_MAP_FD)
//! r3 = 2                        ; XDP_PASS when the map has no socket at that key
//! call bpf_redirect_map         ; helper 51
//! exit
//! ```
//!
//! so a frame on a queue with one of our sockets goes to it, and any other
//! frame (queues we did not take) goes on to the kernel's stack unchanged.
//!
//! Invariant: the program is attached by a `bpf_link` whose only reference is
//! the descriptor in [`Attached`]; dropping it (or the process dying) detaches
//! the program, so the interface cannot be left redirecting to a dead socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver's receive path.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `union bpf_attr`, as bytes: each command fills the fields it needs at
/// their offsets in the UAPI header. 128 bytes covers every command used here.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, off: usize, name: &str) -> &mut Attr {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-initialised `union bpf_attr` of the size passed,
    // with the command's fields filled in; every pointer in it points to memory
    // that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as libc::c_uint) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: these commands return a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

/// The redirect program for XSKMAP descriptor `map_fd` (see the module docs).
pub(super) fn redirect_program(map_fd: i32) -> [Insn; 6] {
    [
        insn(0x61, 2, 1, 16, 0),                     // ldxw r2, [r1 + 16]
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // lddw r1, map
        insn(0, 0, 0, 0, 0),                         //   (upper half)
        insn(0xb7, 3, 0, 0, XDP_PASS),               // mov64 r3, XDP_PASS
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),  // call bpf_redirect_map
        insn(0x95, 0, 0, 0, 0),                      // exit
    ]
}

/// The XSKMAP, the loaded program and its link: the program is attached
/// (native mode) for as long as this lives.
#[derive(Debug)]
pub(super) struct Attached {
    /// Dropped first: that detaches the program.
    link: Option<OwnedFd>,
    prog: OwnedFd,
    map: OwnedFd,
}

/// Why attaching failed, for the port to turn into its error.
#[derive(Debug)]
pub(super) enum AttachError {
    /// `what` failed with `err`.
    Call { what: &'static str, err: io::Error, log: String },
}

impl Attached {
    /// Creates a map of `entries` slots, loads the program and attaches it to
    /// `ifindex` in native mode.
    pub(super) fn attach(ifindex: u32, entries: u32) -> Result<Attached, AttachError> {
        let call = |what, err| AttachError::Call { what, err, log: String::new() };
        let map = bpf_fd(
            BPF_MAP_CREATE,
            Attr::new().u32(0, BPF_MAP_TYPE_XSKMAP).u32(4, 4).u32(8, 4).u32(12, entries).name(28, "pmd_xsks"),
        )
        .map_err(|e| call("BPF_MAP_CREATE (XSKMAP)", e))?;
        let prog = load(map.as_raw_fd())?;
        let mut a = Attached { link: None, prog, map };
        let link = bpf_fd(
            BPF_LINK_CREATE,
            Attr::new().u32(0, a.prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_XDP).u32(12, XDP_FLAGS_DRV_MODE),
        )
        .map_err(|e| call("BPF_LINK_CREATE (XDP, native mode)", e))?;
        a.link = Some(link);
        Ok(a)
    }

    /// Puts socket `xsk_fd` at key `queue`.
    pub(super) fn insert(&self, queue: u32, xsk_fd: i32) -> io::Result<()> {
        let key = queue;
        let val = xsk_fd as u32;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            Attr::new()
                .u32(0, self.map.as_raw_fd() as u32)
                .u64(8, &key as *const u32 as u64)
                .u64(16, &val as *const u32 as u64)
                .u64(24, 0),
        )
        .map(|_| ())
    }

    /// Empties key `queue` (its frames go to the kernel again).
    pub(super) fn remove(&self, queue: u32) {
        let key = queue;
        // ENOENT (nothing there) is fine.
        let _ =
            bpf(BPF_MAP_DELETE_ELEM, Attr::new().u32(0, self.map.as_raw_fd() as u32).u64(8, &key as *const u32 as u64));
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // The link first: the program stops running before the map goes.
        drop(self.link.take());
    }
}

fn load(map_fd: i32) -> Result<OwnedFd, AttachError> {
    let insns = redirect_program(map_fd);
    let license = c"Dual MIT/GPL";
    let try_load = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .name(48, "pmd_xsk_redir")
            .u32(68, BPF_XDP);
        if let Some(buf) = log {
            a.u32(24, 1).u32(28, buf.len() as u32).u64(32, buf.as_mut_ptr() as u64);
        }
        bpf_fd(BPF_PROG_LOAD, &mut a)
    };
    try_load(None).map_err(|err| {
        // Load again with the verifier's log, for the error message.
        let mut buf = vec![0u8; 16 * 1024];
        let _ = try_load(Some(&mut buf));
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let log = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        AttachError::Call { what: "BPF_PROG_LOAD (XDP redirect to XSKMAP)", err, log }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_encodes_as_the_uapi_bpf_insn_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        let p = redirect_program(7);
        // ldxw r2, [r1+16]: dst 2 in the low nibble, src 1 in the high one.
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16));
        // lddw r1 with the map descriptor and BPF_PSEUDO_MAP_FD as src.
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        assert_eq!(p[2], insn(0, 0, 0, 0, 0));
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 0x03, XDP_PASS));
        assert_eq!((p[4].code, p[4].imm), (0x85, BPF_FUNC_REDIRECT_MAP));
        assert_eq!(p[5].code, 0x95);
    }
}
