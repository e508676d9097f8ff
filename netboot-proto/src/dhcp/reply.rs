//! The parts of a reply that decide whether a machine netboots: where the reply goes, the PXE
//! vendor options of a proxy offer, and which boot file (if any) to offer.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::classify::{Client, Firmware, Stage};
use crate::boot_decision::Intent;

/// The DHCP server port (RFC 2131 §4.1): where requests arrive and relayed replies go.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port (RFC 2131 §4.1): where replies to unrelayed clients go.
pub const CLIENT_PORT: u16 = 68;
/// The PXE boot server port: firmware sends a DHCPREQUEST here after a proxy offer.
pub const PXE_BOOT_SERVER_PORT: u16 = 4011;

/// The request fields that decide where its reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrived {
    /// Source address and port of the datagram.
    pub src: SocketAddrV4,
    /// The local port it arrived on (67, or 4011 for the PXE boot server).
    pub local_port: u16,
    /// The request's `giaddr`: the relay agent's address, 0 when not relayed.
    pub giaddr: Ipv4Addr,
    /// The request's `ciaddr`: the client's address when it has one (RENEWING, INFORM), else 0.
    pub ciaddr: Ipv4Addr,
    /// The request's BROADCAST flag (RFC 2131 §2, `flags`); the replies keep the request's flags.
    pub broadcast_flag: bool,
    /// The datagram was sent to 255.255.255.255 (not the same as the BROADCAST flag).
    pub to_broadcast: bool,
}

/// The smallest DHCP/BOOTP message we send, in bytes: the BOOTP minimum (RFC 951; RFC 1542
/// §2.1: relays may discard shorter ones, as OpenBSD-derived `dhcrelay` does).
pub const MIN_REPLY_LEN: usize = 300;

/// A reply on the wire: encoded, then padded with zeros (PAD options after END) to
/// [`MIN_REPLY_LEN`] as ISC dhcpd does.
pub fn encode(reply: &dhcproto::v4::Message) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    encode_with(reply, None)
}

/// [`encode`], with `relay_echo` (option 82's value as the relay sent it) appended as the last
/// option, byte for byte (RFC 3046 §2.2: "the entire contents as received"; a parsed and
/// re-encoded option would come back with its sub-options re-sorted). Any option 82 the message
/// itself carries is dropped first, so the option appears once.
pub fn encode_with(
    reply: &dhcproto::v4::Message,
    relay_echo: Option<&[u8]>,
) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    use dhcproto::v4::OptionCode;
    use dhcproto::Encodable;
    let mut bytes = match relay_echo {
        Some(_) => {
            let mut m = reply.clone();
            m.opts_mut().remove(OptionCode::RelayAgentInformation);
            m.to_vec()?
        }
        None => reply.to_vec()?,
    };
    if let Some(value) = relay_echo.filter(|v| v.len() <= 255) {
        // dhcproto ends the options with END (255): insert before it.
        if bytes.last() == Some(&255) {
            let end = bytes.len() - 1;
            let mut opt = vec![82, value.len() as u8];
            opt.extend_from_slice(value);
            bytes.splice(end..end, opt);
        }
    }
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0);
    }
    Ok(bytes)
}

/// The raw value of option `code` in a DHCP datagram (RFC 2131 §4.1 options area after the
/// magic cookie; pads skipped; overloaded `file`/`sname` fields are not searched), so an option
/// can be echoed byte for byte: RFC 3046 §2.2 asks for relay agent information "as received".
pub fn raw_option(datagram: &[u8], code: u8) -> Option<&[u8]> {
    let opts = datagram.get(240..)?;
    if datagram.get(236..240)? != [99, 130, 83, 99] {
        return None;
    }
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => i += 1,
            255 => return None,
            c => {
                let len = *opts.get(i + 1)? as usize;
                let value = opts.get(i + 2..i + 2 + len)?;
                if c == code {
                    return Some(value);
                }
                i += 2 + len;
            }
        }
    }
    None
}

/// Where to send a reply (RFC 2131 §4.1; RFC 4578/PXE for port 4011).
///
/// | condition | destination |
/// |---|---|
/// | arrived on 4011 | the sender, unicast |
/// | giaddr ≠ 0 (relayed) | giaddr:67 — the relay's *server* port |
/// | a NAK without a relay | broadcast:68 |
/// | ciaddr ≠ 0 | ciaddr:68 |
/// | otherwise | broadcast:68 |
///
/// RFC 2131 allows a unicast to yiaddr when the broadcast bit is clear, but that needs an ARP
/// entry the client cannot answer for yet; every client we serve accepts the broadcast.
pub fn destination(a: &Arrived, nak: bool) -> SocketAddrV4 {
    if a.local_port == PXE_BOOT_SERVER_PORT && !a.src.ip().is_unspecified() {
        return a.src;
    }
    if !a.giaddr.is_unspecified() {
        return SocketAddrV4::new(a.giaddr, SERVER_PORT);
    }
    if !nak && !a.ciaddr.is_unspecified() {
        return SocketAddrV4::new(a.ciaddr, CLIENT_PORT);
    }
    SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
}

