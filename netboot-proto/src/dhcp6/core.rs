//! The DHCPv6 decision core (RFC 8415 §18.3): `Core6::handle(input) -> Decision6`, no sockets,
//! no clock, no store. The shell writes `Decision6::commit` durably *before* it sends
//! `Decision6::reply`, as the DHCPv4 server does before an ACK.
//!
//! Modes: `stateful` assigns IA_NA addresses from one range (and reservations by MAC);
//! `stateless` assigns none (addresses come from RA/SLAAC) and answers Information-Request and
//! Solicit with boot data only. Relayed messages (Relay-Forward, RFC 8415 §19) are answered
//! through the same relays, Interface-Id echoed. Boot answers reuse the DHCPv4 path's decision
//! ([`crate::boot_decision::decide`]) and boot file ([`crate::dhcp::reply::boot_file`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode, Status, StatusCode};
use dhcproto::{Decodable, Decoder, Encodable};
use inventory::{Lease6, Mac, Machine, Timestamp};

use super::ia::Ask;
use super::pool::Pool6;
use super::wire::{self, RelayHop};
use crate::boot_decision::{decide, UnknownPolicy};
use crate::dhcp::classify::{Client, Firmware, Stage};
use crate::dhcp::reply::{boot_file, BootFile, BootUrls, Loaders};

/// Enterprise number of UEFI HTTP boot's vendor class (edk2 `HTTP_BOOT_DHCP6_ENTERPRISE_NUM`).
pub const HTTP_BOOT_ENTERPRISE: u32 = 343;

/// Option 7's value in an Advertise offering an address: the highest, "request from this
/// server now" (RFC 8415 §18.2.9).
pub const MAX_PREFERENCE: u8 = 255;

/// How the server takes part in DHCPv6 (`dhcp6.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode6 {
    /// Addresses from the range (IA_NA) plus boot data.
    Stateful,
    /// Boot data and DNS only; addresses come from router advertisements (SLAAC).
    Stateless,
}

/// The validated `[dhcp6]` settings the core needs.
#[derive(Clone, Debug)]
pub struct Settings6 {
    /// Our DUID (option 2), e.g. a DUID-LL of the serving interface.
    pub server_duid: Vec<u8>,
    /// Stateful or stateless.
    pub mode: Mode6,
    /// What to do with netbooting machines the inventory does not know.
    pub unknown: UnknownPolicy,
    /// TFTP loader names for PXE-over-IPv6 clients (sent as `tftp://[server]/name`).
    pub loaders: Loaders,
    /// iPXE script and HTTP-boot URLs, with the server's IPv6 literal in brackets.
    pub urls: BootUrls,
    /// Our address, for `tftp://` URLs.
    pub server_addr: Ipv6Addr,
    /// DNS servers (option 23, RFC 3646); empty: not sent.
    pub dns: Vec<Ipv6Addr>,
    /// Preferred lifetime of an address; T1 is half of it, T2 four fifths (RFC 8415 §21.4).
    pub preferred: Duration,
    /// Valid lifetime of an address: the lease's length.
    pub valid: Duration,
    /// Reserved addresses by MAC (stateful mode).
    pub reservations: BTreeMap<Mac, Ipv6Addr>,
}

/// One datagram and what the shell knows about it.
pub struct Input6<'a> {
    /// The UDP payload as received (possibly a Relay-Forward).
    pub bytes: &'a [u8],
    /// Its source (address, port, scope).
    pub from: SocketAddrV6,
    /// The inventory's record of a MAC (from the shell's in-memory view).
    pub machine: &'a dyn Fn(Mac) -> Option<Machine>,
    /// Arrival time (ms since the epoch).
    pub now: Timestamp,
}

