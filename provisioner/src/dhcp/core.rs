//! The DHCP decision core: `handle(input) -> Decision`, no sockets, no clock, no store. The shell
//! commits `Decision::commit` durably *before* it sends `Decision::reply` (RFC 2131 §4.3.1).
//!
//! Modes: `full` serves addresses from the pools and boot information; `proxy` never assigns an
//! address and answers only netbooting clients (DISCOVER on 67 with a proxy offer, REQUEST on 4011
//! with a proxy ACK). The unknown-machine policy applies to netbooting: in full mode an unknown
//! machine under `ignore` still gets an address, just no boot file; in proxy mode it gets silence.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use inventory::{EventKind, Lease, Mac, Machine, Timestamp};

use super::classify::{classify, Client, Stage};
use super::pool::{Pool, Reservations};
use super::reply::{
    boot_file, destination, pxe_vendor_options, Arrived, BootFile, BootUrls, Loaders,
    PXE_BOOT_SERVER_PORT,
};
use crate::boot_decision::{decide, Intent, UnknownPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Proxy,
}

/// What a subnet's clients are told besides their address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetOptions {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: Duration,
}

impl SubnetOptions {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Our address on the link: option 54 and the TFTP next-server.
    pub server_ip: Ipv4Addr,
    pub mode: Mode,
    pub unknown: UnknownPolicy,
    pub loaders: Loaders,
    pub urls: BootUrls,
}

/// One request and what the server knows about its sender.
pub struct Input<'a> {
    pub msg: &'a Message,
    pub arrived: Arrived,
    /// The address naming the client's link: giaddr when relayed, else our address on the
    /// interface it arrived on. Selects the subnet.
    pub link: Ipv4Addr,
    pub machine: Option<&'a Machine>,
    pub reservations: &'a dyn Reservations,
    pub now: Timestamp,
}

/// What to do about one request.
#[derive(Debug, Default)]
pub struct Decision {
    pub reply: Option<(Message, SocketAddrV4)>,
    /// A binding to put on stable storage before the reply is sent.
    pub commit: Option<Lease>,
    /// A binding to remove (RELEASE).
    pub remove: Option<Ipv4Addr>,
    /// Proxy mode: a binding the site's DHCP server is giving a machine of the inventory, as
    /// seen in its REQUEST; stored as evidence of who holds that address (see
    /// [`crate::identity`]). Never an address of ours.
    pub observed: Option<Lease>,
    /// Events about the client (a machine of the inventory, or a rate-limited `seen` for an
    /// unknown MAC).
    pub events: Vec<EventKind>,
    /// Who asked (for discovery and logging), when the request could be classified.
    pub client: Option<Client>,
    /// Why nothing is sent, for the dropped-packet counter.
    pub dropped: Option<&'static str>,
}

impl Decision {
    fn drop(why: &'static str, client: Option<Client>) -> Decision {
        Decision {
            dropped: Some(why),
            client,
            ..Default::default()
        }
    }
}

pub struct Core {
    pub settings: Settings,
    pub subnets: Vec<(SubnetOptions, Pool)>,
    /// Rate limit of `seen` events for MACs the inventory does not know.
    pub unknown_seen: super::seen_limit::SeenLimiter,
}

