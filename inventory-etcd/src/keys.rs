//! The key layout under the configured prefix `P` (values are the records' JSON unless said):
//!
//! | key | value |
//! | --- | --- |
//! | `P/m/<mac>` | a machine (`aa:bb:…`: byte order is MAC order) |
//! | `P/res/<ip as 8 hex digits>` | the MAC the address is reserved for |
//! | `P/uuid/<uuid>` | the MAC holding that SMBIOS UUID |
//! | `P/mid/<hex of machine-id>/<mac>` | empty: machine-id index |
//! | `P/p/<name>` | a profile |
//! | `P/ev/<seq, 20 digits>` | an event |
//! | `P/evseq` | the last event sequence number (decimal) |
//! | `P/l/<ip as 8 hex digits>` | a lease |
//! | `P/l6/<ip as 32 hex digits>` | a DHCPv6 lease (or a declined address's quarantine) |
//! | `P/l6c/<duid hex>/<iaid as 8 hex digits>` | the IPv6 address last granted to that IA (text) |
//! | `P/t/<sha-256 hex>` | a token record |
//! | `P/log/<mac>/<seq, 20 digits>` | a log line |
//! | `P/logseq/<mac>` | the machine's last log sequence number (decimal) |
//! | `P/secret/<name>` | a shared server secret (raw bytes), e.g. the machine-token key |
//! | `P/asset/<sha-256 hex>` | a boot asset's catalogue record (the provisioner's JSON) |
//!
//! Fixed-width numbers keep etcd's byte order equal to numeric order, so range reads come back
//! sorted as the `Store` contract wants.

use std::net::{Ipv4Addr, Ipv6Addr};

use inventory::Mac;

/// Builds keys under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    /// The configured prefix, ending with `/`.
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (a `/` is added when it does not end with one).
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> Vec<u8> {
        format!("{}{rest}", self.prefix).into_bytes()
    }

    /// A machine record.
    pub fn machine(&self, mac: Mac) -> Vec<u8> {
        self.key(format_args!("m/{mac}"))
    }
    /// The reservation of an address.
    pub fn reservation(&self, ip: Ipv4Addr) -> Vec<u8> {
        self.key(format_args!("res/{:08x}", u32::from(ip)))
    }
    /// The UUID index entry.
    pub fn uuid(&self, uuid: &str) -> Vec<u8> {
        self.key(format_args!("uuid/{uuid}"))
    }
    /// The machine-id index entries of one id (a prefix).
    pub fn machine_ids(&self, id: &str) -> Vec<u8> {
        self.key(format_args!("mid/{}/", hex(id.as_bytes())))
    }
    /// One machine-id index entry.
    pub fn machine_id(&self, id: &str, mac: Mac) -> Vec<u8> {
        let mut k = self.machine_ids(id);
        k.extend_from_slice(mac.to_string().as_bytes());
        k
    }
    /// A profile.
    pub fn profile(&self, name: &str) -> Vec<u8> {
        self.key(format_args!("p/{name}"))
    }
    /// An event.
    pub fn event(&self, seq: u64) -> Vec<u8> {
        self.key(format_args!("ev/{seq:020}"))
    }
    /// The event counter.
    pub fn event_seq(&self) -> Vec<u8> {
        self.key(format_args!("evseq"))
    }
    /// A lease.
    pub fn lease(&self, ip: Ipv4Addr) -> Vec<u8> {
        self.key(format_args!("l/{:08x}", u32::from(ip)))
    }
    /// The address last granted to a MAC (an index; [`Self::lease`] of it says whether it
    /// still binds that MAC).
    pub fn lease_of_mac(&self, mac: Mac) -> Vec<u8> {
        self.key(format_args!("lmac/{mac}"))
    }
    /// A DHCPv6 lease.
    pub fn lease6(&self, ip: Ipv6Addr) -> Vec<u8> {
        self.key(format_args!("l6/{:032x}", u128::from(ip)))
    }
    /// The IPv6 address last granted to one client's IA (an index; [`Self::lease6`] of it says
    /// whether it still binds that IA).
    pub fn lease6_of_client(&self, duid: &str, iaid: u32) -> Vec<u8> {
        self.key(format_args!("l6c/{duid}/{iaid:08x}"))
    }
    /// A token record.
    pub fn token(&self, hash: &str) -> Vec<u8> {
        self.key(format_args!("t/{hash}"))
    }
    /// A log line.
    pub fn log(&self, mac: Mac, seq: u64) -> Vec<u8> {
        self.key(format_args!("log/{mac}/{seq:020}"))
    }
    /// Every log line of one machine (a prefix).
    pub fn log_prefix(&self, mac: Mac) -> Vec<u8> {
        self.key(format_args!("log/{mac}/"))
    }
    /// A machine's log counter.
    pub fn log_seq(&self, mac: Mac) -> Vec<u8> {
        self.key(format_args!("logseq/{mac}"))
    }
    /// A shared secret.
    pub fn secret(&self, name: &str) -> Vec<u8> {
        self.key(format_args!("secret/{name}"))
    }
    /// A boot asset's catalogue record.
    pub fn asset(&self, hex: &str) -> Vec<u8> {
        self.key(format_args!("asset/{hex}"))
    }
    /// A table: every key starting with `P/<name>/`.
    pub fn table(&self, name: &str) -> Vec<u8> {
        self.key(format_args!("{name}/"))
    }
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix end": the prefix with
/// its last byte incremented).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_as_bytes() {
        let k = Keys::new("/p");
        assert_eq!(k.event(7), b"/p/ev/00000000000000000007");
        assert!(k.event(9) < k.event(10));
        let (a, b) = (
            "198.18.0.9".parse().unwrap(),
            "198.18.0.10".parse().unwrap(),
        );
        assert!(k.lease(a) < k.lease(b));
        assert_eq!(prefix_end(b"/p/ev/"), b"/p/ev0");
        assert_eq!(k.machine_ids("a/b"), b"/p/mid/612f62/");
    }
}
