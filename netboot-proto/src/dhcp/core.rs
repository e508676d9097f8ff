//! The DHCP decision core: `handle(input) -> Decision`, no sockets, no clock, no store. The shell
//! commits `Decision::commit` durably *before* it sends `Decision::reply` (RFC 2131 §4.3.1).
//!
//! Modes: `full` serves addresses from the pools and boot information; `proxy` never assigns an
//! address and answers only netbooting clients (DISCOVER on 67 with a proxy offer, REQUEST on 4011
//! with a proxy ACK). The unknown-machine policy applies to netbooting: in full mode an unknown
//! machine under `ignore` still gets an address, just no boot file; in proxy mode it gets silence.
//!
//! Floods (issue 18, item 8): every per-packet observation goes through
//! [`super::seen_limit::Observations`]; ordinary DHCP clients the inventory does not know leave
//! no events at all; a full pool is a warning at most once a minute ([`Decision::warning`]); and
//! clients the inventory does not vouch for are served from their share of the range
//! ([`super::pool::Standing`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use inventory::{EventKind, Lease, Mac, Machine, Timestamp};

use super::classify::{classify, Client, Stage};
use super::pool::{ClientKey, NoOffer, Pool, Reservations, Standing, Who};
use super::reply::{
    boot_file, destination, pxe_vendor_options, Arrived, BootFile, BootUrls, Loaders,
    PXE_BOOT_SERVER_PORT,
};
use crate::admission::{admit, Gate, Newcomer, Outcome};
use crate::boot_decision::{decide, Intent, UnknownPolicy};

/// How the server takes part in DHCP (`dhcp.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The site's DHCP server: assigns addresses from the pools and adds boot information.
    Full,
    /// Beside the site's DHCP server (PXE 2.1 proxyDHCP): boot information only, never an address.
    Proxy,
}

/// What a subnet's clients are told besides their address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetOptions {
    /// The subnet's network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length, 0..=32; option 1 is derived from it ([`SubnetOptions::mask`]).
    pub prefix: u8,
    /// Default gateway, option 3 (RFC 2132 §3.5); `None`: not sent.
    pub router: Option<Ipv4Addr>,
    /// DNS servers, option 6 (RFC 2132 §3.8); empty: not sent.
    pub dns: Vec<Ipv4Addr>,
    /// Domain name, option 15 (RFC 2132 §3.17); `None`: not sent.
    pub domain: Option<String>,
    /// Lease time, option 51 in whole seconds (capped at `u32::MAX`); T1 (option 58) is half of
    /// it, T2 (option 59) seven eighths (RFC 2131 §4.4.5).
    pub lease_time: Duration,
}

impl SubnetOptions {
    /// The subnet mask of `prefix`, as option 1 carries it (RFC 2132 §3.3).
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        })
    }
}

/// The server-wide settings of the core (validated `[dhcp]` configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Our address on the link: option 54 and the TFTP next-server.
    pub server_ip: Ipv4Addr,
    /// Full or proxy DHCP.
    pub mode: Mode,
    /// What to do with netbooting machines the inventory does not know (`dhcp.unknown_machines`).
    pub unknown: UnknownPolicy,
    /// Identify clients outside the inventory by option 61 when sent (RFC 2131 §4.2).
    pub match_client_id: bool,
    /// TFTP loader file names by firmware, for PXE clients.
    pub loaders: Loaders,
    /// Where iPXE and UEFI HTTP-boot clients are sent.
    pub urls: BootUrls,
}

/// One request and what the server knows about its sender.
pub struct Input<'a> {
    /// The parsed request.
    pub msg: &'a Message,
    /// Where it came from and on which port: decides where the reply goes.
    pub arrived: Arrived,
    /// The address naming the client's link: giaddr when relayed, else our address on the
    /// interface it arrived on. Selects the subnet.
    pub link: Ipv4Addr,
    /// The inventory's record of the sender's MAC (from the shell's in-memory view), if any.
    pub machine: Option<&'a Machine>,
    /// The inventory's address reservations (from the shell's in-memory view).
    pub reservations: &'a dyn Reservations,
    /// Option 82 exactly as the relay sent it (see [`super::reply::raw_option`]).
    pub relay_info: Option<&'a [u8]>,
    /// The time of arrival (milliseconds since the Unix epoch); the core reads no clock.
    pub now: Timestamp,
    /// What admitting an unknown netbooting machine needs (`None`: never admit, as if the
    /// policy were `ignore` for recording; the reply still follows the policy).
    pub admitting: Option<Admitting<'a>>,
}

