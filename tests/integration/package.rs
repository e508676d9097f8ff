//! The Debian package (`scripts/package`, cargo-deb): built from the binary under test, unpacked
//! into a scratch root (`dpkg -x`; nothing is installed on this machine and no maintainer script
//! runs), and checked the way an operator would meet it: the control file, the binary, the man
//! pages, the completions, the config, and the systemd unit (`systemd-analyze verify` and
//! `systemd-analyze security`, both offline).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{binary, stderr, stdout, Server};

/// The package built from the dev build: the path of the `.deb` in `out`.
fn build_package(out: &Path) -> PathBuf {
    if !Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        panic!("cargo-deb is missing: run scripts/install-cargo-deb");
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // target/debug/provisioner → target: the package takes the very binary the suite tests.
    let target_dir = binary().parent().unwrap().parent().unwrap().to_path_buf();
    let o = Command::new(workspace.join("scripts/package"))
        .args(["--debug", "--no-build", "--output"])
        .arg(out)
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(workspace)
        .output()
        .unwrap();
    assert!(o.status.success(), "scripts/package: {}", stderr(&o));
    let deb = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}: {}", out.display(), stderr(&o)));
    deb
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "{cmd:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

#[test]
fn the_debian_package_installs_a_binary_man_pages_completions_config_and_a_hardened_unit() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(dir.path());

    // Control: libc and libssl found by $auto (dpkg-shlibdeps), the config kept as a conffile,
    // and no maintainer scripts: installing must not start a DHCP server on the network.
    let depends = ok(Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .arg("Depends"));
    assert!(
        depends.contains("libc6") && depends.contains("libssl3"),
        "{depends}"
    );
    let control = dir.path().join("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/provisioner/provisioner.toml");
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert!(!control.join(script).exists(), "unexpected {script}");
    }

    let root = dir.path().join("root");
    ok(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    let bin = root.join("usr/bin/provisioner");
    let version = ok(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("provisioner {}", env!("CARGO_PKG_VERSION"))
    );
    let help = ok(Command::new(&bin).args(["serve", "--help"]));
    assert!(help.contains("--config <FILE>"), "{help}");
    // The generators are for packagers: not in the main help.
    let main_help = ok(Command::new(&bin).arg("--help"));
    assert!(!main_help.contains("generate-man"), "{main_help}");

    // Man pages, generated from the CLI: `man` finds them in the package's tree.
    let man = root.join("usr/share/man");
    for page in [
        "provisioner",
        "provisioner-serve",
        "provisioner-machines-list",
    ] {
        assert!(man.join(format!("man1/{page}.1.gz")).is_file(), "{page}");
    }
    let page = ok(Command::new("man")
        .args(["-P", "cat", "provisioner-serve"])
        .env("MANPATH", &man)
        .env("MANWIDTH", "200"));
    assert!(page.contains("--tftp-listen"), "{page}");

    for (path, needle) in [
        (
            "usr/share/bash-completion/completions/provisioner",
            "machines",
        ),
        (
            "usr/share/zsh/vendor-completions/_provisioner",
            "#compdef provisioner",
        ),
        (
            "usr/share/fish/vendor_completions.d/provisioner.fish",
            "complete -c provisioner",
        ),
    ] {
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        assert!(text.contains(needle), "{path}");
    }

    // The config: the example, with data_dir where the unit's StateDirectory= is.
    let config = std::fs::read_to_string(root.join("etc/provisioner/provisioner.toml")).unwrap();
    assert!(
        config
            .lines()
            .any(|l| l.starts_with("data_dir = \"/var/lib/provisioner\"")),
        "{config}"
    );

    // The installed binary serves with the installed config (listeners moved to loopback).
    let data = dir.path().join("data");
    let mut serve = Command::new(&bin);
    serve
        .args(["serve", "--config"])
        .arg(root.join("etc/provisioner/provisioner.toml"))
        .args(["--listen", "127.0.0.1:0", "--tftp-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data);
    let server = Server::spawn(serve, &data);
    let health = server.http().get("/healthz");
    assert_eq!(health.status, 200, "{}", health.text);
    drop(server);

    check_unit(&root, dir.path());
}

/// `systemd-analyze verify` on the installed unit, with ExecStart pointing into the scratch
/// root (verify checks that the program exists) and MANPATH there (it checks that each
/// Documentation= page exists): it must pass without a single warning, since unknown keys and
/// bad values are only warnings. Then `systemd-analyze security`: the settings the unit promises
/// are in force and the exposure stays low.
fn check_unit(root: &Path, dir: &Path) {
    let shipped = std::fs::read_to_string(root.join("lib/systemd/system/provisioner.service"))
        .expect("the unit in lib/systemd/system");
    let exec = "ExecStart=/usr/bin/provisioner serve --config /etc/provisioner/provisioner.toml";
    assert!(shipped.lines().any(|l| l == exec), "{shipped}");
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let unit = units.join("provisioner.service");
    let bin = root.join("usr/bin/provisioner");
    std::fs::write(
        &unit,
        shipped.replace(
            "ExecStart=/usr/bin/provisioner",
            &format!("ExecStart={}", bin.display()),
        ),
    )
    .unwrap();
    let o = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", root.join("usr/share/man")));
    assert!(
        o.status.success() && stderr(&o).trim().is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&o),
        stderr(&o)
    );

    let o = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--json=short"])
        .arg(&unit));
    assert!(o.status.success(), "{}", stderr(&o));
    let checks: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let set = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}"))["set"]
            .as_bool()
            .unwrap()
    };
    for name in [
        "NoNewPrivileges=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "CapabilityBoundingSet=~CAP_NET_ADMIN",
        "CapabilityBoundingSet=~CAP_SYS_PTRACE",
        "RestrictAddressFamilies=~AF_PACKET",
        "RestrictAddressFamilies=~AF_NETLINK",
        "SystemCallFilter=~@privileged",
        "SystemCallFilter=~@mount",
        "MemoryDenyWriteExecute=",
    ] {
        assert!(set(name), "{name} is not in force");
    }
    // Exposure on systemd's 0–10 scale (an unhardened service: 9.6); 2.0 is in its "OK" band.
    let o = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit));
    assert!(
        o.status.success(),
        "exposure above 2.0: {}{}",
        stdout(&o),
        stderr(&o)
    );
}