fn message_type(m: &Message) -> Option<MessageType> {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

fn ip_option(m: &Message, code: OptionCode) -> Option<Ipv4Addr> {
    match m.opts().get(code) {
        Some(DhcpOption::RequestedIpAddress(ip)) | Some(DhcpOption::ServerIdentifier(ip)) => {
            Some(*ip)
        }
        _ => None,
    }
}

impl Core {
    pub fn handle(&mut self, input: Input<'_>) -> Decision {
        let msg = input.msg;
        if msg.opcode() != Opcode::BootRequest {
            return Decision::drop("not a BOOTREQUEST", None);
        }
        let Some(kind) = message_type(msg) else {
            return Decision::drop("no DHCP message type (BOOTP is not served)", None);
        };
        let client = match classify(msg) {
            Ok(c) => c,
            Err(_) => return Decision::drop("hardware address is not Ethernet", None),
        };
        let intent = decide(input.machine, self.settings.unknown);
        // Unknown netbooting machines are worth an operator's look; ordinary DHCP clients of a
        // full-mode server (phones, printers, a load generator's 50,000 MACs) are not.
        let unknown_event = (input.machine.is_none()
            && client.stage != Stage::Plain
            && matches!(kind, MessageType::Discover | MessageType::Request)
            && self.unknown_seen.allow(client.mac, input.now))
        .then(|| EventKind::Seen {
            via: "dhcp".into(),
            detail: format!(
                "{kind:?} from a machine not in the inventory{} ({:?}{}); not registered",
                client
                    .arch
                    .map(|a| format!(", arch {a}"))
                    .unwrap_or_default(),
                client.stage,
                client
                    .vendor_class
                    .as_deref()
                    .map(|v| format!(", {}", v.chars().take(48).collect::<String>()))
                    .unwrap_or_default(),
            ),
        });
        let mut d = match self.settings.mode {
            Mode::Proxy => {
                let observed = self.observe(kind, &input, client.mac);
                let mut d = self.proxy(kind, &input, client, intent);
                d.observed = observed;
                d
            }
            Mode::Full => self.full(kind, &input, client, intent),
        };
        d.events.extend(unknown_event);
        d
    }

    /// Proxy mode: which address a known machine is taking from the site's DHCP server, by
    /// what it says in a REQUEST we see (RFC 2131 §4.3.2): option 50 in SELECTING (option 54
    /// names the other server) or INIT-REBOOT (no option 54), or `ciaddr` when it is also the
    /// datagram's source (a REQUEST to our PXE boot-server port, a unicast renewal). Unknown
    /// MACs leave nothing: the table stays as small as the inventory.
    fn observe(&self, kind: MessageType, input: &Input<'_>, mac: Mac) -> Option<Lease> {
        let machine = input.machine?;
        if kind != MessageType::Request || machine.mac != mac {
            return None;
        }
        let msg = input.msg;
        let server_id = ip_option(msg, OptionCode::ServerIdentifier);
        let requested = ip_option(msg, OptionCode::RequestedIpAddress);
        let ip = match (requested, server_id) {
            (Some(ip), None) => ip,
            (Some(ip), Some(sid)) if sid != self.settings.server_ip => ip,
            _ if !msg.ciaddr().is_unspecified() && *input.arrived.src.ip() == msg.ciaddr() => {
                msg.ciaddr()
            }
            _ => return None,
        };
        let usable =
            !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback());
        usable.then(|| crate::identity::observed_binding(ip, mac, input.now))
    }

    fn proxy(
        &self,
        kind: MessageType,
        input: &Input<'_>,
        client: Client,
        intent: Intent,
    ) -> Decision {
        if client.stage == Stage::Plain {
            return Decision::drop("proxy mode answers netbooting clients only", Some(client));
        }
        let installed_pxe =
            intent == Intent::LocalDisk && matches!(client.stage, Stage::Pxe | Stage::HttpBoot);
        if intent == Intent::Ignore || (intent == Intent::LocalDisk && !installed_pxe) {
            return Decision::drop("proxy mode: nothing to boot for this machine", Some(client));
        }
        let reply_kind = match (kind, input.arrived.local_port) {
            (MessageType::Discover, _) => MessageType::Offer,
            (MessageType::Request, PXE_BOOT_SERVER_PORT) => MessageType::Ack,
            _ => {
                return Decision::drop(
                    "proxy mode: the site's DHCP server handles this",
                    Some(client),
                )
            }
        };
        let mut d = Decision {
            client: Some(client.clone()),
            ..Default::default()
        };
        let boot = self.boot(&client, &intent, input.machine, &mut d);
        let mut reply = self.reply(
            input.msg,
            reply_kind,
            Ipv4Addr::UNSPECIFIED,
            None,
            &boot,
            &client,
        );
        reply
            .opts_mut()
            .insert(DhcpOption::VendorExtensions(pxe_vendor_options()));
        d.reply = Some((reply, destination(&input.arrived, false)));
        d
    }

    fn boot(
        &self,
        client: &Client,
        intent: &Intent,
        machine: Option<&Machine>,
        d: &mut Decision,
    ) -> BootFile {
        let over = machine.and_then(|m| m.spec.boot.loader.as_deref());
        let s = &self.settings;
        match boot_file(client, intent, over, &s.loaders, &s.urls, s.server_ip) {
            Ok(b) => b,
            Err(why) => {
                d.events.push(EventKind::Note {
                    message: format!("no boot file: {why}"),
                });
                BootFile::None
            }
        }
    }

    fn full(
        &mut self,
        kind: MessageType,
        input: &Input<'_>,
        client: Client,
        intent: Intent,
    ) -> Decision {
        // In full mode an ignored machine is still a DHCP client: address yes, boot file no
        // (`boot_file` answers `None` for `Ignore`).
        let Some(idx) = self
            .subnets
            .iter()
            .position(|(_, p)| p.contains(input.link))
        else {
            return Decision::drop("no subnet configured for the client's link", Some(client));
        };
        let msg = input.msg;
        let mac = client.mac;
        let (now, res) = (input.now, input.reservations);
        let mut d = Decision {
            client: Some(client.clone()),
            ..Default::default()
        };
        match kind {
            MessageType::Discover => {
                let requested = ip_option(msg, OptionCode::RequestedIpAddress);
                let Some(ip) = self.subnets[idx].1.offer(mac, requested, res, now) else {
                    d.events.push(EventKind::Note {
                        message: "no address free in the pool".into(),
                    });
                    d.dropped = Some("pool exhausted");
                    return d;
                };
                let boot = self.boot(&client, &intent, input.machine, &mut d);
                let reply = self.reply(msg, MessageType::Offer, ip, Some(idx), &boot, &client);
                d.reply = Some((reply, destination(&input.arrived, false)));
            }
            MessageType::Request => {
                if let Some(id) = ip_option(msg, OptionCode::ServerIdentifier) {
                    if id != self.settings.server_ip {
                        return Decision::drop("client chose another server", Some(client));
                    }
                }
                let ciaddr = msg.ciaddr();
                let Some(ip) = ip_option(msg, OptionCode::RequestedIpAddress)
                    .or((!ciaddr.is_unspecified()).then_some(ciaddr))
                else {
                    return Decision::drop("REQUEST without an address", Some(client));
                };
                match self.subnets[idx].1.request(mac, ip, res, now) {
                    Ok(lease) => {
                        let boot = self.boot(&client, &intent, input.machine, &mut d);
                        let reply =
                            self.reply(msg, MessageType::Ack, ip, Some(idx), &boot, &client);
                        d.commit = Some(lease);
                        d.reply = Some((reply, destination(&input.arrived, false)));
                    }
                    Err(why) => {
                        d.events.push(EventKind::Note {
                            message: format!("DHCPNAK: {why}"),
                        });
                        let nak = self.nak(msg);
                        d.reply = Some((nak, destination(&input.arrived, true)));
                    }
                }
            }
            MessageType::Decline => {
                if let Some(ip) = ip_option(msg, OptionCode::RequestedIpAddress) {
                    self.subnets[idx].1.decline(mac, ip, now);
                    d.events.push(EventKind::Note {
                        message: format!("declined {ip} (address in use): quarantined"),
                    });
                    d.remove = Some(ip);
                }
                d.dropped = Some("DECLINE needs no answer");
            }
            MessageType::Release => {
                if self.subnets[idx].1.release(mac, msg.ciaddr()) {
                    d.remove = Some(msg.ciaddr());
                }
                d.dropped = Some("RELEASE needs no answer");
            }
            MessageType::Inform => {
                let reply = self.reply(
                    msg,
                    MessageType::Ack,
                    Ipv4Addr::UNSPECIFIED,
                    Some(idx),
                    &BootFile::None,
                    &client,
                );
                d.reply = Some((reply, destination(&input.arrived, false)));
            }
            _ => d.dropped = Some("message type not handled by a server"),
        }
        d
    }

    /// A reply carrying the request's xid, flags, giaddr and chaddr.
    fn base(&self, req: &Message, kind: MessageType, yiaddr: Ipv4Addr) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut r = Message::new_with_id(req.xid(), z, yiaddr, z, req.giaddr(), req.chaddr());
        r.set_opcode(Opcode::BootReply)
            .set_flags(Flags::new(u16::from(req.flags())));
        r.opts_mut().insert(DhcpOption::MessageType(kind));
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(self.settings.server_ip));
        // RFC 3046 §2.2: relay agent information goes back to the relay as it came.
        if let Some(o82) = req.opts().get(OptionCode::RelayAgentInformation) {
            if !req.giaddr().is_unspecified() {
                r.opts_mut().insert(o82.clone());
            }
        }
        r
    }

    fn nak(&self, req: &Message) -> Message {
        let mut r = self.base(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED);
        if !req.giaddr().is_unspecified() {
            // RFC 2131 §4.3.2: a relayed NAK asks the relay to broadcast it.
            r.set_flags(Flags::new(u16::from(req.flags())).set_broadcast());
        }
        r
    }

    fn reply(
        &self,
        req: &Message,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        subnet: Option<usize>,
        boot: &BootFile,
        client: &Client,
    ) -> Message {
        let mut r = self.base(req, kind, yiaddr);
        if let Some(i) = subnet {
            let s = &self.subnets[i].0;
            let o = r.opts_mut();
            o.insert(DhcpOption::SubnetMask(s.mask()));
            if let Some(gw) = s.router {
                o.insert(DhcpOption::Router(vec![gw]));
            }
            if !s.dns.is_empty() {
                o.insert(DhcpOption::DomainNameServer(s.dns.clone()));
            }
            if let Some(dom) = &s.domain {
                o.insert(DhcpOption::DomainName(dom.clone()));
            }
            if !yiaddr.is_unspecified() {
                let secs = s.lease_time.as_secs().min(u64::from(u32::MAX)) as u32;
                o.insert(DhcpOption::AddressLeaseTime(secs));
                o.insert(DhcpOption::Renewal(secs / 2));
                o.insert(DhcpOption::Rebinding(secs / 8 * 7));
            }
        }
        match boot {
            BootFile::None => {}
            BootFile::Tftp { server, file } => {
                r.set_siaddr(*server);
                if file.len() < 128 {
                    r.set_fname_str(file);
                }
                r.opts_mut()
                    .insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
            }
            BootFile::Url { url, http_client } => {
                if url.len() < 128 {
                    r.set_fname_str(url);
                }
                r.opts_mut()
                    .insert(DhcpOption::BootfileName(url.as_bytes().to_vec()));
                if *http_client {
                    // UEFI HTTP boot ignores offers that do not echo HTTPClient.
                    r.opts_mut()
                        .insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
                }
            }
        }
        // PXE firmware and iPXE wait ~3 s for proxy offers unless the offer says PXEClient
        // (iPXE also when there is nothing to boot: it then gives up at once).
        let pxe_offer = match client.stage {
            Stage::Ipxe => true,
            Stage::Pxe => !matches!(boot, BootFile::None),
            _ => false,
        };
        if pxe_offer {
            r.opts_mut()
                .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        }
        // OVMF's PXE takes an offer with PXEClient but without option 43 for a BINL offer and
        // rejects it ("PXE-E16: No valid offer received"): say the boot file is right here.
        if client.stage == Stage::Pxe && matches!(boot, BootFile::Tftp { .. }) {
            r.opts_mut()
                .insert(DhcpOption::VendorExtensions(pxe_vendor_options()));
        }
        r
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