/// The shared admission gate (HTTP boot uses the same one) and the inventory's UUID index,
/// for recording unknown netbooting machines under `discover` and `auto`.
pub struct Admitting<'a> {
    /// The cap and rate limit on recording strangers, shared with HTTP boot.
    pub gate: &'a mut Gate,
    /// Which machine holds an SMBIOS UUID (from the shell's in-memory view).
    pub uuid_holder: &'a dyn Fn(&str) -> Option<Mac>,
}

/// What to do about one request.
#[derive(Debug, Default)]
pub struct Decision {
    /// The reply and where to send it (see [`destination`]); `None`: stay silent (see `dropped`).
    pub reply: Option<(Message, SocketAddrV4)>,
    /// A binding to put on stable storage before the reply is sent: claimed atomically in the
    /// store (another server sharing it may hold the address), and only then ACKed.
    pub commit: Option<Lease>,
    /// A relayed machine's new place in the network (option 82 changed or first seen), to
    /// store on its record, with the note saying so.
    pub location: Option<(inventory::NetworkLocation, EventKind)>,
    /// Option 82 to append to the reply (and to `nak_if_lost`) exactly as the relay sent it
    /// (RFC 3046 §2.2); see [`super::reply::encode_with`].
    pub relay_echo: Option<Vec<u8>>,
    /// The NAK to send instead of the ACK when the store refuses the claim (another server's
    /// client holds the address); with its destination.
    pub nak_if_lost: Option<(Message, SocketAddrV4)>,
    /// A binding to remove (RELEASE).
    pub remove: Option<Ipv4Addr>,
    /// Proxy mode: a binding the site's DHCP server is giving a machine of the inventory, as
    /// seen in its REQUEST; stored as evidence of who holds that address (see
    /// the provisioner's `identity` module). Never an address of ours.
    pub observed: Option<Lease>,
    /// Events about the client (a machine of the inventory, or a rate-limited `seen` for an
    /// unknown MAC).
    pub events: Vec<EventKind>,
    /// Who asked (for discovery and logging), when the request could be classified.
    pub client: Option<Client>,
    /// Why nothing is sent, for the dropped-packet counter.
    pub dropped: Option<&'static str>,
    /// Something the operator should see in the log (rate-limited by the core).
    pub warning: Option<String>,
    /// Observations the rate limits kept out of the event history.
    pub suppressed: usize,
    /// An unknown netbooting machine under `discover`/`auto` went through the admission gate:
    /// `Ok(Some(record))` to create (the reply was decided as for that record, so the shell
    /// writes it before sending, and drops the reply if that fails), or the refusal.
    pub admission: Option<Outcome>,
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

/// The DHCP core: settings, the pools it serves from and its rate limits. One per server; the
/// shell holds it behind a lock and feeds it every request ([`Core::handle`]).
pub struct Core {
    /// Server-wide settings.
    pub settings: Settings,
    /// The subnets served in full mode, each with its pool; the first whose subnet contains the
    /// request's link ([`link_of`]) serves it. Proxy mode does not use them.
    pub subnets: Vec<(SubnetOptions, Pool)>,
    /// Rate limits of per-packet events (strangers and inventory machines).
    pub observations: super::seen_limit::Observations,
    /// When a pool's exhaustion was last logged (one warning a minute, not one per packet).
    pub pool_warned: Option<Timestamp>,
}

/// At most one pool warning per this long (milliseconds).
const POOL_WARNING_EVERY_MS: u64 = 60_000;

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

/// The `seen` event of a DISCOVER or REQUEST: the stage and architecture for a machine of the
/// inventory; for a stranger also its vendor class, saying it is not registered.
fn seen_event(kind: MessageType, client: &Client, known: bool) -> EventKind {
    let arch = client
        .arch
        .map(|a| format!(" arch {a}"))
        .unwrap_or_default();
    let detail = if known {
        format!("{kind:?}{arch} ({:?})", client.stage)
    } else {
        format!(
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
        )
    };
    EventKind::Seen {
        via: "dhcp".into(),
        detail,
    }
}

/// The address naming a request's link, which selects the subnet: the relay's (or the link its
/// option 82 link-selection sub-option names, RFC 3527) when relayed, else our address on the
/// interface it arrived on (`local`), else `server_ip`.
pub fn link_of(msg: &Message, local: Option<Ipv4Addr>, server_ip: Ipv4Addr) -> Ipv4Addr {
    if msg.giaddr().is_unspecified() {
        return local.unwrap_or(server_ip);
    }
    classify(msg)
        .ok()
        .and_then(|c| c.relay)
        .and_then(|r| r.link_selection)
        .unwrap_or(msg.giaddr())
}

/// Where a relayed request says a known machine is (RFC 3046 circuit and remote id), when that
/// differs from its record: the new location and the note for its history.
fn moved(
    msg: &Message,
    machine: Option<&Machine>,
    client: Option<&Client>,
) -> Option<(inventory::NetworkLocation, EventKind)> {
    let (m, relay) = (machine?, client?.relay.as_ref()?);
    if msg.giaddr().is_unspecified() {
        return None;
    }
    let here = inventory::NetworkLocation {
        relay: msg.giaddr(),
        circuit_id: relay.circuit_id.clone(),
        remote_id: relay.remote_id.clone(),
    };
    if m.location.as_ref() == Some(&here) {
        return None;
    }
    let note = EventKind::Note {
        message: format!(
            "behind relay {} (circuit {}, remote {})",
            here.relay,
            here.circuit_id.as_deref().unwrap_or("-"),
            here.remote_id.as_deref().unwrap_or("-")
        ),
    };
    Some((here, note))
}

impl Core {
    /// Decides what to do about one request: classify the sender, admit a stranger if the
    /// policy and the gate allow it, decide its boot intent, then answer as [`Mode::Full`]
    /// (address and boot file) or [`Mode::Proxy`] (boot file only). Requests that are not
    /// BOOTREQUESTs, have no option 53 (plain BOOTP) or a non-Ethernet `chaddr` are dropped.
    /// Never fails: anything not answered says why in [`Decision::dropped`]. The shell commits
    /// `commit` (and the admitted record) before it sends the reply.
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
        // Unknown netbooting machines (not plain DHCP clients) under `discover` or `auto` join
        // the inventory within the admission limits; the reply is decided as for the record
        // they become.
        let mut input = input;
        let mut admission = None;
        if let (None, Some(a)) = (input.machine, input.admitting.take()) {
            if client.stage != Stage::Plain
                && matches!(kind, MessageType::Discover | MessageType::Request)
            {
                let who = Newcomer {
                    mac: client.mac,
                    uuid: client.uuid.clone(),
                    arch: client.arch,
                    via: "dhcp",
                };
                admission = Some(admit(
                    a.gate,
                    &who,
                    self.settings.unknown,
                    a.uuid_holder,
                    input.now,
                ));
            }
        }
        let record = match &admission {
            Some(Ok(Some(a))) => Some(a.machine.clone()),
            _ => None,
        };
        let input = Input {
            machine: input.machine.or(record.as_ref()),
            ..input
        };
        let intent = decide(input.machine, self.settings.unknown);
        let standing = match input.machine {
            Some(m) if m.state() != inventory::State::Discovered => Standing::Registered,
            _ => Standing::Stranger,
        };
        let (mac, stage, known) = (client.mac, client.stage, input.machine.is_some());
        let seen = matches!(kind, MessageType::Discover | MessageType::Request)
            .then(|| seen_event(kind, &client, known));
        let mut d = match self.settings.mode {
            Mode::Proxy => {
                let observed = self.observe(kind, &input, client.mac);
                let mut d = self.proxy(kind, &input, client, intent);
                d.observed = observed;
                d
            }
            Mode::Full => self.full(kind, &input, client, intent, standing),
        };
        let mut observed = std::mem::take(&mut d.events);
        observed.extend(seen);
        // Unknown netbooting machines are worth an operator's look; ordinary DHCP clients of a
        // full-mode server (phones, printers, a load generator's 50,000 MACs) are not.
        if !known && stage == Stage::Plain {
            observed.clear();
        }
        let (kept, suppressed) = self.observations.filter(mac, known, observed, input.now);
        d.events = kept;
        d.suppressed = suppressed;
        if d.reply.is_some() && !msg.giaddr().is_unspecified() {
            d.relay_echo = input.relay_info.map(<[u8]>::to_vec).or_else(|| {
                // No raw bytes (a caller without the datagram): the parsed option, re-encoded.
                let o82 = msg.opts().get(OptionCode::RelayAgentInformation)?;
                let mut m = Message::default();
                m.opts_mut().insert(o82.clone());
                let bytes = dhcproto::Encodable::to_vec(&m).ok()?;
                super::reply::raw_option(&bytes, 82).map(<[u8]>::to_vec)
            });
        }
        d.location = moved(msg, input.machine, d.client.as_ref());
        d.admission = admission;
        d
    }

