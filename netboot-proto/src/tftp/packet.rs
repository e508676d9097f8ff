//! TFTP packets on the wire: RFC 1350 (RRQ, WRQ, DATA, ACK, ERROR) and RFC 2347 (OACK and the
//! option list). Parsing never panics and never allocates more than the datagram it was given.

use std::fmt;

/// Read request (RFC 1350 §5).
pub const OP_RRQ: u16 = 1;
/// Write request (RFC 1350 §5); this server refuses them.
pub const OP_WRQ: u16 = 2;
/// Data block (RFC 1350 §5).
pub const OP_DATA: u16 = 3;
/// Acknowledgement of a block, or of the OACK as block 0 (RFC 1350 §5, RFC 2347).
pub const OP_ACK: u16 = 4;
/// Error (RFC 1350 §5): ends the transfer.
pub const OP_ERROR: u16 = 5;
/// Option acknowledgement (RFC 2347).
pub const OP_OACK: u16 = 6;

/// RFC 1350 §5 and RFC 2347 error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// 0: not defined, see the message (time-outs, read errors, shutdown).
    NotDefined = 0,
    /// 1: file not found.
    FileNotFound = 1,
    /// 2: access violation.
    AccessViolation = 2,
    /// 3: disk full or allocation exceeded.
    DiskFull = 3,
    /// 4: illegal TFTP operation.
    IllegalOperation = 4,
    /// 5: unknown transfer ID (a packet from the wrong port).
    UnknownTransferId = 5,
    /// 6: file already exists.
    FileExists = 6,
    /// 7: no such user.
    NoSuchUser = 7,
    /// RFC 2347: the client rejects the options we acknowledged (PXE `tsize` probes end so).
    OptionNegotiation = 8,
}

/// A request: file, transfer mode and the options asked for, in the order sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// WRQ rather than RRQ.
    pub write: bool,
    /// The file name as sent (invalid UTF-8 replaced by U+FFFD), not yet normalized: see
    /// [`super::path::normalize`].
    pub filename: String,
    /// Transfer mode as sent, lower-cased (RFC 1350 §5 names `netascii`, `octet`, `mail`).
    pub mode: String,
    /// RFC 2347 options as (name lower-cased, value) pairs; duplicates are kept.
    pub options: Vec<(String, String)>,
}

/// A packet a client may send to a transfer socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientPacket {
    /// ACK of a block (its 16-bit number as on the wire; 0 acknowledges the OACK).
    Ack(u16),
    /// ERROR from the client: it gives up (code 8 after an OACK is the PXE `tsize` probe).
    Error {
        /// The error code as sent (see [`ErrorCode`]).
        code: u16,
        /// The message up to its NUL (lossy UTF-8; empty if none).
        message: String,
    },
    /// Any other opcode (or a request on the transfer port).
    Other(u16),
}

/// Why a datagram is not a packet we understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its opcode (and block or error code) need (the datagram's length).
    #[error("datagram of {0} bytes is too short")]
    TooShort(usize),
    /// Not an RRQ or WRQ on the request port (the opcode).
    #[error("opcode {0} is not a request")]
    NotARequest(u16),
    /// A string without its NUL terminator, or a request without file name or mode (which part).
    #[error("missing NUL terminator in {0}")]
    Unterminated(&'static str),
    /// The mode or an option name or value is not UTF-8 (which part).
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// An option name with no value after it (the name).
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
}

fn opcode(buf: &[u8]) -> Result<u16, ParseError> {
    if buf.len() < 2 {
        return Err(ParseError::TooShort(buf.len()));
    }
    Ok(u16::from_be_bytes([buf[0], buf[1]]))
}

/// Splits NUL-terminated strings; a trailing unterminated fragment is an error.
fn strings<'a>(mut rest: &'a [u8], what: &'static str) -> Result<Vec<&'a [u8]>, ParseError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(ParseError::Unterminated(what))?;
        out.push(&rest[..end]);
        rest = &rest[end + 1..];
    }
    Ok(out)
}

fn text(b: &[u8], what: &'static str) -> Result<String, ParseError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| ParseError::NotUtf8(what))
}

