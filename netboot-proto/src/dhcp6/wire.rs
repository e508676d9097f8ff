//! What dhcproto's `v6` module does not do for us: relay framing (RFC 8415 §9, §19) and the
//! client's MAC (RFC 8415 §11.2 DUID-LLT/DUID-LL, RFC 6939 option 79, RFC 4291 App. A EUI-64).
//!
//! dhcproto decodes option 9 (Relay Message) as a relay header even when it holds a client
//! message, so relay layers are parsed here by hand, with every length checked.

use std::net::Ipv6Addr;

use inventory::Mac;

/// Relay-Forward (RFC 8415 §7.3).
pub const RELAY_FORW: u8 = 12;
/// Relay-Reply (RFC 8415 §7.3).
pub const RELAY_REPL: u8 = 13;
/// OPTION_RELAY_MSG (RFC 8415 §21.10).
pub const OPT_RELAY_MSG: u16 = 9;
/// OPTION_VENDOR_CLASS (RFC 8415 §21.16): enterprise number and length-prefixed data.
pub const OPT_VENDOR_CLASS: u16 = 16;
/// OPTION_INTERFACE_ID (RFC 8415 §21.18): echoed in the Relay-Reply.
pub const OPT_INTERFACE_ID: u16 = 18;
/// OPT_BOOTFILE_URL (RFC 5970 §3.1).
pub const OPT_BOOTFILE_URL: u16 = 59;
/// OPTION_CLIENT_LINKLAYER_ADDR (RFC 6939): the client's MAC as the first relay saw it.
pub const OPT_CLIENT_LINKLAYER: u16 = 79;
/// HOP_COUNT_LIMIT (RFC 8415 §7.6): more relay layers than this are refused.
pub const HOP_COUNT_LIMIT: usize = 8;

/// Why a datagram is not a DHCPv6 message we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its header, or an option runs past the end.
    #[error("truncated DHCPv6 message")]
    Truncated,
    /// A Relay-Forward without a Relay Message option.
    #[error("Relay-Forward without a relay message")]
    NoRelayMessage,
    /// More nested relays than [`HOP_COUNT_LIMIT`].
    #[error("more than {HOP_COUNT_LIMIT} relay layers")]
    TooManyHops,
}

/// One relay layer of a relayed message, outermost first in [`Unwrapped::hops`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayHop {
    /// hop-count, copied into the Relay-Reply.
    pub hop_count: u8,
    /// link-address: an address on the client's link (selects nothing here: one range).
    pub link: Ipv6Addr,
    /// peer-address: where the message came from (the client, or the next relay).
    pub peer: Ipv6Addr,
    /// Option 18 as the relay sent it, echoed in the Relay-Reply (RFC 8415 §19.3).
    pub interface_id: Option<Vec<u8>>,
    /// Option 79 (RFC 6939), raw: hardware type (2 octets) and the client's link-layer address.
    pub client_link_layer: Option<Vec<u8>>,
}

/// A message with its relay layers taken off.
#[derive(Debug, PartialEq, Eq)]
pub struct Unwrapped<'a> {
    /// The relays, outermost (the one that sent us the datagram) first; empty when direct.
    pub hops: Vec<RelayHop>,
    /// The client's own message.
    pub inner: &'a [u8],
}

/// The options of a message body as (code, data), checked against the buffer's end.
pub fn options(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, WireError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(WireError::Truncated);
        }
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        let data = b.get(4..4 + len).ok_or(WireError::Truncated)?;
        out.push((code, data));
        b = &b[4 + len..];
    }
    Ok(out)
}

/// Takes the Relay-Forward layers off `bytes` (RFC 8415 §19.2), keeping what the reply needs.
pub fn unwrap(bytes: &[u8]) -> Result<Unwrapped<'_>, WireError> {
    let (hops, inner) = layers(bytes, RELAY_FORW)?;
    if inner.len() < 4 {
        return Err(WireError::Truncated);
    }
    Ok(Unwrapped { hops, inner })
}

/// Relay layers of message type `ty` (Relay-Forward or Relay-Reply), outermost first.
fn layers(bytes: &[u8], ty: u8) -> Result<(Vec<RelayHop>, &[u8]), WireError> {
    let mut hops = Vec::new();
    let mut cur = bytes;
    while cur.first() == Some(&ty) {
        if hops.len() == HOP_COUNT_LIMIT {
            return Err(WireError::TooManyHops);
        }
        let (hop, inner) = layer(cur)?;
        hops.push(hop);
        cur = inner;
    }
    Ok((hops, cur))
}

