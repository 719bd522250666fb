//! Per-stream flow control (spec/PROTOCOL.md, "Flow control"), shared by the worker engine
//! and the gateway: the sender's credit, and when a receiver grants more.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::limits::MAX_WINDOW;

/// The credit a sender has on one stream. `E` is what waiting senders get once the stream
/// has failed (reset, connection lost).
#[derive(Debug)]
pub struct SendWindow<E> {
    state: Mutex<SendState<E>>,
    notify: Notify,
}

#[derive(Debug)]
struct SendState<E> {
    avail: i64,
    failed: Option<E>,
}

impl<E: Clone> SendWindow<E> {
    pub fn new(initial: u32) -> SendWindow<E> {
        SendWindow {
            state: Mutex::new(SendState {
                avail: initial as i64,
                failed: None,
            }),
            notify: Notify::new(),
        }
    }

    /// Adds credit from a WINDOW frame; `false` when the window would pass 2^31-1, which
    /// the receiver of that WINDOW must treat as a flow-control error.
    pub fn grant(&self, increment: u32) -> bool {
        let mut s = self.state.lock().unwrap();
        s.avail += increment as i64;
        let ok = s.avail <= MAX_WINDOW as i64;
        drop(s);
        self.notify.notify_waiters();
        ok
    }

    /// Fails every current and future reservation with `err` (the first failure wins).
    pub fn fail(&self, err: E) {
        let mut s = self.state.lock().unwrap();
        if s.failed.is_none() {
            s.failed = Some(err);
        }
        drop(s);
        self.notify.notify_waiters();
    }

    /// The failure, if the stream has failed.
    pub fn failure(&self) -> Option<E> {
        self.state.lock().unwrap().failed.clone()
    }

    /// Waits until the stream has failed, and returns why.
    pub async fn failed(&self) -> E {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.failure() {
                return e;
            }
            notified.await;
        }
    }

    /// Takes up to `want` bytes of credit without waiting: `Ok(0)` when the window is
    /// empty. The non-blocking half of [`SendWindow::reserve`], for hosts that write from a
    /// foreign event loop and wait only when the window is full.
    pub fn try_reserve(&self, want: usize) -> Result<usize, E> {
        let mut s = self.state.lock().unwrap();
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        let n = (s.avail.max(0) as usize).min(want);
        s.avail -= n as i64;
        Ok(n)
    }

    /// Waits until there is credit, then takes up to `want` bytes of it (at least 1).
    /// Taking what is there rather than waiting for all of `want` means no window size can
    /// deadlock a sender.
    pub async fn reserve(&self, want: usize) -> Result<usize, E> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock().unwrap();
                if let Some(e) = &s.failed {
                    return Err(e.clone());
                }
                if s.avail > 0 {
                    let n = (s.avail as usize).min(want);
                    s.avail -= n as i64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }
}

/// A receiver sends WINDOW once the bytes consumed since its last WINDOW reach half the
/// initial window: few WINDOW frames, and the sender never stalls on a full window.
#[inline]
pub fn window_update_due(unacked: u32, initial_window: u32) -> bool {
    unacked > 0 && unacked >= initial_window / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_reserve_takes_what_is_there_and_never_waits() {
        let w: SendWindow<&str> = SendWindow::new(10);
        assert_eq!(w.try_reserve(4), Ok(4));
        assert_eq!(w.try_reserve(100), Ok(6));
        assert_eq!(w.try_reserve(1), Ok(0));
        assert!(w.grant(3));
        assert_eq!(w.try_reserve(2), Ok(2));
        w.fail("reset");
        assert_eq!(w.try_reserve(1), Err("reset"));
    }
}
