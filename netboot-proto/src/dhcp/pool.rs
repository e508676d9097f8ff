//! One subnet's dynamic range: who holds which address until when. A plain type with time as
//! input; the server keeps it in memory and writes every binding through to the store before it
//! acknowledges (RFC 2131 §4.3.1).
//!
//! Allocation order for a DISCOVER: the machine's reservation; else the address it already holds
//! (sticky, even expired); else the address it asks for (option 50) if free; else the first free
//! address of the range. Offers hold an address briefly; DECLINEd addresses are quarantined; expired
//! bindings are reclaimed lazily.
//!
//! Registered machines come first (issue 18, item 8): clients the inventory does not vouch for
//! ([`Standing::Stranger`]) may hold at most a share of the range at once
//! ([`Pool::with_stranger_share`]), and when nothing else is free a registered machine takes an
//! address that is merely *offered* to a stranger (an OFFER is no promise: RFC 2131 §4.3.1 lets
//! the server reuse it; the stranger's REQUEST for it is then NAKed). Bindings are never taken.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use inventory::{Lease, Mac, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Offered,
    Bound,
    /// Declined by a client (address conflict): nobody gets it until `until`.
    Quarantined,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Whose binding it is (see [`ClientKey`]).
    key: ClientKey,
    /// The client's hardware address, for the stored lease and for reservations.
    mac: Mac,
    hold: Hold,
    until: Timestamp,
    /// Held by a client the inventory does not vouch for (counts against the stranger share).
    stranger: bool,
}

/// Who a binding belongs to. RFC 2131 §4.2: a server MUST identify a client by its client
/// identifier (option 61) when one is sent, else by `chaddr`. Machines of the inventory are the
/// exception, by design: their firmware, iPXE, the installer and the installed OS each send a
/// different option 61 (or none) from one NIC, and must share the one lease and reservation of
/// that MAC (a field problem in Kairos and CoreOS), so the core keys them by MAC. Client
/// identifiers are kept as the first 56 bits of their SHA-256: a fixed-size, `Copy` key whose
/// collisions (2^-56) do not matter at pool sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// Identified by its hardware address.
    Hw(Mac),
    /// Identified by option 61 (digest).
    Id([u8; 7]),
}

impl ClientKey {
    /// The key of a client that sent `client_id` (option 61's bytes).
    pub fn client_id(client_id: &[u8]) -> ClientKey {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(client_id);
        let mut k = [0u8; 7];
        k.copy_from_slice(&d[..7]);
        ClientKey::Id(k)
    }
}

/// A client as the pool sees it: the identity its bindings are kept under, and its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Who {
    /// The identity its bindings are kept under.
    pub key: ClientKey,
    /// Its `chaddr`: for the stored lease and for reservations, which are by MAC.
    pub mac: Mac,
}

impl Who {
    /// A client identified by its MAC.
    pub fn hw(mac: Mac) -> Who {
        Who {
            key: ClientKey::Hw(mac),
            mac,
        }
    }
}

/// Whether the inventory vouches for a client: a machine of the inventory past `discovered`, or a
/// stranger (not in the inventory, or `discovered` and waiting for an operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// A machine of the inventory past `discovered`: not limited by the stranger share.
    Registered,
    /// Not in the inventory, or `discovered`: limited to its share of the range.
    Stranger,
}

/// Why a DISCOVER gets no offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoOffer {
    /// Every address of the range is held.
    Exhausted,
    /// Strangers hold their whole share (`limit` addresses) of the range.
    StrangerShare {
        /// The share, in addresses.
        limit: usize,
    },
}

/// How often (milliseconds) the count of stranger holdings is taken again when it says "full":
/// between counts it only grows, so it errs on the side of the registered machines.
const STRANGER_RECOUNT_MS: u64 = 1_000;

/// Timers of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolTimes {
    /// How long a REQUEST binds an address.
    pub lease: Duration,
    /// How long an offered address waits for its REQUEST.
    pub offer: Duration,
    /// How long a declined address is kept out of use.
    pub quarantine: Duration,
}

impl Default for PoolTimes {
    fn default() -> Self {
        PoolTimes {
            lease: Duration::from_secs(3600),
            offer: Duration::from_secs(60),
            quarantine: Duration::from_secs(600),
        }
    }
}