/// Parses an RRQ or WRQ (RFC 1350 §5, RFC 2347 §2).
pub fn parse_request(buf: &[u8]) -> Result<Request, ParseError> {
    let op = opcode(buf)?;
    if op != OP_RRQ && op != OP_WRQ {
        return Err(ParseError::NotARequest(op));
    }
    let parts = strings(&buf[2..], "request")?;
    if parts.len() < 2 {
        return Err(ParseError::Unterminated("filename or mode"));
    }
    let filename = String::from_utf8_lossy(parts[0]).into_owned();
    let mode = text(parts[1], "mode")?.to_ascii_lowercase();
    let mut options = Vec::new();
    let mut it = parts[2..].iter();
    while let Some(name) = it.next() {
        let name = text(name, "option name")?.to_ascii_lowercase();
        // Some clients pad requests with NULs; an empty trailing name is not an option.
        if name.is_empty() {
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| ParseError::OptionWithoutValue(name.clone()))?;
        options.push((name, text(value, "option value")?));
    }
    Ok(Request {
        write: op == OP_WRQ,
        filename,
        mode,
        options,
    })
}

/// Parses what a client sends during a read transfer.
pub fn parse_client(buf: &[u8]) -> Result<ClientPacket, ParseError> {
    match opcode(buf)? {
        OP_ACK if buf.len() >= 4 => Ok(ClientPacket::Ack(u16::from_be_bytes([buf[2], buf[3]]))),
        OP_ACK => Err(ParseError::TooShort(buf.len())),
        OP_ERROR if buf.len() >= 4 => {
            let code = u16::from_be_bytes([buf[2], buf[3]]);
            let msg = &buf[4..];
            let end = msg.iter().position(|b| *b == 0).unwrap_or(msg.len());
            Ok(ClientPacket::Error {
                code,
                message: String::from_utf8_lossy(&msg[..end]).into_owned(),
            })
        }
        OP_ERROR => Err(ParseError::TooShort(buf.len())),
        other => Ok(ClientPacket::Other(other)),
    }
}

/// Writes a DATA header (opcode 3, 16-bit `block`) into the first four bytes of `buf`; panics
/// if `buf` is shorter.
pub fn data_header(buf: &mut [u8], block: u16) {
    buf[..2].copy_from_slice(&OP_DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
}

/// An ERROR packet (RFC 1350 §5): opcode 5, `code`, `message` and its NUL.
pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + message.len());
    v.extend_from_slice(&OP_ERROR.to_be_bytes());
    v.extend_from_slice(&(code as u16).to_be_bytes());
    v.extend_from_slice(message.as_bytes());
    v.push(0);
    v
}

/// An OACK packet (RFC 2347): opcode 6, then each option name and value, NUL-terminated.
pub fn oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut v = OP_OACK.to_be_bytes().to_vec();
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// An ACK packet for 16-bit block `block` (RFC 1350 §5).
pub fn ack(block: u16) -> Vec<u8> {
    let mut v = OP_ACK.to_be_bytes().to_vec();
    v.extend_from_slice(&block.to_be_bytes());
    v
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", *self as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(parts: &[&str]) -> Vec<u8> {
        let mut v = OP_RRQ.to_be_bytes().to_vec();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn parses_pxe_tsize_probe() {
        let r = parse_request(&rrq(&[
            "snponly.efi",
            "octet",
            "tsize",
            "0",
            "blksize",
            "1468",
        ]))
        .unwrap();
        assert_eq!(r.filename, "snponly.efi");
        assert_eq!(
            r.options,
            vec![
                ("tsize".into(), "0".into()),
                ("blksize".into(), "1468".into())
            ]
        );
        assert!(!r.write);
    }

    #[test]
    fn option_names_are_case_insensitive_and_padding_tolerated() {
        let mut p = rrq(&["f", "OCTET", "BlkSize", "512"]);
        p.extend_from_slice(&[0, 0]);
        let r = parse_request(&p).unwrap();
        assert_eq!(r.mode, "octet");
        assert_eq!(r.options, vec![("blksize".into(), "512".into())]);
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for bad in [
            vec![],
            vec![0],
            vec![0, 1],
            vec![0, 1, b'f'],
            vec![0, 1, b'f', 0],
            vec![0, 3, 0, 1],
            rrq(&["f", "octet", "blksize"]),
            vec![0, 1, b'f', 0, 0xff, 0xfe, 0],
        ] {
            assert!(parse_request(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_packets() {
        assert_eq!(parse_client(&ack(7)).unwrap(), ClientPacket::Ack(7));
        assert_eq!(
            parse_client(&error(ErrorCode::OptionNegotiation, "no")).unwrap(),
            ClientPacket::Error {
                code: 8,
                message: "no".into()
            }
        );
        assert_eq!(
            parse_client(&[0, 5, 0, 8]).unwrap(),
            ClientPacket::Error {
                code: 8,
                message: String::new()
            }
        );
        assert_eq!(parse_client(&[0, 9, 1, 2]).unwrap(), ClientPacket::Other(9));
        assert!(parse_client(&[0, 4, 1]).is_err());
        assert!(parse_client(&[0]).is_err());
    }
}