/// What to do about one datagram.
#[derive(Debug, Default)]
pub struct Decision6 {
    /// The encoded reply (relay-wrapped when relayed) and where to send it.
    pub reply: Option<(Vec<u8>, SocketAddrV6)>,
    /// Bindings to make durable before the reply goes out.
    pub commit: Vec<Lease6>,
    /// Bindings to remove (Release). A Decline's quarantine is a `declined` lease in `commit`.
    pub remove: Vec<Ipv6Addr>,
    /// The client's MAC, when known (see [`client_mac`]).
    pub mac: Option<Mac>,
    /// The client's message type, for logs and metrics.
    pub kind: Option<MessageType>,
    /// The type of the reply (Advertise or Reply), for metrics.
    pub answer: Option<MessageType>,
    /// The client's DUID (lowercase hex), when the message had one.
    pub duid: Option<String>,
    /// Client architecture (option 61, RFC 5970), sent by netbooting firmware and iPXE: whom
    /// the shell may admit to the inventory as an unknown netbooting machine.
    pub arch: Option<u16>,
    /// Why nothing is sent.
    pub dropped: Option<&'static str>,
}

impl Decision6 {
    fn drop(why: &'static str) -> Decision6 {
        Decision6 {
            dropped: Some(why),
            ..Default::default()
        }
    }
}

/// The client's MAC by the identity rules: its DUID-LL/LLT, else option 79 from the relay
/// nearest the client, else the EUI-64 of its link-local source address.
pub fn client_mac(duid: &[u8], hops: &[RelayHop], source: Ipv6Addr) -> Option<Mac> {
    wire::mac_from_duid(duid)
        .or_else(|| {
            hops.last()
                .and_then(|h| h.client_link_layer.as_deref())
                .and_then(wire::mac_from_link_layer)
        })
        .or_else(|| wire::mac_from_eui64(hops.last().map_or(source, |h| h.peer)))
}

/// The DHCPv6 core: settings and the range it serves (stateful mode).
pub struct Core6 {
    /// Server-wide settings.
    pub settings: Settings6,
    /// The range and its bindings; `None` in stateless mode.
    pub pool: Option<Pool6>,
}

pub(super) fn status(code: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status: code,
        msg: msg.into(),
    })
}

pub(super) fn secs(d: Duration) -> u32 {
    d.as_secs().min(u32::MAX as u64) as u32
}

impl Core6 {
    /// Decides what to answer to one datagram.
    pub fn handle(&mut self, input: &Input6<'_>) -> Decision6 {
        let un = match wire::unwrap(input.bytes) {
            Ok(u) => u,
            Err(_) => return Decision6::drop("malformed"),
        };
        let Ok(msg) = Message::decode(&mut Decoder::new(un.inner)) else {
            return Decision6::drop("malformed");
        };
        let mut d = self.client_message(&msg, un.inner, &un.hops, input);
        d.kind = Some(msg.msg_type());
        if let Some((bytes, _)) = d.reply.take() {
            let to = match un.hops.first() {
                // Back to the relay that sent it, on the server port (RFC 8415 §19.3).
                Some(_) => SocketAddrV6::new(*input.from.ip(), 547, 0, input.from.scope_id()),
                None => SocketAddrV6::new(*input.from.ip(), 546, 0, input.from.scope_id()),
            };
            d.reply = Some((wire::wrap(&un.hops, bytes), to));
        }
        d
    }

