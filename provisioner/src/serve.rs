//! `provisioner serve`: runs the HTTP server on a bound listener until `shutdown` resolves, plus
//! the lifecycle deadline sweeper.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{now, App};

/// How long open connections may take to finish after shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// The HTTPS listener beside the plain one, and what it changes on the plain one.
pub struct TlsListener {
    pub listener: TcpListener,
    /// [`crate::http_server::Transport::Tls`].
    pub transport: crate::http_server::Transport,
    /// `tls.require_for_secrets` and where refused clients are sent.
    pub policy: crate::tls_policy::SecretsPolicy,
}

/// Serves until `shutdown` completes, then lets in-flight requests finish (at most [`DRAIN`]).
/// With `tls`, the same router and limits are served on its listener too.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsListener>,
    app: App,
    limits: crate::http_server::HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let token = app.shutdown.clone();
    let sweeper = tokio::spawn(expire_stuck_machines(app.clone()));
    let metrics = app.metrics.clone();
    let mut router = crate::router::router(app);
    let stopped = tokio_util::sync::CancellationToken::new();
    let tls_server = tls.map(|t| {
        router = router.clone().layer(axum::middleware::from_fn_with_state(
            t.policy,
            crate::tls_policy::require_tls,
        ));
        let stopped = stopped.clone();
        tokio::spawn(crate::http_server::run_with(
            t.listener,
            t.transport,
            router.clone(),
            limits.clone(),
            DRAIN,
            async move { stopped.cancelled().await },
        ))
    });
    let result = crate::http_server::run(listener, router, limits, DRAIN, async move {
        shutdown.await;
        tracing::info!("shutting down");
        stopped.cancel();
        // Ends long-lived responses (SSE) so their connections can close.
        token.cancel();
    })
    .await;
    if let Some(t) = tls_server {
        match t.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTPS listener failed"),
            Err(e) => tracing::warn!(error = %e, "the HTTPS listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    sweeper.abort();
    // Transfers the shutdown ended record their events now; write them before exiting.
    crate::event_writer::drain(&metrics, Duration::from_secs(5)).await;
    result?;
    Ok(())
}

/// How often stuck machines are looked for: a tenth of the shortest deadline, within 1–60 s.
fn sweep_interval(app: &App) -> Duration {
    let shortest = app.deadlines.booting.min(app.deadlines.installing);
    (shortest / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

async fn expire_stuck_machines(app: App) {
    let mut tick = tokio::time::interval(sweep_interval(&app));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let deadlines = app.deadlines;
        let t = now();
        let swept = app
            .write(move |s| {
                let events = s.expire_stuck(t, &deadlines)?;
                Ok((events.len(), events))
            })
            .await;
        match swept {
            Ok(0) => {}
            Ok(n) => {
                app.metrics.machines_expired(n);
                tracing::warn!(
                    machines = n,
                    "failed machines stuck past their lifecycle deadline"
                );
            }
            Err(e) => tracing::warn!(error = %e, "lifecycle deadline sweep failed"),
        }
    }
}
