//! One subnet's dynamic range: who holds which address until when. A plain type with time as
//! input; the server keeps it in memory and writes every binding through to the store before it
//! acknowledges (RFC 2131 §4.3.1).
//!
//! Allocation order for a DISCOVER: the machine's reservation; else the address it already holds
//! (sticky, even expired); else the address it asks for (option 50) if free; else the first free
//! address of the range. Offers hold an address briefly; DECLINEd addresses are quarantined; expired
//! bindings are reclaimed lazily.

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
}

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
        };
        assert!(
            p.contains(first) && p.contains(last) && p.first <= p.last,
            "range outside subnet"
        );
        p
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
    /// observed, are skipped).
    pub fn restore(&mut self, leases: &[Lease], now: Timestamp) {
        for l in leases {
            if l.is_active(now) && !l.observed && self.contains(l.ip) {
                self.put(
                    u32::from(l.ip),
                    Entry {
                        mac: l.mac,
                        hold: Hold::Bound,
                        until: l.expires,
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

    /// Chooses an address to offer `mac` and holds it for the offer time; `None` when the pool is
    /// exhausted.
    pub fn offer(
        &mut self,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        res: &dyn Reservations,
        now: Timestamp,
    ) -> Option<Ipv4Addr> {
        let (pick, scanned) = self.choose(mac, requested, res, now)?;
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
        self.put(pick, Entry { mac, hold, until });
        Some(Ipv4Addr::from(pick))
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

    /// Binds `ip` to `mac` for the lease time (DHCPREQUEST), or says why not (DHCPNAK).
    pub fn request(
        &mut self,
        mac: Mac,
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
        let expires = now.saturating_add(self.times.lease);
        self.put(
            key,
            Entry {
                mac,
                hold: Hold::Bound,
                until: expires,
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
