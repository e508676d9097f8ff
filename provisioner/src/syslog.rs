//! Remote syslog receiver (UDP): RFC 5424 and RFC 3164 (BSD) messages from installers and
//! installed systems, attributed to machines by source address only where the server's own
//! evidence gives that address to a machine (an active lease, or a binding proxy mode observed;
//! see [`crate::identity`]), and kept per machine (bounded) for `provisioner machines logs`.
//! Anything without a `<PRI>` header is kept as plain text (RFC 3164 §4.3.3).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use inventory::{Mac, NewLogLine};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// One parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub severity: Option<u8>,
    pub app: Option<String>,
    pub text: String,
}

fn pri(s: &str) -> Option<(u8, &str)> {
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u16 = digits.parse().ok()?;
    (v <= 191).then_some((v as u8, &rest[end + 1..]))
}

fn nil(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_string())
}

/// Skips an RFC 5424 STRUCTURED-DATA field (`-` or one or more `[…]` with `\]` escapes).
fn skip_structured_data(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('-') {
        return rest;
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] == b'[' {
        i += 1;
        while i < bytes.len() && bytes[i] != b']' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        i += 1;
    }
    s.get(i.min(s.len())..).unwrap_or("")
}

pub fn parse(datagram: &[u8]) -> Message {
    let s = String::from_utf8_lossy(datagram);
    let s = s.trim_end_matches(['\n', '\r', '\0']);
    let Some((pri, rest)) = pri(s) else {
        return Message {
            severity: None,
            app: None,
            text: s.to_string(),
        };
    };
    let severity = Some(pri & 7);
    // RFC 5424: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
    if let Some(r) = rest.strip_prefix("1 ") {
        let mut parts = r.splitn(5, ' ');
        let (_ts, _host, app, _proc, rest) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        );
        if let Some(rest) = rest {
            let (_msgid, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let msg = skip_structured_data(rest).trim_start_matches(' ');
            let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
            return Message {
                severity,
                app: app.and_then(nil),
                text: msg.to_string(),
            };
        }
    }
    // RFC 3164: [TIMESTAMP SP HOSTNAME SP] TAG[PID]: MSG. The timestamp is "Mmm dd hh:mm:ss".
    let mut body = rest;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if body.len() >= 16 && months.iter().any(|m| body.starts_with(m)) && body.as_bytes()[15] == b' '
    {
        body = &body[16..];
        // A hostname follows unless the next word already is the tag.
        if let Some((first, after)) = body.split_once(' ') {
            if !first.ends_with(':') && !first.contains('[') {
                body = after;
            }
        }
    }
    if let Some((tag, msg)) = body.split_once(": ") {
        if !tag.is_empty() && tag.len() <= 48 && !tag.contains(' ') {
            let app = tag.split('[').next().unwrap_or(tag);
            return Message {
                severity,
                app: nil(app),
                text: msg.to_string(),
            };
        }
    }
    Message {
        severity,
        app: None,
        text: body.to_string(),
    }
}

/// How long an address → machine answer is reused.
const ATTRIBUTION_TTL: Duration = Duration::from_secs(1);
/// Addresses remembered at most (a flood from many addresses cannot grow it further).
const MAX_REMEMBERED: usize = 65_536;
/// Datagrams stored per transaction, at most.
const BATCH: usize = 256;

/// Address → machine answers of the last few seconds, so a chatty installer costs one store
/// read per [`ATTRIBUTION_TTL`], not one per line.
#[derive(Default)]
struct Owners {
    known: HashMap<Ipv4Addr, (Option<Mac>, Instant)>,
}

impl Owners {
    fn fresh(&self, ip: Ipv4Addr, now: Instant) -> Option<Option<Mac>> {
        self.known
            .get(&ip)
            .filter(|(_, at)| now.duration_since(*at) < ATTRIBUTION_TTL)
            .map(|(owner, _)| *owner)
    }

    fn remember(&mut self, answers: Vec<(Ipv4Addr, Option<Mac>)>, now: Instant) {
        if self.known.len() + answers.len() > MAX_REMEMBERED {
            self.known
                .retain(|_, (_, at)| now.duration_since(*at) < ATTRIBUTION_TTL);
            if self.known.len() + answers.len() > MAX_REMEMBERED {
                self.known.clear();
            }
        }
        for (ip, owner) in answers {
            self.known.insert(ip, (owner, now));
        }
    }
}

