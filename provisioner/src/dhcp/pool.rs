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
    mac: Mac,
    hold: Hold,
    until: Timestamp,
    /// Held by a client the inventory does not vouch for (counts against the stranger share).
    stranger: bool,
}

/// Whether the inventory vouches for a client: a machine of the inventory past `discovered`, or a
/// stranger (not in the inventory, or `discovered` and waiting for an operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Registered,
    Stranger,
}

/// Why a DISCOVER gets no offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoOffer {
    /// Every address of the range is held.
    Exhausted,
    /// Strangers hold their whole share (`limit` addresses) of the range.
    StrangerShare { limit: usize },
}

/// How often (milliseconds) the count of stranger holdings is taken again when it says "full":
/// between counts it only grows, so it errs on the side of the registered machines.
const STRANGER_RECOUNT_MS: u64 = 1_000;

/// Timers of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolTimes {
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
    #[error("{ip} is not in this subnet")]
    WrongSubnet { ip: Ipv4Addr },
    #[error("{ip} is held by {holder}")]
    Taken { ip: Ipv4Addr, holder: Mac },
    #[error("{ip} is reserved for {owner}")]
    ReservedForOther { ip: Ipv4Addr, owner: Mac },
    #[error("this machine is reserved {reserved}, not {ip}")]
    NotItsReservation { ip: Ipv4Addr, reserved: Ipv4Addr },
    #[error("{ip} is outside the dynamic range and not reserved for this machine")]
    OutsideRange { ip: Ipv4Addr },
    #[error("machines not registered hold their whole share ({limit} addresses) of the range")]
    StrangerShare { limit: usize },
}

