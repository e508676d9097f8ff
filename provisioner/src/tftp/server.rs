//! The tokio shell around [`super::transfer`]: one listener socket (port 69), one task and one
//! connected socket per transfer. It moves bytes and arms timers; every decision is the state
//! machine's.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clients::{Admit, Clients};
use super::packet::{self, data_header, ErrorCode, Request};
use super::path;
use super::source::{FileSource, OpenError};
use super::transfer::{negotiate, Input, Next, Outcome, Send as Out, Transfer};
use crate::metrics::TftpMetrics;
use crate::sockets;

pub use super::settings::TftpSettings;

/// How a transfer ended, for events, logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Finished(Outcome),
    NotFound,
    Refused(String),
    Busy,
    ClientGone(String),
    ServerError(String),
    Shutdown,
}

impl Ending {
    pub fn label(&self) -> &'static str {
        match self {
            Ending::Finished(Outcome::Complete) => "complete",
            Ending::Finished(Outcome::ClientError { code: 8, .. }) => "option_negotiation_aborted",
            Ending::Finished(Outcome::ClientError { .. }) => "client_error",
            Ending::Finished(Outcome::TimedOut) => "timeout",
            Ending::Finished(Outcome::IllegalOperation { .. }) => "illegal_operation",
            Ending::NotFound => "not_found",
            Ending::Refused(_) => "refused",
            Ending::Busy => "busy",
            Ending::ClientGone(_) => "client_gone",
            Ending::ServerError(_) => "server_error",
            Ending::Shutdown => "shutdown",
        }
    }
}

/// One finished transfer.
#[derive(Clone, Debug)]
pub struct Report {
    pub client: SocketAddr,
    pub file: String,
    /// File bytes the client acknowledged.
    pub bytes: u64,
    pub duration: Duration,
    pub retransmits: u64,
    pub ending: Ending,
}

/// Told about every finished transfer (events for the inventory).
pub trait Observer: Send + Sync + 'static {
    fn finished(&self, report: Report);
}

struct Shared {
    source: Arc<dyn FileSource>,
    settings: TftpSettings,
    observer: Arc<dyn Observer>,
    metrics: Arc<TftpMetrics>,
    slots: Arc<Semaphore>,
    clients: Mutex<Clients>,
    shutdown: CancellationToken,
}

