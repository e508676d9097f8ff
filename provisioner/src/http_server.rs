//! The HTTP listener: hyper's HTTP/1.1 connection driver under limits a client on the
//! provisioning network cannot get around (issue 18, item 4). `axum::serve` has none of them.
//!
//! - **Header-read timeout** ([`HttpLimits::header_timeout`]): a request's head must arrive
//!   within it, counted from when the connection starts waiting for a request — so it is also
//!   the keep-alive idle timeout, and slowloris clients (a header byte a second) are dropped.
//!   hyper's `header_read_timeout`.
//! - **Body stall timeout** ([`HttpLimits::body_stall_timeout`]): a handler waiting for request
//!   body bytes gives up when none come for this long. Not a total deadline: a multi-hundred-MiB
//!   upload that keeps moving is never cut. The same timeout bounds a *response* the client
//!   stops reading ([`crate::http_io::SendStall`]): a download or an SSE stream to a client that
//!   keeps reading, however slowly, is never cut.
//! - **Connections per client** ([`HttpLimits::max_connections_per_client`]): one address cannot
//!   take every slot ([`crate::http_io::PerClient`]).
//! - **Connection cap** ([`HttpLimits::max_connections`], and below the open-file limit): at the
//!   cap we stop accepting, so new connections wait in the kernel's backlog instead of taking
//!   descriptors the server needs for its files and the store.
//! - [`raise_open_file_limit`]: the soft `RLIMIT_NOFILE` raised to the hard limit at start.
//! - **Title-case header names** on every response (`Content-Length`): GRUB's HTTP client
//!   reads header names case-sensitively (issue 10, item 4).
//!
//! - **TLS** ([`Transport::Tls`], issue 14 item 4): the same driver and limits behind a rustls
//!   handshake that must finish within its own timeout, so a client that connects and never
//!   sends a ClientHello holds its slot only that long. Requests carry [`Secure`] so the router
//!   can tell the two listeners apart.
//!
//! Machine endpoints, which read small bodies before or without a token, use [`read_limited`]:
//! a size limit and a total deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::http::Peer;

/// Limits of the HTTP listener, from `[http]` in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// `http.header_timeout`: the longest a connection may take to send a request head,
    /// including the wait for the next request on a kept-alive connection.
    pub header_timeout: Duration,
    /// `http.body_stall_timeout`: the longest a request body may send nothing while a handler
    /// waits for it.
    pub body_stall_timeout: Duration,
    /// `http.max_connections`: connections served at once (further ones wait to be accepted);
    /// lowered at start to fit the open-file limit ([`connection_cap`]).
    pub max_connections: usize,
    /// `http.max_connections_per_client`: connections one client address may hold at once;
    /// more are closed as soon as they are accepted.
    pub max_connections_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_stall_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_client: 64,
        }
    }
}

/// Descriptors kept free of HTTP connections: the store, asset files being served, TFTP and
/// DHCP sockets, log files.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard limit; returns `(before, after)`.
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// Connections to serve at once: the configured cap, but leaving [`RESERVED_FDS`] of the
/// `nofile` limit to everything else (at least 16).
pub fn connection_cap(configured: usize, nofile: u64) -> usize {
    let fit = nofile.saturating_sub(RESERVED_FDS).max(16);
    configured.min(usize::try_from(fit).unwrap_or(usize::MAX))
}

/// How a listener's connections are carried.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP/1.1.
    Plain,
    /// HTTP/1.1 inside TLS (rustls).
    Tls {
        acceptor: tokio_rustls::TlsAcceptor,
        /// `tls.handshake_timeout`: the whole handshake must finish within it.
        handshake_timeout: Duration,
    },
}

/// Request extension: `Secure(true)` when the request came over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secure(pub bool);

/// Serves `router` on `listener` under `limits` until `shutdown` completes; then stops
/// accepting, lets open requests finish (at most `drain` long) and returns.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    drain: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, Transport::Plain, router, limits, drain, shutdown).await
}