pub struct Pool {
    network: Ipv4Addr,
    prefix: u8,
    first: u32,
    last: u32,
    times: PoolTimes,
    entries: HashMap<u32, Entry>,
    by_mac: HashMap<Mac, u32>,
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
    fn owner_of(&self, ip: Ipv4Addr) -> Option<Mac>;
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
            by_mac: HashMap::new(),
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
                .filter(|(ip, e)| {
                    e.stranger
                        && e.hold != Hold::Quarantined
                        && e.until > now
                        && self.in_range(**ip)
                })
                .count();
            self.strangers_counted = Some(now);
        }
        (self.strangers >= limit).then_some(limit)
    }

    /// Whether `mac` holds `ip` now (offered or bound, not expired).
    fn holds(&self, mac: Mac, ip: u32, now: Timestamp) -> bool {
        self.entries
            .get(&ip)
            .is_some_and(|e| e.mac == mac && e.hold != Hold::Quarantined && e.until > now)
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

    fn in_range(&self, ip: u32) -> bool {
        (self.first..=self.last).contains(&ip)
    }

    /// Loads bindings from the store at startup (expired ones, and bindings proxy mode only
    /// observed, are skipped); `stranger` says which holders the inventory does not vouch for.
    pub fn restore(&mut self, leases: &[Lease], now: Timestamp, stranger: &dyn Fn(Mac) -> bool) {
        for l in leases {
            if l.is_active(now) && !l.observed && self.contains(l.ip) {
                let stranger = stranger(l.mac);
                self.strangers += usize::from(stranger);
                self.put(
                    u32::from(l.ip),
                    Entry {
                        mac: l.mac,
                        hold: Hold::Bound,
                        until: l.expires,
                        stranger,
                    },
                );
            }
        }
    }

    fn put(&mut self, ip: u32, e: Entry) {
        // The address may pass from another MAC: forget that MAC's claim on it, so `by_mac` never
        // holds more entries than `entries` (no growth under a storm of new MACs).
        if let Some(prev) = self.entries.get(&ip).map(|p| p.mac).filter(|m| *m != e.mac) {
            if self.by_mac.get(&prev) == Some(&ip) {
                self.by_mac.remove(&prev);
            }
        }
        if let Some(old) = self.by_mac.insert(e.mac, ip) {
            if old != ip
                && self
                    .entries
                    .get(&old)
                    .is_some_and(|o| o.mac == e.mac && o.hold != Hold::Quarantined)
            {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(ip, e);
    }

    /// Free for `mac`: nobody else holds it now, and it is not reserved for someone else.
    fn free_for(&self, ip: u32, mac: Mac, res: &dyn Reservations, now: Timestamp) -> bool {
        if res.owner_of(Ipv4Addr::from(ip)).is_some_and(|o| o != mac) {
            return false;
        }
        match self.entries.get(&ip) {
            None => true,
            Some(e) if e.hold == Hold::Quarantined => e.until <= now,
            Some(e) => e.mac == mac || e.until <= now,
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
        self.offer_to(mac, Standing::Registered, requested, res, now)
            .ok()
    }

    /// Chooses an address to offer `mac` and holds it for the offer time. A stranger gets none
    /// once strangers hold their share (unless it holds one already); a registered machine facing
    /// an exhausted range takes an address only offered to a stranger.
    pub fn offer_to(
        &mut self,
        mac: Mac,
        standing: Standing,
        requested: Option<Ipv4Addr>,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<Ipv4Addr, NoOffer> {
        let stranger = self.is_stranger(mac, standing, res);
        let holding = self
            .by_mac
            .get(&mac)
            .is_some_and(|ip| self.in_range(*ip) && self.holds(mac, *ip, now));
        if stranger && !holding {
            if let Some(limit) = self.stranger_share_full(now) {
                return Err(NoOffer::StrangerShare { limit });
            }
        }
        let (pick, scanned) = match self.choose(mac, requested, res, now) {
            Some(p) => p,
            None if !stranger => (self.offered_to_a_stranger(mac, res, now)?, false),
            None => return Err(NoOffer::Exhausted),
        };
        if stranger && !self.holds(mac, pick, now) {
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
            .filter(|e| e.mac == mac && e.hold == Hold::Bound)
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
                mac,
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
    fn choose(
        &self,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Option<(u32, bool)> {
        if let Some(r) = res.reserved_for(mac).filter(|r| self.contains(*r)) {
            return Some((u32::from(r), false));
        }
        if let Some(&ip) = self.by_mac.get(&mac) {
            if self.in_range(ip) && self.free_for(ip, mac, res, now) {
                return Some((ip, false));
            }
        }
        if let Some(r) = requested.map(u32::from) {
            if self.in_range(r) && self.free_for(r, mac, res, now) {
                return Some((r, false));
            }
        }
        (self.cursor..=self.last)
            .chain(self.first..self.cursor)
            .find(|ip| self.free_for(*ip, mac, res, now))
            .map(|ip| (ip, true))
    }

    /// [`Pool::request_from`] for a registered machine.
    pub fn request(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<Lease, Refusal> {
        self.request_from(mac, Standing::Registered, ip, res, now)
    }

    /// Binds `ip` to `mac` for the lease time (DHCPREQUEST), or says why not (DHCPNAK). A
    /// stranger that does not hold `ip` already is refused while strangers hold their share.
    pub fn request_from(
        &mut self,
        mac: Mac,
        standing: Standing,
        ip: Ipv4Addr,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Result<Lease, Refusal> {
        if !self.contains(ip) {
            return Err(Refusal::WrongSubnet { ip });
        }
        if let Some(reserved) = res.reserved_for(mac).filter(|r| self.contains(*r)) {
            if reserved != ip {
                return Err(Refusal::NotItsReservation { ip, reserved });
            }
        } else if let Some(owner) = res.owner_of(ip).filter(|o| *o != mac) {
            return Err(Refusal::ReservedForOther { ip, owner });
        } else if !self.in_range(u32::from(ip)) {
            return Err(Refusal::OutsideRange { ip });
        }
        let key = u32::from(ip);
        if let Some(e) = self.entries.get(&key) {
            let live = e.until > now;
            if live && (e.mac != mac || e.hold == Hold::Quarantined) {
                return Err(Refusal::Taken { ip, holder: e.mac });
            }
        }
        let stranger = self.is_stranger(mac, standing, res);
        if stranger && !self.holds(mac, key, now) {
            if let Some(limit) = self.stranger_share_full(now) {
                return Err(Refusal::StrangerShare { limit });
            }
            self.strangers += 1;
        }
        let expires = now.saturating_add(self.times.lease);
        self.put(
            key,
            Entry {
                mac,
                hold: Hold::Bound,
                until: expires,
                stranger,
            },
        );
        Ok(Lease {
            ip,
            mac,
            expires,
            hostname: None,
            observed: false,
        })
    }

    /// DHCPRELEASE: frees the address if `mac` holds it.
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr) -> bool {
        let key = u32::from(ip);
        if self
            .entries
            .get(&key)
            .is_some_and(|e| e.mac == mac && e.hold != Hold::Quarantined)
        {
            self.entries.remove(&key);
            self.by_mac.remove(&mac);
            return true;
        }
        false
    }

    /// DHCPDECLINE: the client found the address in use; keep it out of the pool for a while.
    pub fn decline(&mut self, mac: Mac, ip: Ipv4Addr, now: Timestamp) {
        let key = u32::from(ip);
        if !self.contains(ip) {
            return;
        }
        self.by_mac.remove(&mac);
        self.entries.insert(
            key,
            Entry {
                mac,
                hold: Hold::Quarantined,
                until: now.saturating_add(self.times.quarantine),
                stranger: false,
            },
        );
    }

    /// (addresses bound or offered now, size of the dynamic range), for the utilization metric.
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
        self.by_mac
            .retain(|mac, ip| entries.get(ip).is_some_and(|e| e.mac == *mac));
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
