//! Dashboard sessions: a login trades the operator token for a session cookie whose value is
//! 256 random bits; the store keeps only its SHA-256 (a [`TokenRole::Session`] record with its
//! expiry), so every server sharing the store accepts it, a restart keeps it, and logout
//! ([`Store::delete_token`](inventory::Store::delete_token)) revokes it everywhere.
//!
//! A cookie is sent by the browser on its own, so a cookie-authenticated request that changes
//! something (POST, PUT, PATCH, DELETE) must also prove it comes from our page: the
//! [`CSRF_HEADER`] must carry [`csrf_for`] the session (a value a page of another origin cannot
//! read; compared in constant time), and an `Origin` header, when present, must name the
//! request's own `Host`. Bearer-token calls never reach this module.

use std::time::Duration;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use inventory::{hash_token, Timestamp, TokenRecord, TokenRole};
use subtle::ConstantTimeEq;

use crate::app::{now, App};
use crate::http::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "provisioner_session";
/// The request header that carries the CSRF value on unsafe methods.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session is accepted after login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The CSRF value bound to a session: SHA-256 of a prefix and the session secret, so it cannot
/// be derived from what the store holds (the secret's plain SHA-256) nor without the cookie.
pub fn csrf_for(secret: &str) -> String {
    hash_token(&format!("csrf:{secret}"))
}

/// The value of our session cookie among the request's `Cookie` headers (RFC 6265 §5.4).
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for `secret`: `HttpOnly`, `SameSite=Strict`, `Path=/` (the API and its
/// SSE streams live under `/api/v1`), `Secure` when `secure`. An empty `secret` with
/// `Max-Age=0` clears it.
pub fn set_cookie(secret: &str, secure: bool) -> String {
    let max_age = if secret.is_empty() {
        0
    } else {
        LIFETIME.as_secs()
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// Starts a session: stores the hash of a fresh secret with its expiry; returns the secret.
pub async fn create(app: &App) -> Result<String, ApiError> {
    let secret = crate::operator_token::generate()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let t = now();
    let record = TokenRecord {
        role: TokenRole::Session {
            expires: t.saturating_add(LIFETIME),
        },
        created: t,
        label: "dashboard session".into(),
    };
    let hash = hash_token(&secret);
    app.read(move |s| s.put_token(&hash, &record)).await?;
    Ok(secret)
}

/// Ends the session `secret` (logout): its record is deleted, so no server accepts it again.
pub async fn revoke(app: &App, secret: &str) -> Result<(), ApiError> {
    let hash = hash_token(secret);
    app.read(move |s| s.delete_token(&hash)).await?;
    Ok(())
}

/// Whether `secret` names a stored session that has not expired at `now`.
pub async fn valid(app: &App, secret: &str, t: Timestamp) -> Result<bool, ApiError> {
    let hash = hash_token(secret);
    let record = app.read(move |s| s.token(&hash)).await?;
    Ok(
        matches!(record, Some(TokenRecord { role: TokenRole::Session { expires }, .. }) if expires > t),
    )
}

/// How often an event stream opened with a session re-checks it.
pub const STREAM_RECHECK: Duration = Duration::from_secs(2);

/// `resp` (an SSE stream opened with the session `secret`), ended when the session ends: the
/// session is read again every [`STREAM_RECHECK`], and a logout, the expiry or a store that
/// cannot answer closes the stream (a browser's EventSource then reconnects and is asked to log
/// in). Without this, a tab left open after logout would go on receiving the inventory's events.
pub fn end_with_session(app: App, secret: String, resp: Response) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = resp.into_parts();
    let ended = async move {
        loop {
            tokio::time::sleep(STREAM_RECHECK).await;
            if !matches!(valid(&app, &secret, now()).await, Ok(true)) {
                break;
            }
        }
    };
    let body = body.into_data_stream().take_until(ended);
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail.to_string())
}

fn forbidden(detail: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "csrf", detail)
}

/// Authorizes a cookie-authenticated request: a live session, and for an unsafe method the
/// CSRF header and a same-origin `Origin`. Errors: 401 (no, unknown, expired or logged-out
/// session), 403 (CSRF value missing or wrong, or a foreign `Origin`).
pub async fn authorize(app: &App, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let secret = cookie(headers).ok_or_else(|| unauthorized("no session cookie"))?;
    if !valid(app, secret, now()).await? {
        return Err(unauthorized(
            "the session expired or was logged out; log in again at /ui/login",
        ));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        check_unsafe(secret, headers)?;
    }
    Ok(())
}

/// The CSRF header and `Origin` check of an unsafe cookie-authenticated request.
pub fn check_unsafe(secret: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .ok_or_else(|| forbidden(format!("missing the {CSRF_HEADER} header")))?;
    let want = csrf_for(secret);
    if !bool::from(sent.ct_eq(want.as_bytes())) {
        return Err(forbidden(format!("wrong {CSRF_HEADER} value")));
    }
    same_origin(headers)
}

/// An `Origin` header, when present, must name this server as the browser reached it: its
/// host and port equal the `Host` header. Our pages are served with `Referrer-Policy:
/// no-referrer`, under which browsers send `Origin: null` on their own writes (Fetch standard,
/// "serializing a request origin"); `null` is accepted only when `Sec-Fetch-Site` is absent or
/// says `same-origin`.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    if origin == "null" {
        let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
        return match site {
            None | Some(b"same-origin") => Ok(()),
            Some(_) => Err(forbidden(
                "cross-origin request refused (Origin null, Sec-Fetch-Site not same-origin)".into(),
            )),
        };
    }
    let authority = origin
        .split_once("://")
        .map(|(_, a)| a.trim_end_matches('/'));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(forbidden(format!(
            "cross-origin request refused (Origin {})",
            inventory::excerpt(origin, 80)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; provisioner_session=abc ; b=2")]);
        assert_eq!(cookie(&h), Some("abc"));
        assert_eq!(
            cookie(&headers(&[("cookie", "xprovisioner_session=1")])),
            None
        );
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn unsafe_requests_need_the_csrf_value_and_our_origin() {
        let csrf = csrf_for("s");
        let ok = headers(&[("x-csrf-token", &csrf), ("host", "127.0.0.1:80")]);
        assert!(check_unsafe("s", &ok).is_ok());
        assert!(check_unsafe("other", &ok).is_err(), "bound to the session");
        assert!(check_unsafe("s", &headers(&[("host", "h")])).is_err());
        let same = headers(&[
            ("x-csrf-token", &csrf),
            ("host", "h:1"),
            ("origin", "http://h:1"),
        ]);
        assert!(check_unsafe("s", &same).is_ok());
        let null = |site: &str| {
            headers(&[
                ("x-csrf-token", &csrf),
                ("host", "h:1"),
                ("origin", "null"),
                ("sec-fetch-site", site),
            ])
        };
        assert!(check_unsafe("s", &null("same-origin")).is_ok());
        assert!(check_unsafe("s", &null("cross-site")).is_err());
        for bad in ["http://evil:1", "http://h:2", "https://h:1.evil"] {
            let h = headers(&[("x-csrf-token", &csrf), ("host", "h:1"), ("origin", bad)]);
            assert_eq!(
                check_unsafe("s", &h).unwrap_err().status,
                StatusCode::FORBIDDEN
            );
        }
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("x", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(!set_cookie("x", false).contains("Secure"));
        assert!(set_cookie("", false).contains("Max-Age=0"));
    }
}
