//! `tls.require_for_secrets`: over plain HTTP, refuse what carries secrets — the operator API
//! (its token travels in every request), the machines' API (tokens, the apiKey) and `/config`
//! (the machine's enrollment token), and the dashboard (`/ui`: its login and session cookie) — with 403 `https_required` naming the HTTPS URL to use.
//! Firmware-facing downloads (iPXE scripts, UKIs and their sections, GRUB configs), `/healthz`
//! and `/metrics` stay on plain HTTP: Debian 12's iPXE and GRUB speak no HTTPS.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;
use crate::http_server::Secure;

/// What the middleware needs: whether to refuse, and where to send clients instead.
#[derive(Clone, Debug)]
pub struct SecretsPolicy {
    /// `tls.require_for_secrets` (and a TLS listener running).
    pub https_only: bool,
    /// `tls.public_url`, if set: the base named in the refusal.
    pub public_url: Option<String>,
    /// The TLS listener's port, for a base built from the request's host otherwise.
    pub tls_port: u16,
}

/// Whether `path` answers with, or asks for, a secret.
pub fn carries_secrets(path: &str) -> bool {
    path == "/api/v1"
        || path.starts_with("/api/v1/")
        || path == "/ui"
        || path.starts_with("/ui/")
        || path == "/config"
        || path.starts_with("/config/")
}

/// The axum middleware: passes TLS requests and requests for public paths, refuses the rest.
pub async fn require_tls(
    State(policy): State<SecretsPolicy>,
    req: Request,
    next: Next,
) -> Response {
    let secure = req.extensions().get::<Secure>().is_some_and(|s| s.0);
    if !policy.https_only || secure || !carries_secrets(req.uri().path()) {
        return next.run(req).await;
    }
    let base = match &policy.public_url {
        Some(u) => u.clone(),
        None => format!("https://{}:{}", request_host(&req), policy.tls_port),
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path(), |p| p.as_str());
    // The query may hold a token: name the path only.
    let path = path.split('?').next().unwrap_or(path);
    ApiError::new(
        StatusCode::FORBIDDEN,
        "https_required",
        format!(
            "this endpoint carries secrets and is served over HTTPS only (tls.require_for_secrets): use {base}{path}"
        ),
    )
    .into_response()
}

/// The host the client asked for (the `Host` header without its port), or our local address.
fn request_host(req: &Request) -> String {
    let from_header = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|a| a.host().to_string());
    from_header
        .or_else(|| {
            req.extensions()
                .get::<axum::extract::ConnectInfo<crate::http::Peer>>()
                .map(|c| match crate::identity::ipv4(c.0.local.ip()) {
                    Some(v4) => v4.to_string(),
                    None => format!("[{}]", c.0.local.ip()),
                })
        })
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::carries_secrets;

    #[test]
    fn secrets_are_the_api_and_configs_not_firmware_downloads() {
        for p in [
            "/api/v1/machines",
            "/api/v1/nodes/register",
            "/config/52:54:00:00:00:01",
            "/config",
        ] {
            assert!(carries_secrets(p), "{p}");
        }
        for p in [
            "/boot/ipxe",
            "/boot/efi",
            "/boot/grub",
            "/assets/abc/x.efi",
            "/healthz",
            "/metrics",
            "/api/v1x",
            "/configure",
        ] {
            assert!(!carries_secrets(p), "{p}");
        }
    }
}