/// Why a REQUEST is refused (the server answers DHCPNAK).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address is not in this pool's subnet.
    #[error("{ip} is not in this subnet")]
    WrongSubnet {
        /// The address requested.
        ip: Ipv4Addr,
    },
    /// Another client holds it now (offered or bound), or it is quarantined after a DECLINE.
    #[error("{ip} is held by {holder}")]
    Taken {
        /// The address requested.
        ip: Ipv4Addr,
        /// The MAC of the client holding (or having declined) it.
        holder: Mac,
    },
    /// It is reserved for another machine.
    #[error("{ip} is reserved for {owner}")]
    ReservedForOther {
        /// The address requested.
        ip: Ipv4Addr,
        /// The machine it is reserved for.
        owner: Mac,
    },
    /// The client has a usable reservation in this subnet, and it is another address.
    #[error("this machine is reserved {reserved}, not {ip}")]
    NotItsReservation {
        /// The address requested.
        ip: Ipv4Addr,
        /// The client's reservation.
        reserved: Ipv4Addr,
    },
    /// In the subnet but outside `first..=last`, and not the client's reservation.
    #[error("{ip} is outside the dynamic range and not reserved for this machine")]
    OutsideRange {
        /// The address requested.
        ip: Ipv4Addr,
    },
    /// A stranger asks for an address it does not hold while strangers hold their share.
    #[error("machines not registered hold their whole share ({limit} addresses) of the range")]
    StrangerShare {
        /// The share, in addresses.
        limit: usize,
    },
}

/// One subnet's dynamic range `first..=last` and the bindings in it, keyed by address and by
/// [`ClientKey`]. Memory is bounded by the subnet: at most one entry per address (reservations
/// may lie outside the range), and [`Pool::sweep`] drops expired ones.
pub struct Pool {
    network: Ipv4Addr,
    prefix: u8,
    first: u32,
    last: u32,
    times: PoolTimes,
    entries: HashMap<u32, Entry>,
    by_key: HashMap<ClientKey, u32>,
    /// Where the search for a free address resumes: allocation is amortized O(1) instead of a
    /// scan from the start of the range, and just-freed addresses are not reused at once.
    cursor: u32,
    /// Addresses strangers may hold at once (`None`: the whole range).
    stranger_limit: Option<usize>,
    /// Stranger holdings: the last exact count plus new holdings since (never too low).
    strangers: usize,
    strangers_counted: Option<Timestamp>,
}

/// Reservations as the inventory knows them: address → owner, and owner → address.
pub trait Reservations {
    /// The MAC `ip` is reserved for, if any.
    fn owner_of(&self, ip: Ipv4Addr) -> Option<Mac>;
    /// The address reserved for `mac`, if any (in any subnet).
    fn reserved_for(&self, mac: Mac) -> Option<Ipv4Addr>;
}

impl Reservations for HashMap<Ipv4Addr, Mac> {
    fn owner_of(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.get(&ip).copied()
    }
    fn reserved_for(&self, mac: Mac) -> Option<Ipv4Addr> {
        self.iter().find(|(_, m)| **m == mac).map(|(ip, _)| *ip)
    }
}

impl Pool {
    /// A pool for `first..=last` inside `network/prefix`. Panics if the range is outside it:
    /// configuration validation checks that first.
    pub fn new(
        network: Ipv4Addr,
        prefix: u8,
        first: Ipv4Addr,
        last: Ipv4Addr,
        times: PoolTimes,
    ) -> Pool {
        let p = Pool {
            network,
            prefix,
            first: u32::from(first),
            last: u32::from(last),
            times,
            entries: HashMap::new(),
            by_key: HashMap::new(),
            cursor: u32::from(first),
            stranger_limit: None,
            strangers: 0,
            strangers_counted: None,
        };
        assert!(
            p.contains(first) && p.contains(last) && p.first <= p.last,
            "range outside subnet"
        );
        p
    }

    /// Lets strangers hold at most `percent` of the range at once (rounded down; 100: no limit,
    /// 0: strangers get no dynamic address). Registered machines and reservations are not limited.
    pub fn with_stranger_share(mut self, percent: u8) -> Pool {
        let size = (self.last - self.first) as usize + 1;
        self.stranger_limit = (percent < 100).then(|| size * usize::from(percent.min(100)) / 100);
        self
    }

