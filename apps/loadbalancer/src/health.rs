//! Active health checks, run on one core over the same stack as the data
//! path, their verdicts broadcast to every core ([`Control::broadcast`]).
//!
//! Every `interval` each server of a backend with `check = "tcp"` or
//! `"http"` is checked, all of them at once, each within `timeout`:
//! * `tcp`: the connect completes;
//! * `http`: `GET path HTTP/1.0` with `Host`, and the status line's code
//!   equals `http_status`.
//!
//! A server whose own `send_proxy` is on gets the header its listener
//! expects, in its "no client" form (v1 `PROXY UNKNOWN`, v2 `LOCAL`), as the
//! spec says health checks should.
//!
//! The checker keeps its own rise/fall streaks (HAProxy's rule: `fall`
//! consecutive failures take an up server down, `rise` consecutive successes
//! bring a down one up) and sends its verdict on every server to every core
//! after each check (`SetUp`, a no-op where nothing changes). Connect
//! failures on a core's data path count toward `fall` on that core
//! ([`crate::balance::Pool::report`], only for backends with checks on) and
//! can take a server down there at once; the checker's next verdict (up, if
//! its checks pass) then stands for every core.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flow::{Flow, Net};

use crate::config::{Check, SendProxy};
use crate::control::Control;
use crate::proxy::{Command, Lb};
use crate::proxy_proto;

/// One check; `true` if the server passed.
pub async fn check<N: Net>(
    net: &N,
    tcp: &flow::TcpConfig,
    addr: SocketAddr,
    kind: &Check,
    proxy: SendProxy,
    limit: Duration,
) -> bool {
    let work = async {
        let mut f = net.connect(addr, tcp).await.ok()?;
        let header = match proxy {
            SendProxy::Off => Vec::new(),
            SendProxy::V1 => proxy_proto::encode_v1_unknown(),
            SendProxy::V2 => proxy_proto::encode_v2_local(),
        };
        let ok = match kind {
            Check::Off => true,
            Check::Tcp => {
                if !header.is_empty() {
                    f.write_all(&header).await.ok()?;
                }
                true
            }
            Check::Http { path, host, status } => {
                let mut req = header;
                req.extend_from_slice(
                    format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lb-check\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                f.write_all(&req).await.ok()?;
                let mut buf = [0u8; 512];
                let mut have = 0;
                while have < buf.len() && !buf[..have].windows(2).any(|w| w == b"\r\n") {
                    match f.read(&mut buf[have..]).await.ok()? {
                        0 => break,
                        n => have += n,
                    }
                }
                status_of(&buf[..have]) == Some(*status)
            }
        };
        let _ = f.close().await;
        Some(ok)
    };
    matches!(flow::timeout(limit, work).await, Ok(Some(true)))
}

/// The code of an HTTP/1.x status line.
pub fn status_of(b: &[u8]) -> Option<u16> {
    let line = b.split(|&c| c == b'\r').next()?;
    let mut it = line.split(|&c| c == b' ');
    let v = it.next()?;
    if !(v == b"HTTP/1.0" || v == b"HTTP/1.1") {
        return None;
    }
    let code = it.next()?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[derive(Default)]
struct Streak {
    up: bool,
    run: u32,
}

/// Runs the checks of every backend of `lb` (this core's view of the config,
/// so a reload's servers are checked from its next round) until stop.
pub async fn run<N: Net>(net: N, lb: Rc<Lb<N>>, ctl: Arc<Control>, tcp: flow::TcpConfig) {
    let state: Rc<RefCell<HashMap<(String, String), Streak>>> = Rc::default();
    let mut due: HashMap<String, u64> = HashMap::new();
    while !ctl.stop.load(Ordering::Acquire) {
        flow::sleep(Duration::from_millis(10)).await;
        let now = flow::now_ns();
        let backends = lb.backends.borrow().clone();
        for be in backends {
            let spec = be.spec.borrow().clone();
            if spec.check == Check::Off {
                continue;
            }
            let next = due.entry(spec.name.clone()).or_insert(now);
            if now < *next {
                continue;
            }
            *next = now + spec.interval.as_nanos() as u64;
            let servers: Vec<(String, SocketAddr, SendProxy)> = be
                .pool
                .borrow()
                .servers()
                .iter()
                .filter(|s| !s.removed)
                .map(|s| (s.spec.name.clone(), s.spec.addr, s.spec.send_proxy))
                .collect();
            for (name, addr, proxy) in servers {
                let (net, ctl, state, spec, tcp) = (net.clone(), ctl.clone(), state.clone(), spec.clone(), tcp.clone());
                flow::spawn(async move {
                    let ok = check(&net, &tcp, addr, &spec.check, proxy, spec.check_timeout).await;
                    let key = (spec.name.clone(), name.clone());
                    let mut st = state.borrow_mut();
                    let s = st.entry(key).or_insert(Streak { up: true, run: 0 });
                    if ok == s.up {
                        s.run = 0;
                    } else {
                        s.run += 1;
                        if s.run >= if s.up { spec.fall } else { spec.rise } {
                            s.up = ok;
                            s.run = 0;
                            eprintln!("lb: server {}/{name} is {}", spec.name, if ok { "up" } else { "down" });
                        }
                    }
                    ctl.broadcast(Command::SetUp { backend: spec.name.clone(), server: name, up: s.up });
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_of(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(status_of(b"SSH-2.0-x\r\n"), None);
    }
}