    fn client_message(
        &mut self,
        msg: &Message,
        raw: &[u8],
        hops: &[RelayHop],
        input: &Input6<'_>,
    ) -> Decision6 {
        use MessageType as M;
        let opts = msg.opts();
        let Some(DhcpOption::ClientId(duid)) = opts.get(OptionCode::ClientId) else {
            return Decision6::drop("no client id");
        };
        let server_id = match opts.get(OptionCode::ServerId) {
            Some(DhcpOption::ServerId(s)) => Some(s.as_slice()),
            _ => None,
        };
        let ours = server_id == Some(self.settings.server_duid.as_slice());
        // RFC 8415 §16: which messages must, may or must not name a server.
        match msg.msg_type() {
            M::Solicit | M::Rebind | M::Confirm if server_id.is_some() => {
                return Decision6::drop("server id where none belongs")
            }
            M::Request | M::Renew | M::Release | M::Decline if !ours => {
                return Decision6::drop("for another server")
            }
            M::InformationRequest if server_id.is_some() && !ours => {
                return Decision6::drop("for another server")
            }
            _ => {}
        }
        let mac = client_mac(duid, hops, *input.from.ip());
        let machine = mac.and_then(|m| (input.machine)(m));
        let duid_hex = wire::hex(duid);
        let now = input.now;
        let arch = match opts.get(OptionCode::ClientArchType) {
            Some(DhcpOption::ClientArchType(a)) => a.first().map(|a| u16::from(*a)),
            _ => None,
        };
        let mut d = Decision6 {
            mac,
            duid: Some(duid_hex.clone()),
            arch,
            ..Default::default()
        };
        let (reply_type, body) = match msg.msg_type() {
            M::InformationRequest => (M::Reply, Vec::new()),
            M::Solicit => {
                let rapid = opts.get(OptionCode::RapidCommit).is_some();
                let t = if rapid && self.pool.is_some() {
                    M::Reply
                } else {
                    M::Advertise
                };
                let bind = t == M::Reply;
                let mut body = self
                    .ia_answers(msg, &duid_hex, mac, Ask::Solicit { bind }, now, &mut d)
                    .unwrap_or_default();
                if t == M::Reply {
                    body.push(DhcpOption::RapidCommit);
                }
                (t, body)
            }
            M::Request | M::Renew | M::Rebind => {
                if self.pool.is_none() {
                    return Decision6::drop("stateless: no addresses");
                }
                let ask = match msg.msg_type() {
                    M::Request => Ask::Request,
                    M::Renew => Ask::Renew,
                    _ => Ask::Rebind,
                };
                match self.ia_answers(msg, &duid_hex, mac, ask, now, &mut d) {
                    Some(body) => (M::Reply, body),
                    None => return Decision6::drop("rebind: no binding and no address named"),
                }
            }
            M::Release | M::Decline => {
                let Some(pool) = self.pool.as_mut() else {
                    return Decision6::drop("stateless: no addresses");
                };
                let until = Timestamp(now.0 + self.settings.valid.as_millis() as u64);
                for ip in ia_addresses(msg) {
                    let Some(held) = pool.binding(ip).filter(|l| l.duid == duid_hex) else {
                        continue;
                    };
                    if msg.msg_type() == M::Decline {
                        // Durable: the quarantine is a lease in the store, so neither a
                        // restart nor another server hands the address out meanwhile.
                        let q = Lease6 {
                            ip,
                            duid: duid_hex.clone(),
                            iaid: held.iaid,
                            mac: None,
                            expires: until,
                            declined: true,
                        };
                        pool.bind(q.clone());
                        d.commit.push(q);
                    } else {
                        pool.release(ip);
                        d.remove.push(ip);
                    }
                }
                (M::Reply, vec![status(Status::Success, "")])
            }
            M::Confirm => {
                let Some(pool) = self.pool.as_ref() else {
                    return Decision6::drop("stateless: no addresses");
                };
                let addrs = ia_addresses(msg);
                if addrs.is_empty() {
                    return Decision6::drop("confirm without addresses");
                }
                let on_link = addrs.iter().all(|ip| pool.contains(*ip));
                let st = if on_link {
                    Status::Success
                } else {
                    Status::NotOnLink
                };
                (M::Reply, vec![status(st, "")])
            }
            _ => return Decision6::drop("not a client message"),
        };
        d.answer = Some(reply_type);
        let mut reply = Message::new_with_id(reply_type, msg.xid());
        let ro = reply.opts_mut();
        ro.insert(DhcpOption::ServerId(self.settings.server_duid.clone()));
        ro.insert(DhcpOption::ClientId(duid.clone()));
        // Preference 255 (RFC 8415 §18.2.9, §21.8) in an Advertise that offers an address: the
        // client requests at once instead of collecting Advertises for its first Solicit
        // timeout (OVMF's HttpBootDxe: IRT = 4 s, ~5 s per boot). Only we assign addresses in
        // `stateful` mode on this link, so no other server's offer is worth waiting for.
        if reply_type == M::Advertise && body.iter().any(offers_address) {
            ro.insert(DhcpOption::Preference(MAX_PREFERENCE));
        }
        for o in body {
            ro.insert(o);
        }
        if !self.settings.dns.is_empty() {
            ro.insert(DhcpOption::DomainNameServers(self.settings.dns.clone()));
        }
        let url = self.boot(msg, mac, machine.as_ref());
        let Ok(mut bytes) = reply.to_vec() else {
            return Decision6::drop("encoding failed");
        };
        if let Some((url, http_client)) = url {
            if http_client {
                // Option 16 exactly as the client sent it (dhcproto 0.15 encodes the length of
                // a vendor class wrong, so the raw bytes go back).
                let sent = wire::options(&raw[4..]).ok().and_then(|o| {
                    o.into_iter()
                        .find(|(c, _)| *c == wire::OPT_VENDOR_CLASS)
                        .map(|(_, d)| d.to_vec())
                });
                if let Some(v) = sent {
                    wire::append_option(&mut bytes, wire::OPT_VENDOR_CLASS, &v);
                }
            }
            // Last, so edk2's AsciiStrLen over the option data stops at the end of the packet.
            wire::append_option(&mut bytes, wire::OPT_BOOTFILE_URL, url.as_bytes());
        }
        d.reply = Some((bytes, input.from));
        d
    }

