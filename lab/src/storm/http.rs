//! A small HTTP/1.1 client with what a netbooting machine needs: a connection bound to the
//! machine's own (leased) address, kept alive between requests as iPXE keeps it, GET and POST,
//! bodies by `Content-Length` or chunked, streamed and counted, only the first bytes kept.
//! Response heads are parsed by `httparse`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// An `http://host:port/path` URL split into its parts (IPv4 literal hosts only: every URL
/// here comes from a server on the storm's link).
#[derive(Clone, Debug)]
pub struct Url {
    pub addr: SocketAddr,
    /// Path and query, as sent in the request line.
    pub target: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| format!("not an http:// URL: {s}"))?;
        let (host, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (h, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {s}"))?),
            None => (host, 80),
        };
        let ip: Ipv4Addr = h
            .parse()
            .map_err(|_| format!("host not an IPv4 address: {s}"))?;
        Ok(Url {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            target: target.to_string(),
        })
    }
}

/// A response: status, the first `keep` bytes of the body and its full length.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Vec<u8>,
    pub length: u64,
}

/// One machine's HTTP client: at most one open connection, reopened when the server closes it.
pub struct Client {
    local: Ipv4Addr,
    conn: Option<(SocketAddr, TcpStream)>,
    /// Bytes read past the end of the last response (none with a well-behaved server).
    buf: Vec<u8>,
}

impl Client {
    /// A client whose connections leave from `local`.
    pub fn new(local: Ipv4Addr) -> Client {
        Client {
            local,
            conn: None,
            buf: Vec::new(),
        }
    }

    async fn connect(&mut self, to: SocketAddr) -> Result<&mut TcpStream, String> {
        if !matches!(&self.conn, Some((a, _)) if *a == to) {
            let s = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
            s.bind(SocketAddr::V4(SocketAddrV4::new(self.local, 0)))
                .map_err(|e| format!("bind {}: {e}", self.local))?;
            let c = s
                .connect(to)
                .await
                .map_err(|e| format!("connect {to}: {e}"))?;
            let _ = c.set_nodelay(true);
            self.conn = Some((to, c));
            self.buf.clear();
        }
        Ok(&mut self.conn.as_mut().expect("connected").1)
    }

    /// Sends a request and reads the response, keeping the first `keep` body bytes. A
    /// connection the server closed before answering is reopened once.
    pub async fn request(
        &mut self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        keep: usize,
    ) -> Result<Response, String> {
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            match self.once(method, url, headers, body, keep).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.conn = None;
                    if !(reused && attempt == 0 && e.starts_with("closed")) {
                        return Err(e);
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }

    async fn once(
        &mut self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        keep: usize,
    ) -> Result<Response, String> {
        let mut req = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lab-storm\r\nConnection: keep-alive\r\n",
            url.target, url.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut buf = std::mem::take(&mut self.buf);
        let stream = self.connect(url.addr).await?;
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("closed: write: {e}"))?;
        if !body.is_empty() {
            stream
                .write_all(body)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        // The head.
        let (status, head_len, length, chunked, close) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut hs);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let header = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                    };
                    let length = header("content-length").and_then(|v| v.trim().parse().ok());
                    let chunked =
                        header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                    let close = header("connection").is_some_and(|v| v.contains("close"));
                    break (resp.code.unwrap_or(0), n, length, chunked, close);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("bad response head: {e}")),
            }
            let mut chunk = [0u8; 4096];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("closed: read: {e}"))?;
            if n == 0 {
                return Err("closed before the response".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..head_len);
        let mut out = Response {
            status,
            head: Vec::new(),
            length: 0,
        };
        if method == "HEAD" || status == 204 || status == 304 {
        } else if chunked {
            read_chunked(stream, &mut buf, keep, &mut out).await?;
        } else if let Some(len) = length {
            read_exact_counted(stream, &mut buf, len, keep, &mut out).await?;
        } else {
            read_exact_counted(stream, &mut buf, u64::MAX, keep, &mut out).await?;
            self.conn = None;
        }
        if close {
            self.conn = None;
        }
        self.buf = buf;
        Ok(out)
    }
}

/// Reads `len` body bytes (or to EOF when `len` is `u64::MAX`), `buf` holding what was read
/// already; keeps the first `keep`.
async fn read_exact_counted(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: u64,
    keep: usize,
    out: &mut Response,
) -> Result<(), String> {
    let take = |data: &[u8], out: &mut Response| {
        let room = keep.saturating_sub(out.head.len());
        out.head.extend_from_slice(&data[..data.len().min(room)]);
        out.length += data.len() as u64;
    };
    let first = (buf.len() as u64).min(len) as usize;
    take(&buf[..first], out);
    buf.drain(..first);
    let mut chunk = vec![0u8; 32 * 1024];
    while out.length < len {
        let want = ((len - out.length).min(chunk.len() as u64)) as usize;
        let n = stream
            .read(&mut chunk[..want])
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            if len == u64::MAX {
                return Ok(());
            }
            return Err(format!("body ended after {} of {len} bytes", out.length));
        }
        take(&chunk[..n], out);
    }
    Ok(())
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    while buf.len() < want {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read chunk: {e}"))?;
        if n == 0 {
            return Err("chunked body ended early".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

async fn read_chunked(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    keep: usize,
    out: &mut Response,
) -> Result<(), String> {
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let have = buf.len();
            fill(stream, buf, have + 1).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        buf.drain(..line_end + 2);
        fill(stream, buf, size + 2).await?;
        let room = keep.saturating_sub(out.head.len());
        out.head.extend_from_slice(&buf[..size.min(room)]);
        out.length += size as u64;
        buf.drain(..size + 2);
        if size == 0 {
            return Ok(());
        }
    }
}