/// [`run`] with a choice of [`Transport`]: the same accept loop, caps and timeouts.
pub async fn run_with(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    limits: HttpLimits,
    drain: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let cap = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // `Content-Length`, not `content-length`: GRUB's HTTP client (and other firmware-era
        // clients) match header names case-sensitively (issue 10, item 4). HTTP/1.1 allows
        // either; hyper writes every response header name title-cased with this on.
        .title_case_headers(true);
    let mut warned_full: Option<tokio::time::Instant> = None;
    let mut warned_client: Option<tokio::time::Instant> = None;
    let per_client = crate::http_io::PerClient::new(limits.max_connections_per_client);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if warned_full.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warned_full = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        max_connections = cap,
                        "HTTP connection cap reached; new connections wait until one closes (http.max_connections)"
                    );
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                    _ = stop.cancelled() => break,
                }
            }
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE/ENFILE: wait for descriptors to come back instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let client_ip = crate::identity::ipv4(remote.ip()).map_or(remote.ip(), Into::into);
        let Some(client_slot) = per_client.admit(client_ip) else {
            if warned_client.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                warned_client = Some(tokio::time::Instant::now());
                tracing::warn!(
                    client = %client_ip,
                    max = limits.max_connections_per_client,
                    "a client holds its whole share of HTTP connections; closing its new ones (http.max_connections_per_client)"
                );
            }
            drop(stream);
            continue;
        };
        let peer = Peer {
            local: stream.local_addr().unwrap_or(remote),
            remote,
        };
        let router = router.clone();
        let stall = limits.body_stall_timeout;
        let secure = Secure(matches!(transport, Transport::Tls { .. }));
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(|b| Body::new(StallGuard::new(b, stall)));
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(secure);
                router.clone().oneshot(req)
            });
        // A client that stops reading its response is cut after the same stall timeout.
        let io = crate::http_io::SendStall::new(stream, stall);
        let stop = stop.clone();
        let builder = builder.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _client_slot = client_slot;
            match transport {
                Transport::Plain => serve_connection(&builder, io, service, &stop, remote).await,
                Transport::Tls {
                    acceptor,
                    handshake_timeout,
                } => {
                    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(io));
                    let tls = tokio::select! {
                        r = handshake => r,
                        _ = stop.cancelled() => return,
                    };
                    match tls {
                        Ok(Ok(tls)) => {
                            serve_connection(&builder, tls, service, &stop, remote).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(
                            %remote,
                            "TLS handshake not finished within {handshake_timeout:?} (tls.handshake_timeout); closed"
                        ),
                    }
                }
            }
        });
    }
    // Every slot back means every connection is closed.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = cap - slots.available_permits(),
            "HTTP connections still open {drain:?} after shutdown; closing them"
        );
    }
    Ok(())
}

/// Drives one HTTP/1.1 connection until it ends, or gracefully once `stop` is cancelled.
async fn serve_connection<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    stop: &CancellationToken,
    remote: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send,
    S::ResBody: Send + 'static,
    <S::ResBody as HttpBody>::Data: Send,
    <S::ResBody as HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "HTTP connection ended");
    }
}

/// A request body that fails when no data arrives for `timeout` while it is being read.
struct StallGuard<B> {
    inner: B,
    timeout: Duration,
    /// Armed when a read finds nothing waiting; cleared by every frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> StallGuard<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            timer: None,
        }
    }
}

/// The request body sent nothing for the stall timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled: no data for {0:?} (http.body_stall_timeout)")]
pub struct BodyStalled(Duration);

impl<B> HttpBody for StallGuard<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyStalled(timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why [`read_limited`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than `limit` bytes (by `Content-Length` or as they arrived).
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The whole body did not arrive within `deadline`.
    #[error("request body not received within {deadline:?}")]
    TimedOut { deadline: Duration },
    /// The connection failed or the body stalled.
    #[error("reading the request body: {0}")]
    Failed(String),
}

/// Reads a whole small body: at most `limit` bytes, all within `deadline`. A declared
/// `Content-Length` above the limit is refused before a byte is read.
pub async fn read_limited(
    headers: &axum::http::HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(BodyError::TimedOut { deadline }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(4096, 1_048_576), 4096);
        assert_eq!(connection_cap(4096, 1024), 768);
        assert_eq!(connection_cap(4096, 100), 16);
    }

    /// A body fed by a channel, wrapped in a 5 s stall guard, read to the end in a task.
    type Feed = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;
    type Reader = tokio::task::JoinHandle<Result<Bytes, axum::Error>>;

    fn guarded() -> (Feed, Reader) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let inner = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let body = Body::new(StallGuard::new(inner, Duration::from_secs(5)));
        let reader = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        (tx, reader)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_and_a_slow_one_does_not() {
        // A byte every 4 s for 60 s: slow, never stalled.
        let (tx, reader) = guarded();
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        }
        drop(tx);
        assert_eq!(reader.await.unwrap().unwrap().len(), 15);

        let (tx, reader) = guarded();
        tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let err = reader.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("stalled"), "{err}");
        drop(tx);
    }
}