    /// Whether strangers hold their whole share now (counting again at most once a second).
    fn stranger_share_full(&mut self, now: Timestamp) -> Option<usize> {
        let limit = self.stranger_limit?;
        if self.strangers >= limit
            && self
                .strangers_counted
                .is_none_or(|t| now.0.saturating_sub(t.0) >= STRANGER_RECOUNT_MS)
        {
            self.strangers = self
                .entries
                .iter()
                .filter(|(ip, e)| e.stranger && e.until > now && self.in_range(**ip))
                .count();
            self.strangers_counted = Some(now);
        }
        (self.strangers >= limit).then_some(limit)
    }

    /// Whether `key` holds `ip` now (offered or bound, not expired).
    fn holds(&self, key: ClientKey, ip: u32, now: Timestamp) -> bool {
        self.entries
            .get(&ip)
            .is_some_and(|e| e.key == key && e.hold != Hold::Quarantined && e.until > now)
    }

    /// The address this pool has a record of for `key` (offered, bound or lapsed, in the
    /// subnet), as RFC 2131 §4.3.2 asks for INIT-REBOOT, RENEWING and REBINDING.
    pub fn record_of(&self, key: ClientKey) -> Option<Ipv4Addr> {
        self.by_key
            .get(&key)
            .filter(|ip| {
                self.entries
                    .get(ip)
                    .is_some_and(|e| e.key == key && e.hold != Hold::Quarantined)
            })
            .map(|ip| Ipv4Addr::from(*ip))
    }

    /// Whether `ip` was offered or leased to `key` and is still held by it (DECLINE checks).
    pub fn held_by(&self, key: ClientKey, ip: Ipv4Addr, now: Timestamp) -> bool {
        self.holds(key, u32::from(ip), now)
    }

