//! Splicing two flows, one session's data phase: one buffer per direction,
//! read only when empty (the back-pressure bound: a slow reader stops the
//! other side's reads and TCP's window stops its sender), an end of stream
//! passed on as a shutdown (half-close), a failed read or write ending the
//! session (the caller resets the other side), and the idle timeouts:
//! `client` while we wait for the client, `server` while we wait for the
//! server's first answer to forwarded client data, `tunnel` once both have
//! spoken, each on the time since the last byte moved.
//!
//! Each direction registers its own waker with the flows, so a wake-up polls
//! only the direction it is for.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use flow::Flow;

use crate::proxy::End;

#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) client: Duration,
    pub(crate) server: Duration,
    pub(crate) tunnel: Duration,
}

/// One direction: a fixed buffer, read only when empty.
pub(crate) struct Dir {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    shut: bool,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
}

impl Dir {
    /// `first`: bytes to write before anything is read (a PROXY header and
    /// the stream bytes that followed the client's).
    pub(crate) fn new(size: usize, first: Vec<u8>) -> Dir {
        let end = first.len();
        let mut buf = first;
        buf.resize(size.max(end), 0);
        Dir { buf, start: 0, end, eof: false, shut: false, bytes_read: 0, bytes_written: 0 }
    }
}

enum Fault {
    /// Reading from the source, or writing to the sink, failed.
    Source,
    Sink,
}

/// Moves what it can from `from` to `to` without blocking; returns the bytes
/// read from `from` in this call.
fn pump<A: Flow, B: Flow>(cx: &mut Context<'_>, from: &mut A, to: &mut B, d: &mut Dir) -> Result<u64, Fault> {
    let mut read = 0;
    loop {
        while d.start < d.end {
            match to.poll_write(cx, &d.buf[d.start..d.end]) {
                Poll::Ready(Ok(n)) => {
                    d.start += n;
                    d.bytes_written += n as u64;
                }
                Poll::Ready(Err(_)) => return Err(Fault::Sink),
                Poll::Pending => return Ok(read),
            }
        }
        if d.eof {
            if !d.shut {
                match to.poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => d.shut = true,
                    Poll::Ready(Err(_)) => return Err(Fault::Sink),
                    Poll::Pending => return Ok(read),
                }
            }
            return Ok(read);
        }
        d.start = 0;
        d.end = 0;
        match from.poll_read(cx, &mut d.buf) {
            Poll::Ready(Ok(0)) => d.eof = true,
            Poll::Ready(Ok(n)) => {
                d.end = n;
                d.bytes_read += n as u64;
                read += n as u64;
            }
            Poll::Ready(Err(_)) => return Err(Fault::Source),
            Poll::Pending => return Ok(read),
        }
    }
}

/// The waker one direction of a splice registers with its flows: marks the
/// direction due, then wakes the session's task.
struct DirWaker {
    due: AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl DirWaker {
    fn new() -> Arc<DirWaker> {
        Arc::new(DirWaker { due: AtomicBool::new(true), task: std::sync::Mutex::new(None) })
    }

    /// Keeps the task's current waker (a clone only when it changed).
    fn track(&self, w: &Waker) {
        let mut t = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !t.as_ref().is_some_and(|x| x.will_wake(w)) {
            *t = Some(w.clone());
        }
    }
}

impl std::task::Wake for DirWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        if let Some(w) = self.task.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            w.wake_by_ref();
        }
    }
}

/// Splices `client` and `server` until both directions end, one fails, or a
/// timeout expires (see the module docs for which). `client_spoke`: client
/// stream bytes are already in `up` (they came with its PROXY header).
pub(crate) async fn splice<C: Flow, S: Flow>(
    client: &mut C,
    server: &mut S,
    up: &mut Dir,
    down: &mut Dir,
    t: Timeouts,
    mut client_spoke: bool,
) -> End {
    let mut last = flow::now_ns();
    let mut server_spoke = false;
    // Who we wait for: the server once client bytes were forwarded.
    let mut awaiting_server = client_spoke;
    let mut timer: Option<Pin<Box<flow::exec::Sleep>>> = None;
    // One waker per direction: a wake-up polls only the direction it is for
    // (a read that would only say "nothing yet" is a system call on the
    // kernel's stack). Both are due at first.
    let (up_w, down_w) = (DirWaker::new(), DirWaker::new());
    let (up_waker, down_waker) = (Waker::from(up_w.clone()), Waker::from(down_w.clone()));
    poll_fn(move |cx| {
        up_w.track(cx.waker());
        down_w.track(cx.waker());
        let got_up = if up_w.due.swap(false, Ordering::AcqRel) {
            match pump(&mut Context::from_waker(&up_waker), client, server, up) {
                Ok(n) => n,
                Err(Fault::Source) => return Poll::Ready(End::ClientReset),
                Err(Fault::Sink) => return Poll::Ready(End::ServerReset),
            }
        } else {
            0
        };
        let got_down = if down_w.due.swap(false, Ordering::AcqRel) {
            match pump(&mut Context::from_waker(&down_waker), server, client, down) {
                Ok(n) => n,
                Err(Fault::Source) => return Poll::Ready(End::ServerReset),
                Err(Fault::Sink) => return Poll::Ready(End::ClientReset),
            }
        } else {
            0
        };
        if up.shut && down.shut {
            return Poll::Ready(End::Completed);
        }
        let now = flow::now_ns();
        if got_up > 0 || got_down > 0 {
            last = now;
        }
        if got_up > 0 {
            client_spoke = true;
            awaiting_server = true;
        }
        if got_down > 0 {
            server_spoke = true;
            awaiting_server = false;
        }
        let (limit, end) = if client_spoke && server_spoke {
            (t.tunnel, End::TunnelTimeout)
        } else if awaiting_server {
            (t.server, End::ServerTimeout)
        } else {
            (t.client, End::ClientTimeout)
        };
        let deadline = last.saturating_add(limit.as_nanos() as u64);
        if now >= deadline {
            return Poll::Ready(end);
        }
        // Re-arm lazily: only when the deadline moved earlier, or the timer fired.
        loop {
            let rearm = match &timer {
                None => true,
                Some(s) => s.deadline_ns() > deadline,
            };
            if rearm {
                timer = Some(Box::pin(flow::exec::sleep_until(deadline)));
            }
            let s = timer.as_mut().expect("armed above");
            match s.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if flow::now_ns() >= deadline {
                        return Poll::Ready(end);
                    }
                    timer = None;
                }
            }
        }
    })
    .await
}
