use super::*;

fn url(s: &str) -> Url {
    Url(s.to_string())
}

#[test]
fn servers_and_files_in_grub_syntax() {
    let s = GrubServer::from_base("http://198.18.0.1:8080").unwrap();
    assert_eq!(s.device, "(http,198.18.0.1:8080)");
    assert_eq!(s.prefix, "");
    let s = GrubServer::from_base("http://boot.example/prov/").unwrap();
    assert_eq!(
        (s.device.as_str(), s.prefix.as_str()),
        ("(http,boot.example)", "/prov")
    );
    assert_eq!(GrubServer::from_base("https://boot.example"), None);
    assert_eq!(GrubServer::from_base("http://a\"b:80"), None);
    assert_eq!(GrubServer::from_base("http://h/$x"), None);
    let f = GrubFile::from_url(&url(
        "http://198.18.0.1:8080/assets/ab/sections/linux?mac=52:54:00:00:00:01",
    ));
    assert_eq!(
        f.unwrap().0,
        "(http,198.18.0.1:8080)/assets/ab/sections/linux?mac=52:54:00:00:00:01"
    );
    assert_eq!(GrubFile::from_url(&url("https://h/x")), None);
    assert_eq!(GrubFile::from_url(&url("http://h/it's")), None);
}

#[test]
fn bootstrap_loops_over_the_per_machine_config() {
    let b = bootstrap(&GrubServer::from_base("http://198.18.0.1:8080").unwrap());
    assert!(b.contains("insmod http\n"), "{b}");
    assert!(
        b.contains("if source \"(http,198.18.0.1:8080)/boot/grub\"; then true; else"),
        "{b}"
    );
    assert!(
        b.contains("while true; do") && b.trim_end().ends_with("done"),
        "{b}"
    );
    let b = bootstrap(&GrubServer::booted_from(8080));
    assert!(
        b.contains("\"(http,${net_default_server}:8080)/boot/grub\""),
        "{b}"
    );
}

#[test]
fn install_config_quotes_every_word() {
    let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
    let cfg = GrubConfig::Install {
        kernel: GrubFile::from_url(&url(
            "http://h:1/assets/ab/sections/linux?mac=52:54:00:00:00:01",
        ))
        .unwrap(),
        initrd: GrubFile::from_url(&url(
            "http://h:1/assets/ab/sections/initrd?mac=52:54:00:00:00:01",
        )),
        cmdline: Cmdline::join([
            "console=ttyS0 a|b {c} x<y",
            "config_url=http://h:1/config/52:54:00:00:00:01",
        ])
        .unwrap(),
    };
    let text = cfg.render(Some(mac));
    assert_eq!(
        text,
        "# provisioner: 52:54:00:00:00:01 (GRUB)\n\
         echo 'provisioner: installing 52:54:00:00:00:01 (GRUB, kernel + initrd from the UKI over HTTP)'\n\
         linux '(http,h:1)/assets/ab/sections/linux?mac=52:54:00:00:00:01' 'console=ttyS0' 'a|b' '{c}' 'x<y' 'config_url=http://h:1/config/52:54:00:00:00:01'\n\
         initrd '(http,h:1)/assets/ab/sections/initrd?mac=52:54:00:00:00:01'\n\
         boot\n\
         echo 'provisioner: download or boot failed, trying again in 10 s'\n\
         sleep 10\n"
    );
}

#[test]
fn hold_and_local_disk_configs() {
    let hold = GrubConfig::Hold {
        message: GrubText::new("it's $waiting\\ for\nan operator"),
        poll: Duration::from_secs(3),
    };
    let text = hold.render(None);
    assert!(
        text.starts_with("# provisioner: an unknown address (GRUB)\n"),
        "{text}"
    );
    assert!(
        text.contains("echo 'provisioner: it_s $waiting_ for_an operator'\n"),
        "{text}"
    );
    assert!(text.ends_with("sleep 3\n"), "{text}");
    let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
    let disk = GrubConfig::LocalDisk.render(Some(mac));
    assert!(
        disk.contains("chainloader /EFI/BOOT/BOOTX64.EFI\n") && disk.ends_with("exit 1\n"),
        "{disk}"
    );
    assert!(!disk.contains("linux"), "{disk}");
}
