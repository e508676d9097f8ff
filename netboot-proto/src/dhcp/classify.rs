//! Who is asking: the boot stage (PXE firmware, UEFI HTTP boot, iPXE, or an ordinary client) and
//! the architecture, from the options of a request. See `docs/pxe-reference.md` in shared/.
//!
//! Option 93 (RFC 4578, with the IANA errata): 7 **and 9** are x86-64 UEFI (older firmware sends
//! 9; dhcproto once mapped it to "EFI BC"), 16/19 are UEFI HTTP boot, 0 is BIOS.

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use inventory::Mac;

/// The firmware family, from option 93.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// 0: x86 BIOS (legacy PXE ROM).
    Bios,
    /// 6: 32-bit x86 UEFI.
    EfiIa32,
    /// 7, or 9 from older firmware: x86-64 UEFI.
    EfiX64,
    /// 10: 32-bit ARM UEFI.
    EfiArm32,
    /// 11: 64-bit ARM UEFI.
    EfiArm64,
    /// 15: 32-bit x86 UEFI HTTP boot.
    HttpIa32,
    /// 16: x86-64 UEFI HTTP boot.
    HttpX64,
    /// 18: 32-bit ARM UEFI HTTP boot.
    HttpArm32,
    /// 19: 64-bit ARM UEFI HTTP boot.
    HttpArm64,
    /// 41: Raspberry Pi boot ROM.
    RpiBoot,
    /// Any other code, kept as sent.
    Other(u16),
}

impl Firmware {
    /// The family of an option 93 architecture code; unknown codes are [`Firmware::Other`].
    pub fn from_arch(code: u16) -> Self {
        match code {
            0 => Firmware::Bios,
            6 => Firmware::EfiIa32,
            7 | 9 => Firmware::EfiX64,
            10 => Firmware::EfiArm32,
            11 => Firmware::EfiArm64,
            15 => Firmware::HttpIa32,
            16 => Firmware::HttpX64,
            18 => Firmware::HttpArm32,
            19 => Firmware::HttpArm64,
            41 => Firmware::RpiBoot,
            n => Firmware::Other(n),
        }
    }

    /// Whether it is UEFI HTTP boot (codes 15, 16, 18, 19): it takes an `http://` URL, not TFTP.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Firmware::HttpIa32 | Firmware::HttpX64 | Firmware::HttpArm32 | Firmware::HttpArm64
        )
    }

    /// `efi` or `pcbios`, as iPXE's `${platform}` says.
    pub fn platform(self) -> &'static str {
        match self {
            Firmware::Bios => "pcbios",
            _ => "efi",
        }
    }
}

/// Where in the boot chain the client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Firmware PXE (option 60 `PXEClient…`, or `HW-Client…` from some NICs): wants a TFTP loader.
    Pxe,
    /// UEFI HTTP boot (option 60 `HTTPClient…`): wants an `http://` URL of an EFI file.
    HttpBoot,
    /// iPXE (option 77 `iPXE` or option 175 present): wants the URL of its script.
    Ipxe,
    /// Anything else (an installed OS, a udhcpc in an initramfs): an address only.
    Plain,
}

/// What a request says about its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// `chaddr`, the first 6 bytes (only Ethernet, `hlen` 6, is accepted).
    pub mac: Mac,
    /// Where in the boot chain it is, from options 77, 175 and 60.
    pub stage: Stage,
    /// Option 93, first entry.
    pub arch: Option<u16>,
    /// [`Firmware::from_arch`] of `arch`.
    pub firmware: Option<Firmware>,
    /// Option 60 as text (lossy).
    pub vendor_class: Option<String>,
    /// Option 97 as an SMBIOS UUID, when the client sent one (Intel NICs often do not).
    pub uuid: Option<String>,
    /// Option 82 from the relay agent (RFC 3046), when relayed with one.
    pub relay: Option<RelayAgent>,
}

/// What a relay agent said about where the client is (option 82).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayAgent {
    /// Sub-option 1: usually the switch port.
    pub circuit_id: Option<String>,
    /// Sub-option 2: usually the switch.
    pub remote_id: Option<String>,
    /// Sub-option 5 (RFC 3527): the subnet to serve, when it differs from giaddr's.
    pub link_selection: Option<std::net::Ipv4Addr>,
}

