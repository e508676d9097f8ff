//! The core over real packets: DHCPDISCOVERs captured from the lab's firmware with tcpdump
//! (`lab run --capture`, OVMF 2025.02 and SeaBIOS 1.16 under QEMU 10.0.2, Debian's iPXE
//! 1.0.0+git-20190125 as NIC ROM and as snponly.efi, busybox udhcpc 1.35).

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use inventory::{Lifecycle, Machine, State, Timestamp};

use super::*;
use crate::dhcp::classify::{classify, Firmware, Stage};

const OVMF_PXE: &[u8] = include_bytes!("../../testdata/dhcp/ovmf-pxe-discover.bin");
const IPXE_EFI_ROM: &[u8] = include_bytes!("../../testdata/dhcp/ipxe-efi-rom-discover.bin");
const IPXE_SNPONLY: &[u8] = include_bytes!("../../testdata/dhcp/ipxe-snponly-discover.bin");
const OVMF_HTTPBOOT: &[u8] = include_bytes!("../../testdata/dhcp/ovmf-httpboot-discover.bin");
const IPXE_PCBIOS: &[u8] = include_bytes!("../../testdata/dhcp/ipxe-pcbios-discover.bin");
const UDHCPC: &[u8] = include_bytes!("../../testdata/dhcp/udhcpc-discover.bin");

fn decode(b: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(b)).expect("captured packet decodes")
}

fn registered(msg: &Message) -> Machine {
    let c = classify(msg).unwrap();
    let mut m = Machine::registered(c.mac, Default::default(), Timestamp(0));
    m.lifecycle = Lifecycle::new(State::Registered, Timestamp(0));
    m
}

#[test]
fn captured_discovers_are_classified() {
    type Case = (&'static [u8], Stage, Option<u16>, Option<Firmware>);
    let cases: [Case; 6] = [
        (OVMF_PXE, Stage::Pxe, Some(7), Some(Firmware::EfiX64)),
        (IPXE_EFI_ROM, Stage::Ipxe, Some(7), Some(Firmware::EfiX64)),
        (IPXE_SNPONLY, Stage::Ipxe, Some(7), Some(Firmware::EfiX64)),
        (OVMF_HTTPBOOT, Stage::HttpBoot, Some(16), None),
        (IPXE_PCBIOS, Stage::Ipxe, Some(0), Some(Firmware::Bios)),
        (UDHCPC, Stage::Plain, None, None),
    ];
    for (i, (bytes, stage, arch, fw)) in cases.into_iter().enumerate() {
        let c = classify(&decode(bytes)).unwrap();
        assert_eq!(c.stage, stage, "case {i}");
        assert_eq!(c.arch, arch, "case {i}");
        if fw.is_some() {
            assert_eq!(c.firmware, fw, "case {i}");
        }
        assert_eq!(c.mac.octets()[..3], [0x52, 0x54, 0x00], "case {i}");
    }
    // OVMF sends option 97 even when QEMU has no SMBIOS UUID (no -uuid): 17 zero bytes, which
    // names no machine and must not be taken for one.
    let raw = decode(OVMF_PXE);
    assert!(matches!(
        raw.opts().get(OptionCode::ClientMachineIdentifier),
        Some(DhcpOption::ClientMachineIdentifier(v)) if v.iter().all(|b| *b == 0)
    ));
    assert!(classify(&raw).unwrap().uuid.is_none());
}

#[test]
fn captured_discovers_get_the_right_boot_answer() {
    let mut c = core(Mode::Full, UnknownPolicy::Ignore);
    let answer = |c: &mut Core, bytes: &[u8]| {
        let msg = decode(bytes);
        let m = registered(&msg);
        let d = run(c, &msg, arrived(67), Some(&m));
        let (offer, _) = d.reply.expect("an offer");
        assert_eq!(kind(&offer), MessageType::Offer);
        offer
    };
    let o = answer(&mut c, OVMF_PXE);
    assert_eq!(o.fname_str().unwrap().unwrap(), "snponly.efi");
    assert!(
        opt(&o, OptionCode::VendorExtensions).is_some(),
        "OVMF needs option 43"
    );
    for bytes in [IPXE_EFI_ROM, IPXE_SNPONLY, IPXE_PCBIOS] {
        let o = answer(&mut c, bytes);
        let Some(DhcpOption::BootfileName(f)) = opt(&o, OptionCode::BootfileName) else {
            panic!("no boot file")
        };
        assert!(String::from_utf8_lossy(f)
            .starts_with("http://198.18.0.1:8080/boot/ipxe?mac=52:54:00:"));
    }
    let o = answer(&mut c, OVMF_HTTPBOOT);
    assert_eq!(
        opt(&o, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
    let o = answer(&mut c, UDHCPC);
    assert!(opt(&o, OptionCode::BootfileName).is_none());
}

#[test]
fn captured_packets_cut_anywhere_never_panic() {
    let mut c = core(Mode::Full, UnknownPolicy::Auto);
    for bytes in [
        OVMF_PXE,
        IPXE_EFI_ROM,
        IPXE_SNPONLY,
        OVMF_HTTPBOOT,
        IPXE_PCBIOS,
        UDHCPC,
    ] {
        for cut in 0..bytes.len() {
            if let Ok(msg) = Message::decode(&mut Decoder::new(&bytes[..cut])) {
                let _ = classify(&msg);
                let _ = run(&mut c, &msg, arrived(67), None);
            }
        }
    }
}
