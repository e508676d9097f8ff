//! Streaming file responses for boot assets: HEAD, single `Range` requests (RFC 9110 §14),
//! strong `ETag`s from the content digest with `If-None-Match` and `If-Range`, and a report when
//! the body ends (complete or cut off), so an interrupted UKI download shows up as an event.
//! Bodies are slices of one mapping of the whole file shared by every download of it (see
//! [`Shared`]): a UKI that a thousand machines fetch at once is resident once, not once per
//! download, and no download copies it into the heap.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

/// Bytes handed to hyper at a time (a slice of the shared mapping, no copy).
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

/// What a `Range` header asks of a file (see [`parse_range`]).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// The whole file (no usable range): 200.
    Full,
    /// Bytes `start..=end` (inclusive, `start <= end < len`): 206.
    Part {
        /// First byte offset.
        start: u64,
        /// Last byte offset (inclusive).
        end: u64,
    },
    /// A valid range that lies outside the file: 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range against `len`. Several ranges, other units or garbage: the whole
/// file (a server may ignore Range, RFC 9110 §14.2), except syntactically valid but
/// unsatisfiable ranges, which get 416. Public for the fuzz target (`fuzz/`); the header is
/// sender-controlled.
pub fn parse_range(value: &str, len: u64) -> RangeSpec {
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
    let map = if count == 0 {
        None
    } else {
        let path = f.path.to_path_buf();
        let file = file.into_std().await;
        match tokio::task::spawn_blocking(move || Shared::of(&path, &file, len)).await {
            Ok(Ok(m)) => Some(m),
            Ok(Err(e)) => {
                tracing::error!(path = %f.path.display(), error = %e, "mapping an asset failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "asset file unreadable\n")
                    .into_response();
            }
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    let body = Body::from_stream(FileStream {
        map,
        offset: start,
        left: count,
        sent: 0,
        total: count,
        started: Instant::now(),
        report,
    });
    (status, common, body).into_response()
}

/// One read-only mapping of a whole asset file, shared by every download of it (looked up by
/// path; dropped when the last download ends). Handed to hyper as `Bytes` slices without a
/// copy: the kernel copies straight from the page cache into the socket. Resident memory is at
/// most the file once (its pages are shared with the page cache), however many downloads run,
/// and each slice's pages are released once sent (see [`Slice`]'s drop). Safe
/// because stored assets are immutable: written once under a temporary name, renamed into
/// place, never truncated or rewritten (removal only unlinks, which keeps mapped pages valid).
struct Shared(memmap2::Mmap);

/// Live mappings by path (weak: a mapping lives as long as a download holds it).
static SHARED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::sync::Weak<Shared>>>,
> = std::sync::LazyLock::new(Default::default);

impl Shared {
    /// The mapping of `path` (open as `file`, `len` bytes), made once while any download uses it.
    fn of(path: &Path, file: &std::fs::File, len: u64) -> std::io::Result<std::sync::Arc<Shared>> {
        let mut live = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = live.get(path).and_then(std::sync::Weak::upgrade) {
            if m.0.len() as u64 == len {
                return Ok(m);
            }
        }
        // SAFETY: see the type's docs: the file is never modified while mapped.
        let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        let m = std::sync::Arc::new(Shared(map));
        live.retain(|_, w| w.strong_count() > 0);
        live.insert(path.to_path_buf(), std::sync::Arc::downgrade(&m));
        Ok(m)
    }
}

/// A slice of a [`Shared`] mapping, as the owner of a `Bytes`.
struct Slice {
    map: std::sync::Arc<Shared>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.map.0[self.start..self.end]
    }
}

impl Drop for Slice {
    /// Sent: drop the slice's pages from this process's page tables (they stay in the page
    /// cache), so resident memory is what is in flight, not every page any download touched.
    /// A concurrent download of the same range faults them back in from the page cache.
    fn drop(&mut self) {
        let page = 4096;
        let start = self.start / page * page;
        // SAFETY: a read-only shared mapping of a file nobody modifies: MADV_DONTNEED only
        // unmaps the pages here; the next access maps the same file contents again.
        let _ = unsafe {
            self.map.0.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                start,
                self.end - start,
            )
        };
    }
}

/// Streams `left` bytes from the current offset in [`CHUNK`] slices and reports on drop.
struct FileStream {
    /// `None` for an empty body.
    map: Option<std::sync::Arc<Shared>>,
    offset: u64,
    left: u64,
    sent: u64,
    total: u64,
    started: Instant,
    report: Option<Report>,
}

impl FileStream {
    fn next_window(&mut self) -> std::io::Result<Bytes> {
        let len = self.left.min(CHUNK as u64);
        let map = self
            .map
            .clone()
            .ok_or_else(|| std::io::Error::other("no mapping"))?;
        let start = self.offset as usize;
        self.offset += len;
        self.left -= len;
        self.sent += len;
        Ok(Bytes::from_owner(Slice {
            map,
            start,
            end: start + len as usize,
        }))
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
