//! DHCP leases: which address a MAC holds until when. The DHCP server keeps them in memory and
//! writes them through to the store before it sends an ACK (RFC 2131 §4.3.1).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{Mac, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub expires: Timestamp,
    /// Host name the client sent (option 12), for the operator's eyes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl Lease {
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires > now
    }
}