/// Option 43 of a proxy offer: PXE_DISCOVERY_CONTROL (sub-option 6) = 8, "the boot file is in
/// this packet; no multicast or broadcast boot-server discovery", then END.
pub fn pxe_vendor_options() -> Vec<u8> {
    vec![6, 1, 8, 255]
}

/// Loader file names by firmware, served over TFTP (configurable; Debian's `ipxe` names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaders {
    /// x86 BIOS (option 93 = 0); default `undionly.kpxe`.
    pub bios: String,
    /// x86-64 UEFI (option 93 = 7 or 9); default `snponly.efi`.
    pub efi_x64: String,
    /// 32-bit x86 UEFI (option 93 = 6); `None`: such clients get no boot file.
    pub efi_ia32: Option<String>,
    /// 64-bit ARM UEFI (option 93 = 11); `None`: such clients get no boot file.
    pub efi_arm64: Option<String>,
}

impl Default for Loaders {
    fn default() -> Self {
        Loaders {
            bios: "undionly.kpxe".into(),
            // snponly.efi uses the firmware's own network driver and starts in ~0.1 s under
            // emulation where ipxe.efi takes ~4 s (lab-recipes.md).
            efi_x64: "snponly.efi".into(),
            efi_ia32: None,
            efi_arm64: None,
        }
    }
}

/// The boot file to put in a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootFile {
    /// No boot file: an OS client, an installed machine, or one we ignore.
    None,
    /// A loader over TFTP from `server` (siaddr / next-server).
    Tftp {
        /// The TFTP server: `siaddr` of the reply.
        server: Ipv4Addr,
        /// The loader's file name: `file` field and/or option 67.
        file: String,
    },
    /// An `http://` URL; `http_client` says the reply must echo option 60 `HTTPClient`.
    Url {
        /// The URL, with the client's MAC as `?mac=`: `file` field and/or option 67.
        url: String,
        /// UEFI HTTP boot: the reply must carry option 60 `HTTPClient` or the firmware ignores it.
        http_client: bool,
    },
}

/// Why a netbooting client gets no boot file; recorded as an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoBootFile {
    /// A PXE client sent no option 93, so no loader can be chosen.
    #[error("PXE request without option 93 (client architecture): no loader chosen")]
    NoArch,
    /// No loader is configured for this option 93 code (the code; 0 if none was sent).
    #[error("no loader configured for client architecture {0} (option 93)")]
    UnknownArch(u16),
}

/// Where the HTTP side serves per-machine boot content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootUrls {
    /// Base URL of the per-machine iPXE script, e.g. `http://198.18.0.1:8080/boot/ipxe`.
    pub ipxe_script: String,
    /// Base URL UEFI HTTP-boot firmware downloads its EFI image from.
    pub http_boot: String,
}

/// Chooses the boot file from the client's stage, the machine's intent and its loader override.
pub fn boot_file(
    client: &Client,
    intent: &Intent,
    loader_override: Option<&str>,
    loaders: &Loaders,
    urls: &BootUrls,
    tftp_server: Ipv4Addr,
) -> Result<BootFile, NoBootFile> {
    // An installed machine's PXE and HTTP-boot firmware still get their file name: the TFTP
    // server and `/boot/efi` refuse it to that machine (the decision again), which makes the
    // firmware move on to its disk at once. Offering no file instead leaves OVMF waiting ~60 s
    // per boot entry for a usable offer. iPXE gives up at once on an offer without a file.
    match (intent, client.stage) {
        (Intent::Ignore, _) => return Ok(BootFile::None),
        (Intent::LocalDisk, Stage::Pxe | Stage::HttpBoot) => {}
        (Intent::LocalDisk, _) => return Ok(BootFile::None),
        _ => {}
    }
    // The MAC is rendered by our own Display (hex digits and colons): nothing from the request
    // text reaches the URL.
    let mac = client.mac;
    Ok(match client.stage {
        Stage::Plain => BootFile::None,
        Stage::Ipxe => BootFile::Url {
            url: format!("{}?mac={mac}", urls.ipxe_script),
            http_client: false,
        },
        Stage::HttpBoot => BootFile::Url {
            url: format!("{}?mac={mac}", urls.http_boot),
            http_client: true,
        },
        Stage::Pxe => {
            let unknown = NoBootFile::UnknownArch(client.arch.unwrap_or_default());
            let file = match (loader_override, client.firmware) {
                (Some(f), _) => f.to_string(),
                (None, None) => return Err(NoBootFile::NoArch),
                (None, Some(Firmware::Bios)) => loaders.bios.clone(),
                (None, Some(Firmware::EfiX64)) => loaders.efi_x64.clone(),
                (None, Some(Firmware::EfiIa32)) => loaders.efi_ia32.clone().ok_or(unknown)?,
                (None, Some(Firmware::EfiArm64)) => loaders.efi_arm64.clone().ok_or(unknown)?,
                (None, Some(_)) => return Err(unknown),
            };
            BootFile::Tftp {
                server: tftp_server,
                file,
            }
        }
    })
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
