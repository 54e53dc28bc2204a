//! Small helpers over the kernel's network-interface ioctls, shared by the
//! kernel-backed drivers (`tap`, `af_packet`): interface index, MAC, MTU, flags.
//!
//! Every call goes through a throw-away `AF_INET` datagram socket, so it acts on the
//! network namespace of the calling thread (a driver opened inside `ip netns exec`
//! or after `setns` sees that namespace's interfaces). We call `libc` directly
//! rather than pulling in a wrapper crate: a dozen ioctls on one struct.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::port::MacAddr;
use crate::PmdError;

/// `struct ifreq`: a name and a 24-byte union.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IfReq {
    pub name: [u8; libc::IFNAMSIZ],
    pub data: [u8; 24],
}

impl IfReq {
    pub fn new(ifname: &str) -> Result<IfReq, PmdError> {
        check_ifname(ifname)?;
        let mut r = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        r.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        Ok(r)
    }
    pub fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }
    pub fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    pub fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
    pub fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// Checks an interface name the way the kernel will (1..=15 bytes, no `/`, no
/// whitespace), so a bad name is an error naming it rather than an `EINVAL`.
pub(crate) fn check_ifname(ifname: &str) -> Result<(), PmdError> {
    if ifname.is_empty()
        || ifname.len() >= libc::IFNAMSIZ
        || ifname.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(PmdError::Config {
            field: "ifname",
            reason: format!("'{ifname}' is not a valid interface name (1..=15 bytes, no '/', ':' or spaces)"),
        });
    }
    Ok(())
}

pub(crate) fn io_err(context: String) -> impl FnOnce(io::Error) -> PmdError {
    move |source| PmdError::Io { context, source }
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is checked and then owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one interface ioctl on `req`.
pub(crate) fn ifreq_ioctl(req: &mut IfReq, op: libc::c_ulong) -> io::Result<()> {
    let s = ctl_socket()?;
    // SAFETY: `req` is a valid, writable `struct ifreq` for the duration of the call,
    // which is what every SIOC[GS]IF* ioctl expects.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), op as _, req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface's index in the caller's namespace.
pub(crate) fn ifindex(ifname: &str) -> Result<i32, PmdError> {
    let mut r = IfReq::new(ifname)?;
    ifreq_ioctl(&mut r, libc::SIOCGIFINDEX).map_err(io_err(format!("interface '{ifname}' (SIOCGIFINDEX)")))?;
    Ok(r.int())
}

/// The interface's MAC address.
pub(crate) fn mac(ifname: &str) -> Result<MacAddr, PmdError> {
    let mut r = IfReq::new(ifname)?;
    ifreq_ioctl(&mut r, libc::SIOCGIFHWADDR).map_err(io_err(format!("interface '{ifname}' (SIOCGIFHWADDR)")))?;
    // sockaddr: family (2 bytes) then the address.
    let mut m = [0u8; 6];
    m.copy_from_slice(&r.data[2..8]);
    Ok(MacAddr(m))
}

/// The interface's MTU.
pub(crate) fn mtu(ifname: &str) -> Result<u16, PmdError> {
    let mut r = IfReq::new(ifname)?;
    ifreq_ioctl(&mut r, libc::SIOCGIFMTU).map_err(io_err(format!("interface '{ifname}' (SIOCGIFMTU)")))?;
    Ok(r.int().clamp(0, u16::MAX as i32) as u16)
}

/// Sets the interface's MTU.
pub(crate) fn set_mtu(ifname: &str, mtu: u16) -> Result<(), PmdError> {
    let mut r = IfReq::new(ifname)?;
    r.set_int(mtu as i32);
    ifreq_ioctl(&mut r, libc::SIOCSIFMTU).map_err(io_err(format!("interface '{ifname}': set MTU {mtu}")))
}

/// The interface flags (`IFF_*`).
pub(crate) fn flags(ifname: &str) -> Result<i32, PmdError> {
    let mut r = IfReq::new(ifname)?;
    ifreq_ioctl(&mut r, libc::SIOCGIFFLAGS).map_err(io_err(format!("interface '{ifname}' (SIOCGIFFLAGS)")))?;
    Ok(r.short() as u16 as i32)
}

/// Sets or clears `IFF_UP`.
pub(crate) fn set_up(ifname: &str, up: bool) -> Result<(), PmdError> {
    let mut r = IfReq::new(ifname)?;
    let ctx = || format!("interface '{ifname}': set {}", if up { "up" } else { "down" });
    ifreq_ioctl(&mut r, libc::SIOCGIFFLAGS).map_err(io_err(ctx()))?;
    let f = r.short() as u16 as i32;
    let nf = if up { f | libc::IFF_UP } else { f & !libc::IFF_UP };
    if nf == f {
        return Ok(());
    }
    r.set_short(nf as u16 as i16);
    ifreq_ioctl(&mut r, libc::SIOCSIFFLAGS).map_err(io_err(ctx()))
}

/// Link state from the flags: up when administratively up and running (carrier).
pub(crate) fn link_up(ifname: &str) -> bool {
    flags(ifname).map(|f| f & libc::IFF_UP != 0 && f & libc::IFF_RUNNING != 0).unwrap_or(false)
}

/// `read`/`write` result as `io::Result`.
pub(crate) fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Internet checksum helpers for the drivers' software fallbacks (IPv4 header
/// checksum for virtio, which has no IPv4 header offload).
pub(crate) fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's-complement sum of `b` (big-endian words), not folded.
pub(crate) fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for w in &mut chunks {
        sum = sum.wrapping_add(u16::from_be_bytes([w[0], w[1]]) as u32);
        if sum > 0xffff_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [x] = chunks.remainder() {
        sum = sum.wrapping_add((*x as u32) << 8);
    }
    sum
}

/// The interface name a `tap:` or `af_packet:` spec targets, checked before
/// anything touches the system.
pub(crate) fn ifname_of(spec: &crate::spec::Spec) -> Result<&str, PmdError> {
    let scheme = &spec.scheme;
    let name = spec.require_target(&format!("an interface name: {scheme}:IFNAME"))?;
    check_ifname(name).map_err(|e| PmdError::BadSpec { spec: spec.text.clone(), reason: e.to_string() })?;
    Ok(name)
}
