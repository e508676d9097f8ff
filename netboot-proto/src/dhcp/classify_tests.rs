use super::*;
use dhcproto::v4::{Architecture, UnknownOption};
use std::net::Ipv4Addr;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn request(opts: Vec<DhcpOption>) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new(z, z, z, z, &MAC);
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

fn vendor(s: &str) -> DhcpOption {
    DhcpOption::ClassIdentifier(s.as_bytes().to_vec())
}

fn arch(n: u16) -> DhcpOption {
    DhcpOption::ClientSystemArchitecture(Architecture::from(n))
}

#[test]
fn ovmf_pxe_with_arch_7_and_older_firmware_with_9() {
    for a in [7, 9] {
        let c = classify(&request(vec![
            vendor(&format!("PXEClient:Arch:0000{a}:UNDI:003016")),
            arch(a),
        ]))
        .unwrap();
        assert_eq!(
            (c.stage, c.firmware),
            (Stage::Pxe, Some(Firmware::EfiX64)),
            "arch {a}"
        );
        assert_eq!(c.mac.to_string(), "52:54:00:12:34:56");
    }
}

#[test]
fn bios_http_boot_and_ipxe() {
    let c = classify(&request(vec![
        vendor("PXEClient:Arch:00000:UNDI:002001"),
        arch(0),
    ]))
    .unwrap();
    assert_eq!((c.stage, c.firmware), (Stage::Pxe, Some(Firmware::Bios)));
    assert_eq!(c.firmware.unwrap().platform(), "pcbios");

    let c = classify(&request(vec![
        vendor("HTTPClient:Arch:00016:UNDI:003001"),
        arch(16),
    ]))
    .unwrap();
    assert_eq!(
        (c.stage, c.firmware),
        (Stage::HttpBoot, Some(Firmware::HttpX64))
    );
    assert!(c.firmware.unwrap().is_http());

    // iPXE keeps the firmware's vendor class but says who it is in option 77 or 175.
    let c = classify(&request(vec![
        vendor("PXEClient:Arch:00007:UNDI:003010"),
        arch(7),
        DhcpOption::UserClass(b"iPXE".to_vec()),
    ]))
    .unwrap();
    assert_eq!(c.stage, Stage::Ipxe);
    let encap = DhcpOption::Unknown(UnknownOption::new(
        OptionCode::Unknown(175),
        vec![177, 5, 1, 0x80, 0x86, 0x10, 0x0e],
    ));
    let c = classify(&request(vec![
        vendor("PXEClient:Arch:00000:UNDI:002001"),
        arch(0),
        encap,
    ]))
    .unwrap();
    assert_eq!(c.stage, Stage::Ipxe);

    // Some NICs say HW-Client; an OS's DHCP client is plain.
    assert_eq!(
        classify(&request(vec![vendor("HW-Client:Arch:00007")]))
            .unwrap()
            .stage,
        Stage::Pxe
    );
    let c = classify(&request(vec![vendor("udhcp 1.35.0")])).unwrap();
    assert_eq!((c.stage, c.arch), (Stage::Plain, None));
}

#[test]
fn arm_rpi_and_unknown_arches() {
    assert_eq!(Firmware::from_arch(11), Firmware::EfiArm64);
    assert_eq!(Firmware::from_arch(19), Firmware::HttpArm64);
    assert_eq!(Firmware::from_arch(41), Firmware::RpiBoot);
    assert_eq!(Firmware::from_arch(0x1234), Firmware::Other(0x1234));
}

#[test]
fn option_97_becomes_the_smbios_uuid() {
    // dmidecode prints 4c4c4544-0042-3510-8052-b4c04f4b4e31 for these wire bytes.
    let mut guid = vec![0u8];
    guid.extend_from_slice(&[
        0x44, 0x45, 0x4c, 0x4c, 0x42, 0x00, 0x10, 0x35, 0x80, 0x52, 0xb4, 0xc0, 0x4f, 0x4b, 0x4e,
        0x31,
    ]);
    let c = classify(&request(vec![DhcpOption::ClientMachineIdentifier(guid)])).unwrap();
    assert_eq!(
        c.uuid.as_deref(),
        Some("4c4c4544-0042-3510-8052-b4c04f4b4e31")
    );
    // Placeholders and malformed lengths are no identity.
    for bad in [
        vec![0u8; 17],
        vec![0, 0xff, 0xff],
        [vec![0], vec![0xff; 16]].concat(),
    ] {
        assert_eq!(
            classify(&request(vec![DhcpOption::ClientMachineIdentifier(bad)]))
                .unwrap()
                .uuid,
            None
        );
    }
}

#[test]
fn non_ethernet_hardware_is_refused() {
    let z = Ipv4Addr::UNSPECIFIED;
    let m = Message::new(z, z, z, z, &[1, 2, 3, 4]);
    assert_eq!(classify(&m), Err(ClassifyError::NotEthernet(4)));
}

#[test]
fn oversized_hlen_from_the_wire_is_refused_not_a_panic() {
    use dhcproto::{Decodable, Decoder, Encodable};
    let mut bytes = request(vec![vendor("PXEClient")]).to_vec().unwrap();
    bytes[2] = 57; // hlen
    let m = Message::decode(&mut Decoder::new(&bytes)).unwrap();
    assert_eq!(classify(&m), Err(ClassifyError::NotEthernet(57)));
}
