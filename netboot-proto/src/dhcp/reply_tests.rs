use super::*;
use crate::dhcp::classify::{Client, Firmware, Stage};

fn arrived(giaddr: &str, ciaddr: &str, bcast: bool) -> Arrived {
    Arrived {
        src: "0.0.0.0:68".parse().unwrap(),
        local_port: 67,
        giaddr: giaddr.parse().unwrap(),
        ciaddr: ciaddr.parse().unwrap(),
        broadcast_flag: bcast,
        to_broadcast: false,
    }
}

#[test]
fn destinations_follow_rfc_2131_section_4_1() {
    let b = "255.255.255.255:68".parse().unwrap();
    // Relayed: to the relay's server port, even for a NAK (smee#382 broadcast these by mistake).
    assert_eq!(
        destination(&arrived("198.18.1.1", "0.0.0.0", true), false),
        "198.18.1.1:67".parse().unwrap()
    );
    assert_eq!(
        destination(&arrived("198.18.1.1", "198.18.1.50", false), true),
        "198.18.1.1:67".parse().unwrap()
    );
    // Renewing client: unicast to ciaddr; a NAK without relay is broadcast.
    assert_eq!(
        destination(&arrived("0.0.0.0", "198.18.0.50", false), false),
        "198.18.0.50:68".parse().unwrap()
    );
    assert_eq!(
        destination(&arrived("0.0.0.0", "198.18.0.50", false), true),
        b
    );
    // A client without an address: broadcast, whatever the flag says.
    assert_eq!(destination(&arrived("0.0.0.0", "0.0.0.0", true), false), b);
    assert_eq!(destination(&arrived("0.0.0.0", "0.0.0.0", false), false), b);
    // The PXE boot server port answers the sender directly.
    let mut a = arrived("0.0.0.0", "198.18.0.50", false);
    a.local_port = PXE_BOOT_SERVER_PORT;
    a.src = "198.18.0.50:4011".parse().unwrap();
    assert_eq!(destination(&a, false), "198.18.0.50:4011".parse().unwrap());
}

#[test]
fn proxy_offers_disable_boot_server_discovery() {
    assert_eq!(pxe_vendor_options(), [6, 1, 8, 255]);
}

fn client(stage: Stage, arch: Option<u16>) -> Client {
    Client {
        mac: "52:54:00:12:34:56".parse().unwrap(),
        stage,
        arch,
        firmware: arch.map(Firmware::from_arch),
        vendor_class: None,
        uuid: None,
        relay: None,
    }
}

fn urls() -> BootUrls {
    BootUrls {
        ipxe_script: "http://198.18.0.1:8080/boot/ipxe".into(),
        http_boot: "http://198.18.0.1:8080/boot/efi".into(),
    }
}

fn answer(c: &Client, intent: &Intent, over: Option<&str>) -> Result<BootFile, NoBootFile> {
    boot_file(
        c,
        intent,
        over,
        &Loaders::default(),
        &urls(),
        "198.18.0.1".parse().unwrap(),
    )
}

#[test]
fn each_stage_gets_its_boot_file() {
    let tftp = |f: &str| {
        Ok(BootFile::Tftp {
            server: "198.18.0.1".parse().unwrap(),
            file: f.into(),
        })
    };
    assert_eq!(
        answer(&client(Stage::Pxe, Some(7)), &Intent::Install, None),
        tftp("snponly.efi")
    );
    assert_eq!(
        answer(&client(Stage::Pxe, Some(9)), &Intent::Install, None),
        tftp("snponly.efi")
    );
    assert_eq!(
        answer(&client(Stage::Pxe, Some(0)), &Intent::Install, None),
        tftp("undionly.kpxe")
    );
    // The per-machine override wins (firmware quirks, e.g. a Pi that claims arch 0).
    assert_eq!(
        answer(
            &client(Stage::Pxe, Some(0)),
            &Intent::Install,
            Some("ipxe.efi")
        ),
        tftp("ipxe.efi")
    );
    assert_eq!(
        answer(&client(Stage::Ipxe, Some(7)), &Intent::Install, None),
        Ok(BootFile::Url {
            url: "http://198.18.0.1:8080/boot/ipxe?mac=52:54:00:12:34:56".into(),
            http_client: false
        })
    );
    assert_eq!(
        answer(&client(Stage::HttpBoot, Some(16)), &Intent::Install, None),
        Ok(BootFile::Url {
            url: "http://198.18.0.1:8080/boot/efi?mac=52:54:00:12:34:56".into(),
            http_client: true
        })
    );
    assert_eq!(
        answer(&client(Stage::Plain, None), &Intent::Install, None),
        Ok(BootFile::None)
    );
}

#[test]
fn held_machines_still_get_ipxe_so_they_can_poll() {
    let hold = Intent::Hold {
        reason: "waiting".into(),
    };
    assert!(matches!(
        answer(&client(Stage::Pxe, Some(7)), &hold, None),
        Ok(BootFile::Tftp { .. })
    ));
    assert!(matches!(
        answer(&client(Stage::Ipxe, Some(7)), &hold, None),
        Ok(BootFile::Url { .. })
    ));
}

#[test]
fn installed_and_ignored_machines_get_no_boot_file_on_any_path() {
    for stage in [Stage::Pxe, Stage::HttpBoot, Stage::Ipxe, Stage::Plain] {
        assert_eq!(
            answer(&client(stage, Some(7)), &Intent::Ignore, Some("ipxe.efi")),
            Ok(BootFile::None),
            "{stage:?}"
        );
        // Installed: nothing that boots the installer. PXE firmware gets its loader, which TFTP
        // then refuses (a quick failure sends the firmware to its disk; no offer would stall it).
        let installed = answer(
            &client(stage, Some(7)),
            &Intent::LocalDisk,
            Some("ipxe.efi"),
        );
        match stage {
            Stage::Pxe => assert!(
                matches!(installed, Ok(BootFile::Tftp { .. })),
                "{installed:?}"
            ),
            Stage::HttpBoot => assert!(
                matches!(installed, Ok(BootFile::Url { .. })),
                "{installed:?}"
            ),
            _ => assert_eq!(installed, Ok(BootFile::None), "{stage:?}"),
        }
    }
}

#[test]
fn unknown_architectures_get_no_loader_and_a_reason() {
    assert_eq!(
        answer(&client(Stage::Pxe, None), &Intent::Install, None),
        Err(NoBootFile::NoArch)
    );
    assert_eq!(
        answer(&client(Stage::Pxe, Some(11)), &Intent::Install, None),
        Err(NoBootFile::UnknownArch(11))
    );
    assert_eq!(
        answer(&client(Stage::Pxe, Some(0x77)), &Intent::Install, None),
        Err(NoBootFile::UnknownArch(0x77))
    );
    let l = Loaders {
        efi_arm64: Some("ipxe-arm64.efi".into()),
        ..Default::default()
    };
    let c = client(Stage::Pxe, Some(11));
    let got = boot_file(
        &c,
        &Intent::Install,
        None,
        &l,
        &urls(),
        "198.18.0.1".parse().unwrap(),
    );
    assert!(matches!(got, Ok(BootFile::Tftp { file, .. }) if file == "ipxe-arm64.efi"));
}