    /// The store refused a claim: `held` is another client's binding (another server sharing
    /// the store granted it). The pool takes it as that client's, so it is not offered again.
    pub fn foreign_binding(&mut self, held: &Lease) {
        if let Some((_, pool)) = self.subnets.iter_mut().find(|(_, p)| p.contains(held.ip)) {
            pool.adopt(held);
        }
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
        usable.then(|| super::binding::observed_binding(ip, mac, input.now))
    }

    /// A warning about a pool, unless one was given in the last minute.
    fn pool_warning(&mut self, now: Timestamp, text: impl FnOnce() -> String) -> Option<String> {
        let due = self
            .pool_warned
            .is_none_or(|t| now.0.saturating_sub(t.0) >= POOL_WARNING_EVERY_MS);
        due.then(|| {
            self.pool_warned = Some(now);
            text()
        })
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
        standing: Standing,
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
        let (who, client_id) = self.who(msg, &client, input.machine.is_some());
        if input.machine.is_some() {
            self.subnets[idx].1.claim_by_mac(client.mac);
        }
        let (now, res) = (input.now, input.reservations);
        let mut d = Decision {
            client: Some(client.clone()),
            ..Default::default()
        };
        match kind {
            MessageType::Discover => {
                let requested = ip_option(msg, OptionCode::RequestedIpAddress);
                let offered = self.subnets[idx]
                    .1
                    .offer_to(who, standing, requested, res, now);
                let ip = match offered {
                    Ok(ip) => ip,
                    Err(why) => {
                        let (net, size) = {
                            let (o, p) = &self.subnets[idx];
                            (format!("{}/{}", o.network, o.prefix), p.utilization(now).1)
                        };
                        let (note, dropped, warning) = match why {
                            NoOffer::Exhausted => (
                                "no address free in the pool".to_string(),
                                "pool exhausted",
                                format!("DHCP pool {net}: all {size} addresses of the range are held; clients get no offer"),
                            ),
                            NoOffer::StrangerShare { limit } => (
                                format!("no address for machines not registered: they hold their share ({limit}) of the pool"),
                                "unregistered share of the pool in use",
                                format!("DHCP pool {net}: machines not registered hold their share ({limit} of {size} addresses, dhcp.subnet.unknown_share); they get no offer, registered machines still do"),
                            ),
                        };
                        d.events.push(EventKind::Note { message: note });
                        d.dropped = Some(dropped);
                        d.warning = self.pool_warning(now, || warning);
                        return d;
                    }
                };
                let boot = self.boot(&client, &intent, input.machine, &mut d);
                let reply = self.reply(msg, MessageType::Offer, ip, Some(idx), &boot, &client);
                d.reply = Some((reply, destination(&input.arrived, false)));
            }
            MessageType::Request => {
                let Some(state) = RequestState::of(msg, &input.arrived) else {
                    return Decision::drop("REQUEST without an address", Some(client));
                };
                let pool = &mut self.subnets[idx].1;
                let ip = match state {
                    RequestState::Selecting { server, ip } => {
                        if server != self.settings.server_ip {
                            // It took another server's offer: ours is free again.
                            pool.withdraw_offer(who);
                            return Decision::drop("client chose another server", Some(client));
                        }
                        ip
                    }
                    RequestState::InitReboot { ip } => match pool.record_of(who.key) {
                        // RFC 2131 §4.3.2: no record of the client, stay silent (another
                        // server may know it); a record of another address: NAK below.
                        None if res.reserved_for(who.mac) != Some(ip) => {
                            return Decision::drop(
                                "INIT-REBOOT from a client this server has no record of",
                                Some(client),
                            )
                        }
                        Some(mine) if mine != ip => {
                            return self.refuse(msg, &input.arrived, d, format!("INIT-REBOOT for {ip}, but this client's address here is {mine}"));
                        }
                        _ => ip,
                    },
                    RequestState::Renewing { ip } | RequestState::Rebinding { ip } => {
                        match pool.record_of(who.key) {
                            Some(mine) if mine == ip => ip,
                            Some(mine) => {
                                return self.refuse(
                                    msg,
                                    &input.arrived,
                                    d,
                                    format!(
                                        "renewal of {ip}, but this client's address here is {mine}"
                                    ),
                                );
                            }
                            // No record (say, a lost database, or a lease from before a
                            // restart with another range): an address of our range is granted
                            // again when it is free for the client, as Kea does; one outside it
                            // belongs to another server, so no answer. Several servers
                            // sharing one store (issue 13): a survivor answers the REBIND of
                            // a client another server bound; an address it merely offered to
                            // someone else yields, and the store's claim decides.
                            None if pool.in_dynamic_range(ip) => {
                                pool.yield_offer(ip, who);
                                ip
                            }
                            None => {
                                return Decision::drop(
                                    "renewal of an address outside this server's range",
                                    Some(client),
                                )
                            }
                        }
                    }
                };
                let previous = self.subnets[idx].1.record_of(who.key);
                match self.subnets[idx]
                    .1
                    .request_from(who, standing, ip, res, now)
                {
                    Ok(mut lease) => {
                        lease.client_id = client_id;
                        // A client that moves (SELECTING another address) lets go of its old
                        // one: the pool already forgot it; the store must too, or it stays
                        // bound to nobody until it expires.
                        d.remove = previous.filter(|p| *p != ip);
                        let boot = self.boot(&client, &intent, input.machine, &mut d);
                        let reply =
                            self.reply(msg, MessageType::Ack, ip, Some(idx), &boot, &client);
                        d.commit = Some(lease);
                        d.reply = Some((reply, destination(&input.arrived, false)));
                        d.nak_if_lost = Some((self.nak(msg), destination(&input.arrived, true)));
                    }
                    Err(why) => return self.refuse(msg, &input.arrived, d, why.to_string()),
                }
            }
            MessageType::Decline => {
                // RFC 2131 §4.3.3: only from the client the address was offered or leased to,
                // naming us; anyone else's DECLINE changes nothing (it would evict the holder).
                let ours =
                    ip_option(msg, OptionCode::ServerIdentifier) == Some(self.settings.server_ip);
                match ip_option(msg, OptionCode::RequestedIpAddress) {
                    Some(ip) if ours && self.subnets[idx].1.decline_from(who, ip, now) => {
                        d.events.push(EventKind::Note {
                            message: format!("declined {ip} (address in use): quarantined"),
                        });
                        d.remove = Some(ip);
                        d.dropped = Some("DECLINE needs no answer");
                    }
                    _ => {
                        d.dropped =
                            Some("DECLINE of an address not offered or leased to this client")
                    }
                }
            }
            MessageType::Release => {
                // RFC 2131 §4.3.4: only the holder's RELEASE frees an address.
                if self.subnets[idx].1.release_from(who, msg.ciaddr()) {
                    d.remove = Some(msg.ciaddr());
                    d.dropped = Some("RELEASE needs no answer");
                } else {
                    d.dropped = Some("RELEASE of an address this client does not hold");
                }
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

    /// Who the client is (RFC 2131 §4.2, with the inventory's exception; see [`ClientKey`]), and
    /// its client identifier (hex) when that is what it is known by.
    fn who(&self, msg: &Message, client: &Client, known: bool) -> (Who, Option<String>) {
        let id = match msg.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => Some(id.as_slice()),
            _ => None,
        };
        // Option 61 = hardware type 1 + chaddr says nothing beyond the MAC: same key.
        let mut hw = vec![1u8];
        hw.extend_from_slice(&client.mac.octets());
        match id {
            Some(id) if self.settings.match_client_id && !known && id != hw.as_slice() => (
                Who {
                    key: ClientKey::client_id(id),
                    mac: client.mac,
                },
                Some(id.iter().map(|b| format!("{b:02x}")).collect()),
            ),
            _ => (Who::hw(client.mac), None),
        }
    }

    /// A DHCPNAK for a REQUEST, with the reason as a note on the client.
    fn refuse(&self, msg: &Message, arrived: &Arrived, mut d: Decision, why: String) -> Decision {
        d.events.push(EventKind::Note {
            message: format!("DHCPNAK: {why}"),
        });
        d.reply = Some((self.nak(msg), destination(arrived, true)));
        d
    }

    /// A reply carrying the request's xid, flags, giaddr and chaddr.
    fn base(&self, req: &Message, kind: MessageType, yiaddr: Ipv4Addr) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        // RFC 2131 table 3: an ACK carries the request's ciaddr; OFFER and NAK carry 0.
        let ciaddr = if kind == MessageType::Ack {
            req.ciaddr()
        } else {
            z
        };
        let mut r = Message::new_with_id(req.xid(), ciaddr, yiaddr, z, req.giaddr(), req.chaddr());
        r.set_opcode(Opcode::BootReply)
            .set_flags(Flags::new(u16::from(req.flags())));
        r.opts_mut().insert(DhcpOption::MessageType(kind));
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(self.settings.server_ip));
        // RFC 6842: a server MUST return the client identifier the client sent.
        if let Some(id @ DhcpOption::ClientIdentifier(_)) =
            req.opts().get(OptionCode::ClientIdentifier)
        {
            r.opts_mut().insert(id.clone());
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
                boot_file_name(req, &mut r, file);
            }
            BootFile::Url { url, http_client } => {
                boot_file_name(req, &mut r, url);
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

/// The boot file name, as old PXE ROMs and every newer client read it: always in the `file`
/// field when it fits (NUL-padded, so a C-string read is exact); as option 67 only when the
/// client asks for it in option 55 or it does not fit in `file` — and then NUL-terminated, since
/// some ROMs copy option 67 as a C string up to the next byte (END, 0xff). RFC 2132 §2 lets
/// receivers drop trailing NULs. This is dnsmasq's rule.
fn boot_file_name(req: &Message, r: &mut Message, name: &str) {
    let fits = name.len() < 128;
    if fits {
        r.set_fname_str(name);
    }
    let asked = matches!(
        req.opts().get(OptionCode::ParameterRequestList),
        Some(DhcpOption::ParameterRequestList(list)) if list.contains(&OptionCode::BootfileName)
    );
    if asked || !fits {
        let mut v = name.as_bytes().to_vec();
        v.push(0);
        r.opts_mut().insert(DhcpOption::BootfileName(v));
    }
}

/// Which RFC 2131 §4.3.2 client state a DHCPREQUEST comes from, by its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Answering an OFFER: option 54 names the chosen server, option 50 the address (or, when
    /// a client leaves option 50 out, ciaddr).
    Selecting {
        /// Option 54: the server the client chose (maybe not us).
        server: Ipv4Addr,
        /// The address it asks for.
        ip: Ipv4Addr,
    },
    /// Rebooting with a remembered address: option 50, no option 54, ciaddr 0.
    InitReboot {
        /// Option 50: the address it remembers.
        ip: Ipv4Addr,
    },
    /// Extending its lease by unicast: ciaddr set, no option 54 (an option 50 is ignored).
    Renewing {
        /// ciaddr: the address it holds.
        ip: Ipv4Addr,
    },
    /// Extending its lease by broadcast after T2: as RENEWING, sent to 255.255.255.255.
    Rebinding {
        /// ciaddr: the address it holds.
        ip: Ipv4Addr,
    },
}

impl RequestState {
    /// The state, or `None` when the REQUEST names no address at all.
    pub fn of(msg: &Message, arrived: &Arrived) -> Option<RequestState> {
        let server = ip_option(msg, OptionCode::ServerIdentifier);
        let requested = ip_option(msg, OptionCode::RequestedIpAddress);
        let ciaddr = (!msg.ciaddr().is_unspecified()).then_some(msg.ciaddr());
        Some(match (server, requested, ciaddr) {
            (Some(server), Some(ip), _) | (Some(server), None, Some(ip)) => {
                RequestState::Selecting { server, ip }
            }
            (None, Some(ip), None) => RequestState::InitReboot { ip },
            (None, _, Some(ip)) if arrived.to_broadcast => RequestState::Rebinding { ip },
            (None, _, Some(ip)) => RequestState::Renewing { ip },
            (_, None, None) => return None,
        })
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