    /// The URL for option 59 for a netbooting client, and whether it is UEFI HTTP boot (then
    /// option 16 is echoed: edk2 compares "HTTPClient" at offset 6 of the option data). The
    /// decision is the DHCPv4 path's.
    fn boot(
        &self,
        msg: &Message,
        mac: Option<Mac>,
        machine: Option<&Machine>,
    ) -> Option<(String, bool)> {
        let opts = msg.opts();
        let vendor = match opts.get(OptionCode::VendorClass) {
            Some(DhcpOption::VendorClass(v)) => Some(v),
            _ => None,
        };
        let http_client = vendor.is_some_and(|v| {
            v.num == HTTP_BOOT_ENTERPRISE && v.data.iter().any(|d| d.starts_with(b"HTTPClient"))
        });
        let ipxe = match opts.get(OptionCode::UserClass) {
            Some(DhcpOption::UserClass(u)) => u.data.iter().any(|d| d.as_slice() == b"iPXE"),
            _ => false,
        };
        let arch = match opts.get(OptionCode::ClientArchType) {
            Some(DhcpOption::ClientArchType(a)) => a.first().map(|a| u16::from(*a)),
            _ => None,
        };
        let stage = if ipxe {
            Stage::Ipxe
        } else if http_client {
            Stage::HttpBoot
        } else if arch.is_some() {
            Stage::Pxe
        } else {
            Stage::Plain
        };
        let client = Client {
            mac: mac?,
            stage,
            arch,
            firmware: arch.map(Firmware::from_arch),
            vendor_class: None,
            uuid: None,
            relay: None,
        };
        let intent = decide(machine, self.settings.unknown);
        let over = machine.and_then(|m| m.spec.boot.loader.as_deref());
        let s = &self.settings;
        let url = match boot_file(
            &client,
            &intent,
            over,
            &s.loaders,
            &s.urls,
            Ipv4Addr::UNSPECIFIED,
        ) {
            Ok(BootFile::Url { url, .. }) => url,
            Ok(BootFile::Tftp { file, .. }) => format!("tftp://[{}]/{file}", s.server_addr),
            Ok(BootFile::None) | Err(_) => return None,
        };
        Some((url, stage == Stage::HttpBoot))
    }
}

/// Whether an answer option is an IA_NA holding an address.
fn offers_address(o: &DhcpOption) -> bool {
    matches!(o, DhcpOption::IANA(ia) if ia.opts.get(OptionCode::IAAddr).is_some())
}

/// Every address in the request's IA_NAs.
fn ia_addresses(msg: &Message) -> Vec<Ipv6Addr> {
    let mut out = Vec::new();
    for ia in msg.opts().get_all(OptionCode::IANA).unwrap_or(&[]) {
        if let DhcpOption::IANA(ia) = ia {
            for a in ia.opts.get_all(OptionCode::IAAddr).unwrap_or(&[]) {
                if let DhcpOption::IAAddr(a) = a {
                    out.push(a.addr);
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
