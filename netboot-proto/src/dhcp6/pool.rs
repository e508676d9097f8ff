//! One DHCPv6 address range and its bindings (RFC 8415 §6.2 IA_NA), in memory; the store holds
//! the durable copy ([`inventory::Lease6`]) and [`Pool6::restore`] reloads it at start.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;

use inventory::{Lease6, Timestamp};
use sha2::{Digest, Sha256};

/// At most this many addresses are probed for a free one per allocation (bounded work per
/// packet, whatever the size of the range).
const MAX_PROBES: u128 = 4096;

/// A range of addresses and who holds which.
#[derive(Clone, Debug)]
pub struct Pool6 {
    /// First address of the range.
    first: u128,
    /// Last address of the range (inclusive).
    last: u128,
    /// Bindings by address (granted leases; expired ones are free for others).
    bindings: BTreeMap<Ipv6Addr, Lease6>,
    /// (DUID, IAID) → its address, so a client asking again gets the same one.
    by_client: HashMap<(String, u32), Ipv6Addr>,
    /// Addresses a client declined (another host uses them), until when they stay unused.
    declined: BTreeMap<Ipv6Addr, Timestamp>,
    /// Addresses reserved for machines by MAC: never given to anyone else.
    reserved: BTreeSet<Ipv6Addr>,
}

impl Pool6 {
    /// A pool over `first..=last`, never handing out `reserved` dynamically.
    pub fn new(first: Ipv6Addr, last: Ipv6Addr, reserved: BTreeSet<Ipv6Addr>) -> Pool6 {
        Pool6 {
            first: first.into(),
            last: last.into(),
            bindings: BTreeMap::new(),
            by_client: HashMap::new(),
            declined: BTreeMap::new(),
            reserved,
        }
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        (self.first..=self.last).contains(&u128::from(ip))
    }

    /// Loads stored leases (active ones; expired ones are left free), quarantines included.
    pub fn restore(&mut self, leases: &[Lease6], now: Timestamp) {
        for l in leases.iter().filter(|l| l.is_active(now)) {
            self.bind(l.clone());
        }
    }

    /// Records a binding (after the core decided to Reply with it), or a quarantine when the
    /// lease is `declined`: also what another server sharing the store bound (a refused claim).
    pub fn bind(&mut self, lease: Lease6) {
        if lease.declined {
            self.decline(lease.ip, lease.expires);
            return;
        }
        if let Some(old) = self.bindings.get(&lease.ip) {
            if !old.same_client(&lease) {
                self.by_client.remove(&(old.duid.clone(), old.iaid));
            }
        }
        self.declined.remove(&lease.ip);
        if let Some(old) = self.by_client.get(&(lease.duid.clone(), lease.iaid)) {
            if *old != lease.ip {
                self.bindings.remove(&old.clone());
            }
        }
        self.by_client
            .insert((lease.duid.clone(), lease.iaid), lease.ip);
        self.bindings.insert(lease.ip, lease);
    }

    /// Forgets the binding of `ip` (Release).
    pub fn release(&mut self, ip: Ipv6Addr) -> Option<Lease6> {
        let l = self.bindings.remove(&ip)?;
        self.by_client.remove(&(l.duid.clone(), l.iaid));
        Some(l)
    }

    /// Keeps `ip` out of use until `until` (Decline: another host answers on it).
    pub fn decline(&mut self, ip: Ipv6Addr, until: Timestamp) {
        self.release(ip);
        self.declined.insert(ip, until);
    }

    /// The address of (DUID, IAID)'s binding active at `now`, if any (Renew, Rebind).
    pub fn bound_to(&self, duid: &str, iaid: u32, now: Timestamp) -> Option<Ipv6Addr> {
        let ip = self.by_client.get(&(duid.to_string(), iaid))?;
        self.bindings
            .get(ip)
            .filter(|l| l.is_active(now) && l.duid == duid && l.iaid == iaid)
            .map(|l| l.ip)
    }

    /// Whether `ip` is quarantined at `now` (declined).
    pub fn is_declined(&self, ip: Ipv6Addr, now: Timestamp) -> bool {
        self.declined.get(&ip).is_some_and(|t| *t > now)
    }

    /// The binding of `ip`, if any (active or not).
    pub fn binding(&self, ip: Ipv6Addr) -> Option<&Lease6> {
        self.bindings.get(&ip)
    }

    fn free_for(&self, ip: Ipv6Addr, duid: &str, iaid: u32, now: Timestamp) -> bool {
        if self.is_declined(ip, now) || self.reserved.contains(&ip) {
            return false;
        }
        match self.bindings.get(&ip) {
            Some(l) => !l.is_active(now) || (l.duid == duid && l.iaid == iaid),
            None => true,
        }
    }

    /// The address for (DUID, IAID) of machine `mac`: the reserved one when given (free, or held
    /// by another DUID of the same MAC: the firmware's DUID-UUID after the OS's DUID-LLT is the
    /// same machine, and its reservation follows it), else the client's active binding, else `hint` when it is in the range and free, else the first free address from
    /// a start point hashed from the client (so clients spread over the range), probing at most
    /// [`MAX_PROBES`] addresses. `None`: no address found (the reply says NoAddrsAvail).
    pub fn pick(
        &self,
        duid: &str,
        iaid: u32,
        mac: Option<inventory::Mac>,
        reserved: Option<Ipv6Addr>,
        hint: Option<Ipv6Addr>,
        now: Timestamp,
    ) -> Option<Ipv6Addr> {
        if let Some(r) = reserved {
            let held = self.bindings.get(&r).is_some_and(|l| {
                l.is_active(now) && l.duid != duid && (mac.is_none() || l.mac != mac)
            });
            return (!held && !self.is_declined(r, now)).then_some(r);
        }
        if let Some(ip) = self.by_client.get(&(duid.to_string(), iaid)) {
            if self.free_for(*ip, duid, iaid, now) {
                return Some(*ip);
            }
        }
        if let Some(h) = hint.filter(|h| self.contains(*h)) {
            if self.free_for(h, duid, iaid, now) {
                return Some(h);
            }
        }
        let size = self.last - self.first + 1;
        let digest = Sha256::new()
            .chain_update(duid.as_bytes())
            .chain_update(iaid.to_be_bytes())
            .finalize();
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&digest[..16]);
        let start = u128::from_be_bytes(seed) % size;
        (0..size.min(MAX_PROBES))
            .map(|i| Ipv6Addr::from(self.first + (start + i) % size))
            .find(|ip| self.free_for(*ip, duid, iaid, now))
    }
}
