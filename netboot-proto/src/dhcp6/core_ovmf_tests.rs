//! What edk2's HttpBootDxe and Dhcp6Dxe check in our Advertise and Reply, on OVMF's own
//! Solicit as captured in the lab (`lab/IPV6-HTTP-BOOT.md`).

use super::*;

/// OVMF's Solicit as captured in the lab (`lab/IPV6-HTTP-BOOT.md`): DUID-UUID in SMBIOS byte
/// order, IA_NA with T1 = T2 = infinity, ORO 59,60,23,16, NII, arch 16, vendor class 343.
fn ovmf_solicit(ty: MessageType, with_addr: Option<Ipv6Addr>) -> Vec<u8> {
    let duid = [
        0, 4, 0x00, 0xb0, 0x1a, 0x5a, 0, 0, 0, 0x40, 0x80, 0, 0, 0, 0, 0, 0, 1,
    ];
    let mut m = Message::new_with_id(ty, [9, 9, 9]);
    m.opts_mut().insert(DhcpOption::ClientId(duid.to_vec()));
    m.opts_mut().insert(DhcpOption::ElapsedTime(0));
    let mut ia = IANA {
        id: 0x71dc_5153,
        t1: u32::MAX,
        t2: u32::MAX,
        opts: Default::default(),
    };
    if let Some(addr) = with_addr {
        ia.opts.insert(DhcpOption::IAAddr(IAAddr {
            addr,
            preferred_life: 1800,
            valid_life: 7200,
            opts: Default::default(),
        }));
        m.opts_mut()
            .insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
    }
    m.opts_mut().insert(DhcpOption::IANA(ia));
    m.opts_mut().insert(DhcpOption::ORO(ORO {
        opts: vec![
            OptionCode::OptBootfileUrl,
            OptionCode::OptBootfileParam,
            OptionCode::DomainNameServers,
            OptionCode::VendorClass,
        ],
    }));
    m.opts_mut()
        .insert(DhcpOption::ClientArchType(vec![Architecture(0x10)]));
    let mut bytes = m.to_vec().unwrap();
    wire::append_option(&mut bytes, 62, &[1, 3, 0]);
    let class = b"HTTPClient:Arch:00016:UNDI:003000";
    let mut vc = 343u32.to_be_bytes().to_vec();
    vc.extend_from_slice(&(class.len() as u16).to_be_bytes());
    vc.extend_from_slice(class);
    wire::append_option(&mut bytes, 16, &vc);
    bytes
}

/// What edk2 checks in an Advertise (HttpBootDhcp6.c, Dhcp6Io.c), on the bytes we send.
fn assert_edk2_accepts(bytes: &[u8], advertise: bool) {
    let opts = wire::options(&bytes[4..]).unwrap();
    let codes: Vec<u16> = opts.iter().map(|(c, _)| *c).collect();
    // Option 59 last: edk2 measures the URL with AsciiStrLen up to the next NUL.
    assert_eq!(codes.last(), Some(&59), "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 59).count(), 1);
    let url = std::str::from_utf8(opts.last().unwrap().1).unwrap();
    assert!(url.starts_with("http://[2001:2::1]:8080/"), "{url}");
    assert!(!url.contains('\0'));
    // Option 16: length >= 16 and "HTTPClient" at offset 6 (or it is no HTTP offer).
    let vc = raw(bytes, 16).expect("option 16");
    assert!(vc.len() >= 16, "{vc:02x?}");
    assert_eq!(&vc[6..16], b"HTTPClient");
    // IA_NA: IAID, T1, T2, then options from offset 12: one IAADDR, no status code (13).
    let ia = raw(bytes, 3).expect("IA_NA");
    assert_eq!(&ia[..4], &0x71dc_5153u32.to_be_bytes());
    let inner = wire::options(&ia[12..]).unwrap();
    assert_eq!(
        inner.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![5],
        "only an IAADDR in the IA_NA"
    );
    assert!(!codes.contains(&13), "no top-level status code");
    // Option 7 = 255 in the Advertise: Dhcp6Dxe requests at once.
    match advertise {
        true => assert_eq!(raw(bytes, 7), Some(vec![255])),
        false => assert_eq!(raw(bytes, 7), None, "preference belongs to the Advertise"),
    }
}

#[test]
fn ovmf_http_boot_advertise_and_reply_hold_what_edk2_checks() {
    let mut c = core(Mode6::Stateful);
    let d = run(&mut c, &ovmf_solicit(MessageType::Solicit, None), 1);
    let (adv, _) = d.reply.as_ref().expect("an Advertise");
    assert_eq!(adv[0], 2, "Advertise");
    assert_edk2_accepts(adv, true);
    let offered = addr_of(&reply_of(&d)).unwrap();
    let d = run(
        &mut c,
        &ovmf_solicit(MessageType::Request, Some(offered)),
        2,
    );
    let (rep, _) = d.reply.as_ref().expect("a Reply");
    assert_eq!(rep[0], 7, "Reply");
    assert_edk2_accepts(rep, false);
}

#[test]
fn an_advertise_without_an_address_carries_no_preference() {
    let mut c = core(Mode6::Stateless);
    let d = run(
        &mut c,
        &solicit(duid_ll([2, 0, 0, 0, 0, 3])).to_vec().unwrap(),
        1,
    );
    let (bytes, _) = d.reply.as_ref().unwrap();
    assert_eq!(bytes[0], 2);
    assert_eq!(raw(bytes, 7), None);
}

/// OVMF's DUID-UUID carries no MAC: every message of the exchange is still the MAC's, by the
/// EUI-64 of its link-local source, so the lease names the machine.
#[test]
fn a_duid_uuid_client_is_its_link_local_mac_in_every_message() {
    let mac = Mac::new([0x52, 0x54, 0, 0xaa, 0, 1]); // from(): fe80::5054:ff:feaa:1
    let mut c = core(Mode6::Stateful);
    let d = run(&mut c, &ovmf_solicit(MessageType::Solicit, None), 1);
    assert_eq!(d.mac, Some(mac));
    let offered = addr_of(&reply_of(&d)).unwrap();
    for (ty, t) in [(MessageType::Request, 2), (MessageType::Renew, 3)] {
        let d = run(&mut c, &ovmf_solicit(ty, Some(offered)), t);
        assert_eq!(d.mac, Some(mac), "{ty:?}");
        assert_eq!(d.commit.len(), 1, "{ty:?}");
        assert_eq!(d.commit[0].mac, Some(mac), "{ty:?}");
        assert_eq!(d.commit[0].ip, offered);
    }
    let d = run(
        &mut c,
        &ovmf_solicit(MessageType::Release, Some(offered)),
        4,
    );
    assert_eq!(d.mac, Some(mac));
    assert_eq!(d.remove, vec![offered]);
}