/// One relay header (RFC 8415 §9.1) and the message in its option 9.
fn layer(cur: &[u8]) -> Result<(RelayHop, &[u8]), WireError> {
    if cur.len() < 34 {
        return Err(WireError::Truncated);
    }
    let addr = |at: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&cur[at..at + 16]);
        Ipv6Addr::from(o)
    };
    let mut hop = RelayHop {
        hop_count: cur[1],
        link: addr(2),
        peer: addr(18),
        interface_id: None,
        client_link_layer: None,
    };
    let mut inner = None;
    for (code, data) in options(&cur[34..])? {
        match code {
            OPT_RELAY_MSG => inner = Some(data),
            OPT_INTERFACE_ID => hop.interface_id = Some(data.to_vec()),
            OPT_CLIENT_LINKLAYER => hop.client_link_layer = Some(data.to_vec()),
            _ => {}
        }
    }
    Ok((hop, inner.ok_or(WireError::NoRelayMessage)?))
}

fn push_option(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Appends one option (code, length, data) to an encoded message: how option 59 goes last,
/// where edk2's HttpBootDxe reads the URL up to the next NUL (`AsciiStrLen` on the option data).
pub fn append_option(msg: &mut Vec<u8>, code: u16, data: &[u8]) {
    push_option(msg, code, data);
}

/// Wraps a reply in one Relay-Reply per hop, innermost first, so the outermost goes to the
/// relay that sent us the request (RFC 8415 §19.3): hop-count, link- and peer-address copied,
/// Interface-Id echoed.
pub fn wrap(hops: &[RelayHop], reply: Vec<u8>) -> Vec<u8> {
    let mut msg = reply;
    for hop in hops.iter().rev() {
        let mut out = Vec::with_capacity(msg.len() + 64);
        out.push(RELAY_REPL);
        out.push(hop.hop_count);
        out.extend_from_slice(&hop.link.octets());
        out.extend_from_slice(&hop.peer.octets());
        if let Some(id) = &hop.interface_id {
            push_option(&mut out, OPT_INTERFACE_ID, id);
        }
        push_option(&mut out, OPT_RELAY_MSG, &msg);
        msg = out;
    }
    msg
}

/// The MAC in a DUID-LLT (type 1) or DUID-LL (type 3) of hardware type 1 (Ethernet).
pub fn mac_from_duid(duid: &[u8]) -> Option<Mac> {
    let ty = u16::from_be_bytes([*duid.first()?, *duid.get(1)?]);
    let hw = u16::from_be_bytes([*duid.get(2)?, *duid.get(3)?]);
    let at = match (ty, hw) {
        (1, 1) => 8,
        (3, 1) => 4,
        _ => return None,
    };
    let m = duid.get(at..at + 6)?;
    (duid.len() == at + 6).then(|| Mac::new([m[0], m[1], m[2], m[3], m[4], m[5]]))
}

/// The MAC in option 79 (RFC 6939): hardware type 1 and six octets.
pub fn mac_from_link_layer(data: &[u8]) -> Option<Mac> {
    match data {
        [0, 1, a, b, c, d, e, f] => Some(Mac::new([*a, *b, *c, *d, *e, *f])),
        _ => None,
    }
}

/// The MAC an EUI-64 link-local address was formed from (RFC 4291 App. A): `fe80::/64` with
/// `ff:fe` in the middle of the interface identifier and the U/L bit flipped back.
pub fn mac_from_eui64(ip: Ipv6Addr) -> Option<Mac> {
    let o = ip.octets();
    let link_local = ip.segments()[..4] == [0xfe80, 0, 0, 0];
    (link_local && o[11] == 0xff && o[12] == 0xfe)
        .then(|| Mac::new([o[8] ^ 0x02, o[9], o[10], o[13], o[14], o[15]]))
}

/// Lowercase hex of `b` (DUIDs in leases and logs).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The relay layers of an encoded Relay-Reply, outermost first, and the message inside (for
/// tests and tools that play the relay).
pub fn unwrap_reply(bytes: &[u8]) -> Result<(Vec<RelayHop>, &[u8]), WireError> {
    layers(bytes, RELAY_REPL)
}
