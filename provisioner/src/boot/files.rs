//! Streaming file responses for boot assets: HEAD, single `Range` requests (RFC 9110 §14),
//! strong `ETag`s from the content digest with `If-None-Match` and `If-Range`, and a report when
//! the body ends (complete or cut off), so an interrupted UKI download shows up as an event.
//! Bodies are mapped window by window (see [`Window`]): memory per download is a window or two,
//! whatever the file size.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

/// Window size: large enough for line rate, small enough that 64 downloads stay small.
const CHUNK: usize = 256 * 1024;

/// Called once when a GET body ends: bytes sent, whether all of them went, elapsed time.
pub type Report = Box<dyn FnOnce(u64, bool, std::time::Duration) + Send>;

/// What to serve.
pub struct FileReply<'a> {
    pub path: &'a Path,
    /// Strong validator: the content digest (hex), quoted on the wire.
    pub etag: &'a str,
    pub content_type: &'static str,
    /// Content-addressed URLs never change: let caches keep them.
    pub immutable: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Full,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// Parses one `bytes=` range against `len`. Several ranges, other units or garbage: the whole
/// file (a server may ignore Range, RFC 9110 §14.2), except syntactically valid but
/// unsatisfiable ranges, which get 416.
fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(n) if len > 0 => RangeSpec::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => RangeSpec::Unsatisfiable,
            None => RangeSpec::Full,
        },
        (first, "") => match num(first) {
            Some(s) if s < len => RangeSpec::Part {
                start: s,
                end: len - 1,
            },
            Some(_) => RangeSpec::Unsatisfiable,
            None => RangeSpec::Full,
        },
        (first, last) => match (num(first), num(last)) {
            (Some(s), Some(e)) if s <= e && s < len => RangeSpec::Part {
                start: s,
                end: e.min(len - 1),
            },
            (Some(s), Some(e)) if s <= e => RangeSpec::Unsatisfiable,
            _ => RangeSpec::Full,
        },
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag)
}

/// Builds the response; `report` (GET only) hears how the body ended.
pub async fn serve(
    f: FileReply<'_>,
    method: &Method,
    headers: &HeaderMap,
    report: Option<Report>,
) -> Response {
    let file = match tokio::fs::File::open(f.path).await {
        Ok(file) => file,
        Err(e) => {
            tracing::error!(path = %f.path.display(), error = %e, "asset file missing");
            return (StatusCode::INTERNAL_SERVER_ERROR, "asset file unreadable\n").into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let etag = format!("\"{}\"", f.etag);
    let mut common = HeaderMap::new();
    common.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex etag"),
    );
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(f.content_type),
    );
    if f.immutable {
        common.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    let header_str = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| etag_matches(v, f.etag)) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let range_applies = header_str(header::IF_RANGE).is_none_or(|v| etag_matches(v, f.etag));
    let range = match header_str(header::RANGE) {
        Some(r) if range_applies => parse_range(r, len),
        _ => RangeSpec::Full,
    };
    let (status, start, count) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Part { start, end } => {
            common.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).expect("ascii"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeSpec::Unsatisfiable => {
            common.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ascii"),
            );
            return (StatusCode::RANGE_NOT_SATISFIABLE, common).into_response();
        }
    };
    common.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD {
        return (status, common).into_response();
    }
    let body = Body::from_stream(FileStream {
        file: file.into_std().await,
        offset: start,
        left: count,
        sent: 0,
        total: count,
        started: Instant::now(),
        report,
    });
    (status, common, body).into_response()
}

/// A mapped window of the file, handed to hyper as `Bytes` without a copy: the kernel copies
/// straight from the page cache into the socket (one copy instead of read()'s two). Windows are
/// unmapped as soon as hyper has written them, so resident memory stays at a few windows per
/// download. Safe because stored assets are immutable: written once under a temporary name,
/// renamed into place, never truncated or rewritten (removal only unlinks, which keeps mapped
/// pages valid).
struct Window(memmap2::Mmap);

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Streams `left` bytes from the current offset in [`CHUNK`] windows and reports on drop.
struct FileStream {
    file: std::fs::File,
    offset: u64,
    left: u64,
    sent: u64,
    total: u64,
    started: Instant,
    report: Option<Report>,
}

impl FileStream {
    fn next_window(&mut self) -> std::io::Result<Bytes> {
        let len = self.left.min(CHUNK as u64) as usize;
        // SAFETY: see `Window`: the file is never modified while mapped.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(self.offset)
                .len(len)
                .populate()
                .map(&self.file)?
        };
        self.offset += len as u64;
        self.left -= len as u64;
        self.sent += len as u64;
        Ok(Bytes::from_owner(Window(map)))
    }
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let r = self.next_window();
        if r.is_err() {
            self.left = 0;
        }
        Poll::Ready(Some(r))
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            report(self.sent, self.sent == self.total, self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeSpec::*;
    use super::*;

    #[test]
    fn ranges() {
        let len = 1000;
        assert_eq!(parse_range("bytes=0-99", len), Part { start: 0, end: 99 });
        assert_eq!(
            parse_range("bytes=500-", len),
            Part {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", len),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(parse_range("bytes=-5000", len), Part { start: 0, end: 999 });
        assert_eq!(
            parse_range("bytes=990-5000", len),
            Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(parse_range("bytes=1000-", len), Unsatisfiable);
        assert_eq!(parse_range("bytes=2000-3000", len), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", len), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", len), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", len), Full);
        assert_eq!(parse_range("items=0-1", len), Full);
        assert_eq!(parse_range("bytes=x-y", len), Full);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert!(etag_matches("\"abc\", \"def\"", "def"));
        assert!(etag_matches("*", "x"));
        assert!(!etag_matches("\"abd\"", "abc"));
    }
}