/// Serves read requests arriving on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: UdpSocket,
    source: Arc<dyn FileSource>,
    settings: TftpSettings,
    observer: Arc<dyn Observer>,
    metrics: Arc<TftpMetrics>,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(settings.max_transfers)),
        source,
        settings,
        observer,
        metrics,
        clients: Mutex::new(Clients::default()),
        shutdown: shutdown.clone(),
    });
    let mut buf = vec![0u8; 4096];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sockets::recv_with_arrival(&listener, &mut buf) => r,
        };
        let (n, arrival) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tftp: receive failed");
                continue;
            }
        };
        shared.metrics.requests.inc();
        // Awaited, not try_send: a socket's write readiness is only known after the reactor saw it.
        let reject = |code, msg: String| {
            let listener = &listener;
            async move {
                let _ = listener
                    .send_to(
                        &packet::error(code, &msg),
                        sockets::peer_for(listener, arrival.peer),
                    )
                    .await;
            }
        };
        let req = match packet::parse_request(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                shared.metrics.malformed.inc();
                tracing::debug!(peer = %arrival.peer, error = %e, "tftp: malformed request");
                reject(
                    ErrorCode::IllegalOperation,
                    format!("malformed request: {e}"),
                )
                .await;
                continue;
            }
        };
        if req.write {
            shared.metrics.refused.inc();
            reject(
                ErrorCode::AccessViolation,
                "this server is read-only".into(),
            )
            .await;
            continue;
        }
        if req.mode != "octet" && req.mode != "netascii" {
            shared.metrics.refused.inc();
            reject(
                ErrorCode::IllegalOperation,
                "only octet and netascii modes are supported".into(),
            )
            .await;
            continue;
        }
        let admitted = shared.clients.lock().unwrap().admit(
            arrival.peer,
            &buf[..n],
            shared.settings.max_per_client,
            Instant::now().into_std(),
        );
        match admitted {
            Admit::Start => {}
            // The running transfer's retransmission answers a resent request; one that ended
            // a moment ago has answered it (see `clients`).
            Admit::Duplicate => {
                shared.metrics.duplicates.inc();
                continue;
            }
            // At a limit the request is dropped without an answer: a PXE ROM that gets an
            // ERROR gives up on netbooting, one that gets nothing resends its RRQ a moment later.
            Admit::OverLimit => {
                shared.metrics.busy.inc();
                continue;
            }
        }
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            shared.clients.lock().unwrap().release(
                arrival.peer,
                &buf[..n],
                Instant::now().into_std(),
                false,
            );
            shared.metrics.busy.inc();
            continue;
        };
        let request = buf[..n].to_vec();
        let local = arrival.local.unwrap_or_else(|| {
            listener
                .local_addr()
                .map(|a| a.ip())
                .unwrap_or(arrival.peer.ip())
        });
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.metrics.active.inc();
            let started = Instant::now();
            let (ending, bytes, retransmits) = transfer(&shared, &req, local, arrival.peer).await;
            // Count the outcome before the transfer stops being active, so "0 active" means
            // every finished transfer is already counted.
            shared.metrics.finished(ending.label(), bytes, retransmits);
            shared.metrics.active.dec();
            drop(permit);
            // Ended by itself: a resend of this request still in our queue is no new transfer.
            let hold = matches!(
                ending,
                Ending::Finished(Outcome::Complete | Outcome::TimedOut) | Ending::ClientGone(_)
            );
            shared.clients.lock().unwrap().release(
                arrival.peer,
                &request,
                Instant::now().into_std(),
                hold,
            );
            let report = Report {
                client: arrival.peer,
                file: req.filename.clone(),
                bytes,
                duration: started.elapsed(),
                retransmits,
                ending,
            };
            match &report.ending {
                Ending::Finished(Outcome::Complete | Outcome::ClientError { .. })
                | Ending::NotFound => {
                    tracing::debug!(client = %report.client, file = %report.file, bytes, outcome = report.ending.label(), "tftp transfer finished")
                }
                other => tracing::info!(
                    client = %report.client, file = %report.file, bytes, retransmits,
                    outcome = report.ending.label(), detail = ?other, "tftp transfer did not complete"
                ),
            }
            shared.observer.finished(report);
        });
    }
}

/// Normalizes the name and opens the file, or says which ERROR to send.
async fn open(
    shared: &Shared,
    req: &Request,
    peer: SocketAddr,
) -> Result<Arc<dyn super::source::BlockFile>, (ErrorCode, String, Ending)> {
    let path = path::normalize(&req.filename).map_err(|e| match e {
        // No file has a name that long: the same answer as for any missing file.
        path::PathError::TooLong(_) => (
            ErrorCode::FileNotFound,
            "file not found".into(),
            Ending::NotFound,
        ),
        e => (
            ErrorCode::AccessViolation,
            e.to_string(),
            Ending::Refused(e.to_string()),
        ),
    })?;
    let source = shared.source.clone();
    let opened = tokio::task::spawn_blocking(move || source.open(&path, peer)).await;
    match opened {
        Ok(Ok(Some(f))) => Ok(f),
        Ok(Ok(None)) | Ok(Err(OpenError::NotFound)) => Err((
            ErrorCode::FileNotFound,
            "file not found".into(),
            Ending::NotFound,
        )),
        Ok(Err(OpenError::Access(why))) => Err((
            ErrorCode::AccessViolation,
            why.clone(),
            Ending::Refused(why),
        )),
        Ok(Err(e)) => Err((
            ErrorCode::NotDefined,
            "read error".into(),
            Ending::ServerError(e.to_string()),
        )),
        Err(e) => Err((
            ErrorCode::NotDefined,
            "server error".into(),
            Ending::ServerError(e.to_string()),
        )),
    }
}

