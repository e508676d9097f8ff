//! A real test UKI: Debian's systemd-stub, the Debian kernel unpacked by
//! `scripts/install-test-deps`, and a small cpio initramfs, assembled with our own builder.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
pub const CMDLINE: &str = "console=ttyS0 quiet";

pub fn kernel() -> PathBuf {
    let cache =
        std::env::var("PROVISIONER_LAB_CACHE").unwrap_or("/var/cache/provisioner-lab".into());
    let k = Path::new(&cache).join("kernel/vmlinuz");
    assert!(
        k.is_file() && Path::new(STUB).is_file(),
        "missing {} or {STUB}: run scripts/install-test-deps as root",
        k.display()
    );
    k
}

pub struct TestUki {
    pub path: PathBuf,
    pub linux: Vec<u8>,
    pub initrd: Vec<u8>,
}

/// Builds `dir/<name>` with os-release `PRETTY_NAME` = `pretty`.
pub fn build(dir: &Path, name: &str, pretty: &str) -> TestUki {
    let src = dir.join(format!("{name}-initramfs"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("init"), format!("#!/bin/sh\necho {pretty}\n")).unwrap();
    let out = Command::new("sh")
        .args(["-c", "find . | sort | cpio -o -H newc --owner=0:0 --quiet"])
        .current_dir(&src)
        .output()
        .expect("cpio (scripts/install-test-deps installs it)");
    assert!(out.status.success(), "cpio failed");
    let initrd = out.stdout;
    let linux = std::fs::read(kernel()).unwrap();
    let osrel = format!("NAME=\"Hadron\"\nID=hadron\nVERSION_ID=0.1\nPRETTY_NAME=\"{pretty}\"\n");
    let path = dir.join(name);
    boot_assets::UkiBuilder::new()
        .section(".osrel", osrel.into_bytes())
        .section(".cmdline", CMDLINE.as_bytes().to_vec())
        .section(".uname", b"6.1.0-test-amd64".to_vec())
        .section(".initrd", initrd.clone())
        .section(".linux", linux.clone())
        .build(Path::new(STUB), &path)
        .unwrap();
    TestUki {
        path,
        linux,
        initrd,
    }
}

/// Imports `path` with the CLI of `server` (`provisioner assets import`); its `sha256:` digest.
pub fn import(server: &crate::harness::Server, path: &Path) -> String {
    let out = server
        .cli_cmd(&["assets", "import"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    let text = crate::harness::stdout(&out);
    text.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in: {text}"))
        .to_string()
}