    /// Whether `ip` is in this pool's subnet (not necessarily in its dynamic range).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(ip) & mask == u32::from(self.network) & mask
    }

    /// Whether `ip` is in the dynamic range (not only the subnet).
    pub fn in_dynamic_range(&self, ip: Ipv4Addr) -> bool {
        self.in_range(u32::from(ip))
    }

    fn in_range(&self, ip: u32) -> bool {
        (self.first..=self.last).contains(&ip)
    }

    /// Loads bindings from the store at startup (expired ones, and bindings proxy mode only
    /// observed, are skipped); `stranger` says which holders the inventory does not vouch for
    /// (and so are keyed by the client identifier they leased with, if any).
    pub fn restore(&mut self, leases: &[Lease], now: Timestamp, stranger: &dyn Fn(Mac) -> bool) {
        for l in leases {
            if l.is_active(now) && !l.observed && self.contains(l.ip) {
                let stranger = stranger(l.mac);
                self.strangers += usize::from(stranger);
                let key = match (&l.client_id, stranger) {
                    (Some(id), true) => hex_bytes(id)
                        .map(|b| ClientKey::client_id(&b))
                        .unwrap_or(ClientKey::Hw(l.mac)),
                    _ => ClientKey::Hw(l.mac),
                };
                self.put(
                    u32::from(l.ip),
                    Entry {
                        key,
                        mac: l.mac,
                        hold: Hold::Bound,
                        until: l.expires,
                        stranger,
                    },
                );
            }
        }
    }

    /// Takes `lease` (granted by another server sharing the store) as its client's binding.
    pub fn adopt(&mut self, lease: &Lease) {
        let key = match lease.client_id.as_deref().and_then(hex_bytes) {
            Some(id) => ClientKey::client_id(&id),
            None => ClientKey::Hw(lease.mac),
        };
        self.put(
            u32::from(lease.ip),
            Entry {
                key,
                mac: lease.mac,
                hold: Hold::Bound,
                until: lease.expires,
                stranger: false,
            },
        );
    }

    fn put(&mut self, ip: u32, e: Entry) {
        // The address may pass from another client: forget that client's claim on it, so
        // `by_key` never holds more entries than `entries` (no growth under a storm of new MACs).
        if let Some(prev) = self.entries.get(&ip).map(|p| p.key).filter(|k| *k != e.key) {
            if self.by_key.get(&prev) == Some(&ip) {
                self.by_key.remove(&prev);
            }
        }
        if let Some(old) = self.by_key.insert(e.key, ip) {
            if old != ip
                && self
                    .entries
                    .get(&old)
                    .is_some_and(|o| o.key == e.key && o.hold != Hold::Quarantined)
            {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(ip, e);
    }

    /// Free for `who`: nobody else holds it now, and it is not reserved for someone else.
    fn free_for(&self, ip: u32, who: Who, res: &dyn Reservations, now: Timestamp) -> bool {
        if res
            .owner_of(Ipv4Addr::from(ip))
            .is_some_and(|o| o != who.mac)
        {
            return false;
        }
        self.unheld_for(ip, who, now)
    }

    /// Nobody but `who` holds `ip` now (offered, bound or quarantined), reservations aside.
    fn unheld_for(&self, ip: u32, who: Who, now: Timestamp) -> bool {
        match self.entries.get(&ip) {
            None => true,
            Some(e) if e.hold == Hold::Quarantined => e.until <= now,
            Some(e) => e.key == who.key || e.until <= now,
        }
    }

    /// [`Pool::offer_to`] for a registered machine; `None` when the pool is exhausted.
    pub fn offer(
        &mut self,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Option<Ipv4Addr> {
        self.offer_to(Who::hw(mac), Standing::Registered, requested, res, now)
            .ok()
    }

    /// Chooses an address to offer `mac` and holds it for the offer time. A stranger gets none
    /// once strangers hold their share (unless it holds one already); a registered machine facing
    /// an exhausted range takes an address only offered to a stranger.
    pub fn offer_to(
        &mut self,
        who: Who,
        standing: Standing,
        requested: Option<Ipv4Addr>,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<Ipv4Addr, NoOffer> {
        let stranger = self.is_stranger(who.mac, standing, res);
        let holding = self
            .by_key
            .get(&who.key)
            .is_some_and(|ip| self.in_range(*ip) && self.holds(who.key, *ip, now));
        if stranger && !holding {
            if let Some(limit) = self.stranger_share_full(now) {
                return Err(NoOffer::StrangerShare { limit });
            }
        }
        let (pick, scanned) = match self.choose(who, requested, res, now) {
            Some(p) => p,
            None if !stranger => (self.offered_to_a_stranger(who.mac, res, now)?, false),
            None => return Err(NoOffer::Exhausted),
        };
        if stranger && !self.holds(who.key, pick, now) {
            self.strangers += 1;
        }
        if scanned {
            self.cursor = if pick >= self.last {
                self.first
            } else {
                pick + 1
            };
        }
        let bound_until = self
            .entries
            .get(&pick)
            .filter(|e| e.key == who.key && e.hold == Hold::Bound)
            .map(|e| e.until);
        let until = match bound_until {
            // Re-offering a live binding must not shorten it.
            Some(u) if u > now => u,
            _ => now.saturating_add(self.times.offer),
        };
        let hold = if bound_until.is_some_and(|u| u > now) {
            Hold::Bound
        } else {
            Hold::Offered
        };
        self.put(
            pick,
            Entry {
                key: who.key,
                mac: who.mac,
                hold,
                until,
                stranger,
            },
        );
        Ok(Ipv4Addr::from(pick))
    }

    /// A stranger with no reservation here (a reserved address is never limited).
    fn is_stranger(&self, mac: Mac, standing: Standing, res: &dyn Reservations) -> bool {
        standing == Standing::Stranger
            && res
                .reserved_for(mac)
                .filter(|r| self.contains(*r))
                .is_none()
    }

    /// An in-range address that is only offered (not bound) to a stranger, for a registered
    /// machine when nothing else is free. O(range), only when the range is exhausted.
    fn offered_to_a_stranger(
        &self,
        mac: Mac,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<u32, NoOffer> {
        self.entries
            .iter()
            .filter(|(ip, e)| {
                e.stranger
                    && e.hold == Hold::Offered
                    && e.until > now
                    && self.in_range(**ip)
                    && res.owner_of(Ipv4Addr::from(**ip)).is_none_or(|o| o == mac)
            })
            .map(|(ip, _)| *ip)
            .min()
            .ok_or(NoOffer::Exhausted)
    }

    /// The address to offer, and whether it came from the free-address search.
    /// A reservation another client still holds (an operator reserved an address in use) is
    /// not offered until that client's lease ends or it releases it: the reserved machine gets
    /// another address meanwhile (as Kea does), so no two hosts share one address.
    fn choose(
        &self,
        who: Who,
        requested: Option<Ipv4Addr>,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Option<(u32, bool)> {
        if let Some(r) = self.usable_reservation(who, res, now) {
            return Some((u32::from(r), false));
        }
        if let Some(&ip) = self.by_key.get(&who.key) {
            if self.in_range(ip) && self.free_for(ip, who, res, now) {
                return Some((ip, false));
            }
        }
        if let Some(r) = requested.map(u32::from) {
            if self.in_range(r) && self.free_for(r, who, res, now) {
                return Some((r, false));
            }
        }
        (self.cursor..=self.last)
            .chain(self.first..self.cursor)
            .find(|ip| self.free_for(*ip, who, res, now))
            .map(|ip| (ip, true))
    }

    /// `who`'s reservation in this subnet, unless another client holds it now, or it is the
    /// subnet's network or broadcast address (a typo no client can use).
    fn usable_reservation(
        &self,
        who: Who,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Option<Ipv4Addr> {
        res.reserved_for(who.mac).filter(|r| {
            self.contains(*r)
                && !self.is_network_or_broadcast(*r)
                && self.unheld_for(u32::from(*r), who, now)
        })
    }

    /// The subnet's own network and broadcast addresses (never a host's).
    pub fn is_network_or_broadcast(&self, ip: Ipv4Addr) -> bool {
        if self.prefix >= 31 || self.prefix == 0 {
            return false;
        }
        let host_bits = !(u32::MAX << (32 - self.prefix));
        let v = u32::from(ip) & host_bits;
        v == 0 || v == host_bits
    }

    /// A client now known by its MAC (`Hw` key) takes over any binding its MAC holds under a
    /// client identifier (it was a stranger when it leased; an operator has since registered it):
    /// the same client, so its renewal is its own.
    pub fn claim_by_mac(&mut self, mac: Mac) {
        let key = ClientKey::Hw(mac);
        if self.by_key.contains_key(&key) {
            return;
        }
        let found = self
            .entries
            .iter()
            .find(|(_, e)| e.mac == mac && e.key != key && e.hold != Hold::Quarantined)
            .map(|(ip, e)| (*ip, e.key));
        if let Some((ip, old)) = found {
            if let Some(e) = self.entries.get_mut(&ip) {
                e.key = key;
                e.stranger = false;
            }
            self.by_key.remove(&old);
            self.by_key.insert(key, ip);
        }
    }

    /// [`Pool::request_from`] for a registered machine.
    pub fn request(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<Lease, Refusal> {
        self.request_from(Who::hw(mac), Standing::Registered, ip, res, now)
    }

    /// Binds `ip` to `mac` for the lease time (DHCPREQUEST), or says why not (DHCPNAK). A
    /// stranger that does not hold `ip` already is refused while strangers hold their share.
    pub fn request_from(
        &mut self,
        who: Who,
        standing: Standing,
        ip: Ipv4Addr,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<Lease, Refusal> {
        if !self.contains(ip) {
            return Err(Refusal::WrongSubnet { ip });
        }
        let reservation = res.reserved_for(who.mac).filter(|r| self.contains(*r));
        if let Some(reserved) = self.usable_reservation(who, res, now) {
            if reserved != ip {
                return Err(Refusal::NotItsReservation { ip, reserved });
            }
        } else if let Some(owner) = res.owner_of(ip).filter(|o| *o != who.mac) {
            return Err(Refusal::ReservedForOther { ip, owner });
        } else if !self.in_range(u32::from(ip)) && reservation != Some(ip) {
            return Err(Refusal::OutsideRange { ip });
        }
        let key = u32::from(ip);
        if let Some(e) = self.entries.get(&key) {
            let live = e.until > now;
            if live && (e.key != who.key || e.hold == Hold::Quarantined) {
                return Err(Refusal::Taken { ip, holder: e.mac });
            }
        }
        let stranger = self.is_stranger(who.mac, standing, res);
        if stranger && !self.holds(who.key, key, now) {
            if let Some(limit) = self.stranger_share_full(now) {
                return Err(Refusal::StrangerShare { limit });
            }
            self.strangers += 1;
        }
        let expires = now.saturating_add(self.times.lease);
        self.put(
            key,
            Entry {
                key: who.key,
                mac: who.mac,
                hold: Hold::Bound,
                until: expires,
                stranger,
            },
        );
        Ok(Lease {
            ip,
            mac: who.mac,
            expires,
            hostname: None,
            observed: false,
            client_id: None,
        })
    }

    /// DHCPRELEASE from a client identified by its MAC: see [`Pool::release_from`].
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr) -> bool {
        self.release_from(Who::hw(mac), ip)
    }

    /// DHCPRELEASE (RFC 2131 §4.3.4): frees the address only if `who` holds it; anyone else's
    /// RELEASE changes nothing.
    pub fn release_from(&mut self, who: Who, ip: Ipv4Addr) -> bool {
        let key = u32::from(ip);
        if self
            .entries
            .get(&key)
            .is_some_and(|e| e.key == who.key && e.hold != Hold::Quarantined)
        {
            self.entries.remove(&key);
            self.by_key.remove(&who.key);
            return true;
        }
        false
    }

    /// Forgets an address only *offered* to `who` (it chose another server's offer: RFC 2131
    /// §4.3.2, SELECTING); a binding stays.
    pub fn withdraw_offer(&mut self, who: Who) {
        if let Some(&ip) = self.by_key.get(&who.key) {
            if self
                .entries
                .get(&ip)
                .is_some_and(|e| e.key == who.key && e.hold == Hold::Offered)
            {
                self.entries.remove(&ip);
                self.by_key.remove(&who.key);
            }
        }
    }

    /// Lets go of an address only *offered* to another client, so that `who`, which says it
    /// holds `ip` (a RENEWING or REBINDING client this server has no record of: another server
    /// sharing the store granted it), is not refused for a mere offer (RFC 2131 §4.3.1: an
    /// offer is no promise). Bindings and quarantines stay; the store's claim then decides.
    pub fn yield_offer(&mut self, ip: Ipv4Addr, who: Who) {
        let key = u32::from(ip);
        if let Some(e) = self
            .entries
            .get(&key)
            .filter(|e| e.key != who.key && e.hold == Hold::Offered)
            .copied()
        {
            self.entries.remove(&key);
            if self.by_key.get(&e.key) == Some(&key) {
                self.by_key.remove(&e.key);
            }
        }
    }

    /// DHCPDECLINE from a client identified by its MAC: see [`Pool::decline_from`].
    pub fn decline(&mut self, mac: Mac, ip: Ipv4Addr, now: Timestamp) -> bool {
        self.decline_from(Who::hw(mac), ip, now)
    }

    /// DHCPDECLINE (RFC 2131 §4.3.3): the client found `ip` in use; keep it out of the pool for
    /// a while. Only the client the address was offered or leased to may decline it (anyone
    /// else's DECLINE would knock the holder off the network); answers whether it was taken.
    pub fn decline_from(&mut self, who: Who, ip: Ipv4Addr, now: Timestamp) -> bool {
        let key = u32::from(ip);
        if !self.contains(ip) || !self.holds(who.key, key, now) {
            return false;
        }
        // A stranger's quarantine counts against the strangers' share: offers it can decline
        // one by one cannot take the registered machines' part of the range.
        let stranger = self.entries.get(&key).is_some_and(|e| e.stranger);
        self.by_key.remove(&who.key);
        self.entries.insert(
            key,
            Entry {
                key: who.key,
                mac: who.mac,
                hold: Hold::Quarantined,
                until: now.saturating_add(self.times.quarantine),
                stranger,
            },
        );
        true
    }

    /// (addresses of the range held now — offered, bound or quarantined —, size of the range),
    /// for the utilization metric.
    pub fn utilization(&self, now: Timestamp) -> (usize, usize) {
        let used = self
            .entries
            .iter()
            .filter(|(ip, e)| self.in_range(**ip) && e.until > now)
            .count();
        (used, (self.last - self.first + 1) as usize)
    }

    /// Drops expired entries so memory stays bounded by the range (called periodically).
    pub fn sweep(&mut self, now: Timestamp) {
        self.entries.retain(|_, e| e.until > now);
        let entries = &self.entries;
        self.by_key
            .retain(|key, ip| entries.get(ip).is_some_and(|e| e.key == *key));
    }
}

/// Bytes of a lowercase hex string (stored client identifiers).
fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