/// Printable text as is; anything else as hex (circuit ids are often binary).
fn id_text(v: &[u8]) -> String {
    if !v.is_empty() && v.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(v).into_owned()
    } else {
        v.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn relay_agent(opts: &dhcproto::v4::DhcpOptions) -> Option<RelayAgent> {
    use dhcproto::v4::relay::{RelayCode, RelayInfo};
    let Some(DhcpOption::RelayAgentInformation(info)) = opts.get(OptionCode::RelayAgentInformation)
    else {
        return None;
    };
    let mut r = RelayAgent::default();
    if let Some(RelayInfo::AgentCircuitId(v)) = info.get(RelayCode::AgentCircuitId) {
        r.circuit_id = Some(id_text(v));
    }
    if let Some(RelayInfo::AgentRemoteId(v)) = info.get(RelayCode::AgentRemoteId) {
        r.remote_id = Some(id_text(v));
    }
    if let Some(RelayInfo::LinkSelection(ip)) = info.get(RelayCode::LinkSelection) {
        r.link_selection = Some(*ip);
    }
    Some(r)
}

/// Why a request cannot be classified (it is then dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// `hlen` (the byte count it gave) is not 6: not an Ethernet MAC, so no machine identity.
    #[error("hardware address of {0} bytes is not an Ethernet MAC")]
    NotEthernet(usize),
}

/// iPXE's encapsulated options (RFC-less, iPXE's own).
const IPXE_ENCAP: u8 = 175;

/// Reads the sender's MAC, boot [`Stage`], option 93 architecture, option 60, option 97 UUID and
/// option 82 relay information from a request. iPXE (option 77 containing `iPXE`, or option 175)
/// wins over option 60; then `HTTPClient`, then `PXEClient`/`HW-Client`; anything else is
/// [`Stage::Plain`]. A malformed option 97 (not type 0 and 16 bytes, RFC 4578 §2.3) or an all-zero
/// or all-ones GUID gives no UUID.
///
/// # Errors
/// [`ClassifyError::NotEthernet`] when `hlen` is not 6 (checked before `chaddr` is read).
pub fn classify(msg: &Message) -> Result<Client, ClassifyError> {
    // hlen first: dhcproto's chaddr() slices by the sender's hlen and panics past 16.
    if msg.hlen() != 6 {
        return Err(ClassifyError::NotEthernet(msg.hlen() as usize));
    }
    let ch = msg.chaddr();
    let mac = Mac::new([ch[0], ch[1], ch[2], ch[3], ch[4], ch[5]]);
    let opts = msg.opts();
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(String::from_utf8_lossy(v).into_owned()),
        _ => None,
    };
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let user_class_ipxe = match opts.get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(v)) => v.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    let ipxe = user_class_ipxe || opts.get(OptionCode::Unknown(IPXE_ENCAP)).is_some();
    let vc = vendor_class.as_deref().unwrap_or("");
    let stage = if ipxe {
        Stage::Ipxe
    } else if vc.starts_with("HTTPClient") {
        Stage::HttpBoot
    } else if vc.starts_with("PXEClient") || vc.starts_with("HW-Client") {
        Stage::Pxe
    } else {
        Stage::Plain
    };
    let uuid = match opts.get(OptionCode::ClientMachineIdentifier) {
        Some(DhcpOption::ClientMachineIdentifier(v)) if v.len() == 17 && v[0] == 0 => {
            smbios_uuid(&v[1..])
        }
        _ => None,
    };
    Ok(Client {
        mac,
        stage,
        arch,
        firmware: arch.map(Firmware::from_arch),
        vendor_class,
        uuid,
        relay: relay_agent(opts),
    })
}

/// The client GUID of option 97 as the SMBIOS UUID string (what dmidecode and iPXE's `${uuid}`
/// print): the first three fields are little-endian on the wire (SMBIOS 2.6+). All-zero and
/// all-ones GUIDs are placeholders, not identities.
fn smbios_uuid(b: &[u8]) -> Option<String> {
    if b.iter().all(|x| *x == 0) || b.iter().all(|x| *x == 0xff) {
        return None;
    }
    let h = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |s: &[u8]| h(&s.iter().rev().copied().collect::<Vec<_>>());
    Some(format!(
        "{}-{}-{}-{}-{}",
        rev(&b[0..4]),
        rev(&b[4..6]),
        rev(&b[6..8]),
        h(&b[8..10]),
        h(&b[10..16])
    ))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
