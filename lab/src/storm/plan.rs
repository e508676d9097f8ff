//! Who the simulated machines are and where they sit: MACs, SMBIOS UUIDs, racks, relay
//! addresses and the DHCP ranges a server must offer them.
//!
//! A rack is what one top-of-rack switch serves: in relayed mode each rack is its own /26 in
//! 198.19.0.0/16 (61 usable addresses, the switch's relay agent at `.1` as giaddr), up to
//! 1024 racks; in full mode every machine is on the server's own link (one /15, one broadcast
//! domain) and the range is 198.19.0.10–198.19.127.254.

use std::net::Ipv4Addr;

/// Most machines one storm simulates (memory, descriptors and the address plan allow it).
pub const MAX_MACHINES: usize = 20_000;
/// Addresses per rack subnet (a /26).
const RACK_BLOCK: u32 = 64;
/// First address of the machines' /16.
const BASE: u32 = u32::from_be_bytes([198, 19, 0, 0]);

/// The full-mode range (inclusive), on the server's link 198.18.0.0/15.
pub const FULL_RANGE: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(198, 19, 0, 10),
    Ipv4Addr::new(198, 19, 127, 254),
);

#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub machines: usize,
    /// Relayed mode: requests come through one relay agent per rack (giaddr set).
    pub relayed: bool,
    /// Machines per rack (relayed mode), at most 60.
    pub rack_size: usize,
}

/// One rack's subnet.
#[derive(Clone, Copy, Debug)]
pub struct Rack {
    pub network: Ipv4Addr,
    /// The relay agent's address (the rack's router), `.1` of the subnet.
    pub giaddr: Ipv4Addr,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

/// Racks in relayed mode at most: /26 subnets in the machines' 198.19.0.0/16.
pub const MAX_RACKS: usize = 1024;

impl Plan {
    /// Checks the bounds: N in 1..=20,000, rack size in 1..=60, and in relayed mode at most
    /// [`MAX_RACKS`] racks (each a /26 of 198.19.0.0/16).
    pub fn new(machines: usize, relayed: bool, rack_size: usize) -> anyhow::Result<Plan> {
        anyhow::ensure!(
            (1..=MAX_MACHINES).contains(&machines),
            "--machines {machines}: between 1 and {MAX_MACHINES}"
        );
        anyhow::ensure!(
            (1..=60).contains(&rack_size),
            "--rack-size {rack_size}: between 1 and 60 (a rack is a /26)"
        );
        let racks = machines.div_ceil(rack_size);
        anyhow::ensure!(
            !relayed || racks <= MAX_RACKS,
            "--machines {machines} with --rack-size {rack_size} make {racks} racks; relayed mode \
             has at most {MAX_RACKS} (a /26 each in 198.19.0.0/16): use --rack-size {} or more",
            machines.div_ceil(MAX_RACKS)
        );
        Ok(Plan {
            machines,
            relayed,
            rack_size,
        })
    }

    /// Machine `i`'s MAC: locally administered, the index in the last three octets.
    pub fn mac(i: usize) -> [u8; 6] {
        [0x02, 0x5a, 0x00, (i >> 16) as u8, (i >> 8) as u8, i as u8]
    }

    /// `aa:bb:…` text of [`Plan::mac`].
    pub fn mac_text(i: usize) -> String {
        Self::mac(i)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The machine index a reply's chaddr names, if it is one of ours.
    pub fn index_of(chaddr: &[u8]) -> Option<usize> {
        match chaddr {
            [0x02, 0x5a, 0x00, a, b, c, ..] => {
                Some((*a as usize) << 16 | (*b as usize) << 8 | *c as usize)
            }
            _ => None,
        }
    }

    /// Machine `i`'s SMBIOS UUID bytes (as option 97 carries them after its type byte).
    pub fn uuid(i: usize) -> [u8; 16] {
        let mut u = [0u8; 16];
        u[..4].copy_from_slice(&0x5a57_0000u32.to_le_bytes());
        u[12..16].copy_from_slice(&(i as u32).to_be_bytes());
        u
    }

    pub fn racks(&self) -> usize {
        self.machines.div_ceil(self.rack_size)
    }

    pub fn rack_of(&self, i: usize) -> usize {
        i / self.rack_size
    }

    pub fn rack(&self, r: usize) -> Rack {
        let net = BASE + r as u32 * RACK_BLOCK;
        Rack {
            network: Ipv4Addr::from(net),
            giaddr: Ipv4Addr::from(net + 1),
            first: Ipv4Addr::from(net + 2),
            last: Ipv4Addr::from(net + RACK_BLOCK - 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_racks_round_trip() {
        for i in [0, 1, 255, 256, 19_999] {
            assert_eq!(Plan::index_of(&Plan::mac(i)), Some(i));
        }
        let p = Plan::new(20_000, true, 20).unwrap();
        assert_eq!(p.racks(), 1000);
        let last = p.rack(999);
        assert_eq!(last.network, Ipv4Addr::new(198, 19, 249, 192));
        assert_eq!(last.giaddr, Ipv4Addr::new(198, 19, 249, 193));
        assert_eq!(last.last, Ipv4Addr::new(198, 19, 249, 254));
        assert!(Plan::new(20_001, false, 40).is_err());
    }

    #[test]
    fn relayed_mode_refuses_more_racks_than_the_address_plan_holds() {
        assert!(Plan::new(1024, true, 1).is_ok());
        let e = Plan::new(1100, true, 1).unwrap_err().to_string();
        assert!(
            e.contains("1100 racks") && e.contains("--rack-size 2"),
            "{e}"
        );
        assert!(Plan::new(20_000, true, 19).is_err());
        assert!(Plan::new(20_000, true, 20).is_ok());
        assert!(
            Plan::new(20_000, false, 1).is_ok(),
            "full mode has no racks"
        );
    }
}
