//! Per-connection limits below HTTP (issue 18, item 4, found again by a review): a client that
//! stops *reading* must not hold a connection slot forever, and one address must not take all
//! of them.
//!
//! - [`SendStall`] wraps a connection's stream: when a write cannot proceed (the client's
//!   receive window is full because it stopped reading) for the stall timeout, the write fails
//!   and the connection closes. A slow client that keeps reading is never cut; a download or an
//!   SSE stream to a live client always makes progress.
//! - [`PerClient`] counts open connections per client address, so one host on the provisioning
//!   network cannot fill `http.max_connections` (real machines and the CLI need a handful each).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes fail after `timeout` without progress.
pub struct SendStall<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is blocked; cleared by every write that goes through.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SendStall<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        SendStall {
            inner,
            timeout,
            timer: None,
        }
    }

    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {timeout:?} (http.body_stall_timeout)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.blocked(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.blocked(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.blocked(cx).map_ok(|_| ()),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections per client address, capped.
#[derive(Clone)]
pub struct PerClient {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted connection; uncounted when dropped.
pub struct ClientSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    /// At most `cap` connections per address (at least 1).
    pub fn new(cap: usize) -> Self {
        PerClient {
            cap: cap.max(1),
            open: Arc::default(),
        }
    }

    /// A slot for a new connection from `ip`, or `None` when it has `cap` open already.
    pub fn admit(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn one_address_gets_at_most_its_cap_and_slots_come_back() {
        let p = PerClient::new(2);
        let a: IpAddr = "198.18.0.5".parse().unwrap();
        let b: IpAddr = "198.18.0.6".parse().unwrap();
        let s1 = p.admit(a).unwrap();
        let _s2 = p.admit(a).unwrap();
        assert!(p.admit(a).is_none());
        assert!(p.admit(b).is_some(), "others are not affected");
        drop(s1);
        assert!(p.admit(a).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_fails_after_the_timeout() {
        // A duplex pipe with a 16-byte buffer nobody reads: the second write blocks.
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut s = SendStall::new(ours, Duration::from_secs(30));
        s.write_all(&[0; 16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = s.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_never_cut() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let mut s = SendStall::new(ours, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut got = 0;
            while got < 16 * 10 {
                // 20 s between reads: slower than nothing, never a 30 s stall.
                tokio::time::sleep(Duration::from_secs(20)).await;
                got += tokio::io::AsyncReadExt::read(&mut theirs, &mut buf)
                    .await
                    .unwrap();
            }
        });
        for _ in 0..10 {
            s.write_all(&[1; 16])
                .await
                .expect("a reading client keeps the connection");
        }
        reader.await.unwrap();
    }
}