/// Runs one transfer to its end; returns how it ended, bytes acknowledged and retransmits.
async fn transfer(
    shared: &Shared,
    req: &Request,
    local: IpAddr,
    peer: SocketAddr,
) -> (Ending, u64, u64) {
    let sock = match sockets::connected_udp(local, peer).await {
        Ok(s) => s,
        Err(e) => return (Ending::ServerError(format!("transfer socket: {e}")), 0, 0),
    };
    let file = match open(shared, req, peer).await {
        Ok(f) => f,
        Err((code, msg, ending)) => {
            let _ = sock.send(&packet::error(code, &msg)).await;
            return (ending, 0, 0);
        }
    };
    let limits = &shared.settings.limits;
    let size = file.size();
    let (mut t, mut step) = Transfer::start(
        negotiate(&req.options, size, limits),
        size,
        limits,
        Instant::now().into_std(),
    );
    let mut pkt = vec![0u8; 4 + usize::from(t.negotiated.blksize)];
    let mut rbuf = vec![0u8; 2048];
    let mut refused: Option<String> = None;
    // One timer for the whole transfer, moved to each new deadline (a new timer per block was
    // a timer-wheel insert and removal per DATA packet).
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let ending = 'run: loop {
        for s in std::mem::take(&mut step.send) {
            let sent = match s {
                Out::Packet(p) => sock.send(&p).await.map(|_| ()),
                Out::Blocks { first, last } => {
                    let mut r = Ok(());
                    for b in first..=last {
                        let (offset, len) = t.block_span(b);
                        data_header(&mut pkt, b as u16);
                        match file.read_at(&mut pkt[4..4 + len], offset) {
                            Ok(n) if n == len => {}
                            Ok(_) => {
                                let _ = sock
                                    .send(&packet::error(
                                        ErrorCode::NotDefined,
                                        "file changed during transfer",
                                    ))
                                    .await;
                                break 'run Ending::ServerError(
                                    "file shrank during transfer".into(),
                                );
                            }
                            Err(e) => {
                                let _ = sock
                                    .send(&packet::error(ErrorCode::NotDefined, "read error"))
                                    .await;
                                break 'run Ending::ServerError(e.to_string());
                            }
                        }
                        r = sock.send(&pkt[..4 + len]).await.map(|_| ());
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
            };
            if let Err(e) = sent {
                break 'run Ending::ClientGone(e.to_string());
            }
        }
        let deadline = match &step.next {
            Next::Done(o) => break Ending::Finished(o.clone()),
            Next::WaitUntil(d) => Instant::from_std(*d),
        };
        timer.as_mut().reset(deadline);
        tokio::select! {
            // Datagrams already queued are read before the timer is looked at.
            biased;
            r = sock.recv(&mut rbuf) => match r {
                Ok(n) => {
                    refused = None;
                    step = t.handle(Input::Datagram(&rbuf[..n]), Instant::now().into_std());
                }
                // ICMP port unreachable, one per datagram that hit a closed port. Linux reports
                // each before datagrams already queued, and a client that sent its final ACK and
                // exited while we retransmitted looks just like this: keep reading, and call the
                // client gone only if the timer fires with nothing read since.
                Err(e) => refused = Some(e.to_string()),
            },
            _ = &mut timer => {
                if let Some(e) = refused.take() {
                    break Ending::ClientGone(e);
                }
                step = t.handle(Input::Timeout, Instant::now().into_std());
            }
            _ = shared.shutdown.cancelled() => {
                let _ = sock.send(&packet::error(ErrorCode::NotDefined, "server shutting down")).await;
                break Ending::Shutdown;
            }
        }
    };
    (ending, t.bytes_acked(), t.retransmits)
}