/// Serves until `shutdown`.
pub async fn run(socket: UdpSocket, app: App, shutdown: CancellationToken) {
    let mut owners = Owners::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => { tracing::warn!(error = %e, "syslog receive failed"); continue; }
            },
        };
        let mut batch = vec![(from.ip(), parse(&buf[..n]))];
        while batch.len() < BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => batch.push((from.ip(), parse(&buf[..n]))),
                Err(_) => break,
            }
        }
        let batch: Vec<(Ipv4Addr, Message)> = batch
            .into_iter()
            .filter_map(|(ip, m)| crate::identity::ipv4(ip).map(|ip| (ip, m)))
            .collect();
        // Addresses not answered lately: looked up together, in one read transaction each.
        let at = Instant::now();
        let mut unknown: Vec<Ipv4Addr> = batch
            .iter()
            .map(|(ip, _)| *ip)
            .filter(|ip| owners.fresh(*ip, at).is_none())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            owners.remember(attribute(&app, unknown).await, at);
        }
        let mut lines = Vec::with_capacity(batch.len());
        for (ip, msg) in batch {
            match owners.fresh(ip, at).flatten() {
                Some(mac) => lines.push((
                    mac,
                    NewLogLine::new("syslog", msg.severity, msg.app, &msg.text),
                )),
                None => {
                    app.metrics.syslog_unattributed();
                    tracing::debug!(%ip, "syslog line from an address no machine holds");
                }
            }
        }
        if !lines.is_empty() {
            app.metrics.syslog_lines(lines.len());
            if let Err(e) = app.append_logs(lines).await {
                tracing::warn!(error = %e, "storing syslog lines failed");
            }
        }
    }
}

/// Who holds each address now, by the server's own evidence (an active lease or observed
/// binding; see [`crate::identity`]): one point read per address, never a scan. A store error
/// attributes nothing (the lines are counted as unattributed).
async fn attribute(app: &App, ips: Vec<Ipv4Addr>) -> Vec<(Ipv4Addr, Option<Mac>)> {
    let t = crate::app::now();
    let asked = ips.clone();
    app.read(move |s| {
        ips.into_iter()
            .map(|ip| Ok((ip, crate::identity::holder_of(s, ip, t)?.map(|h| h.mac))))
            .collect()
    })
    .await
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "syslog: looking up senders failed");
        asked.into_iter().map(|ip| (ip, None)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sev: Option<u8>, app: Option<&str>, text: &str) -> Message {
        Message {
            severity: sev,
            app: app.map(str::to_string),
            text: text.into(),
        }
    }

    #[test]
    fn rfc5424() {
        let d = b"<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut=\"3\" x=\"a\\]b\"] \xef\xbb\xbfAn application event";
        assert_eq!(
            parse(d),
            m(Some(5), Some("evntslog"), "An application event")
        );
        assert_eq!(parse(b"<14>1 - - - - - - hello"), m(Some(6), None, "hello"));
        assert_eq!(parse(b"<14>1 - - app - - -"), m(Some(6), Some("app"), ""));
    }

    #[test]
    fn rfc3164_with_and_without_header() {
        assert_eq!(
            parse(
                b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8\n"
            ),
            m(
                Some(2),
                Some("su"),
                "'su root' failed for lonvick on /dev/pts/8"
            )
        );
        assert_eq!(
            parse(b"<13>Nov  2 01:02:03 installer[42]: writing disk"),
            m(Some(5), Some("installer"), "writing disk")
        );
        assert_eq!(
            parse(b"<30>kairos-agent: install done"),
            m(Some(6), Some("kairos-agent"), "install done")
        );
    }

    #[test]
    fn garbage_and_edge_cases_never_panic() {
        assert_eq!(
            parse(b"no header at all"),
            m(None, None, "no header at all")
        );
        assert_eq!(parse(b"<999>x"), m(None, None, "<999>x"));
        assert_eq!(parse(b"<>x").severity, None);
        assert_eq!(parse(b"<1").severity, None);
        assert_eq!(parse(b"").text, "");
        assert_eq!(parse(b"\xff\xfe<13>bad utf8").severity, None);
        let big = vec![b'a'; 70_000];
        assert_eq!(
            parse(&big).text.len(),
            70_000,
            "the store cuts it, not the parser"
        );
        for n in 0..64u8 {
            let d: Vec<u8> = (0..n)
                .map(|i| b"<1>[ ]-: \\\xef"[i as usize % 11])
                .collect();
            let _ = parse(&d);
        }
    }
}
