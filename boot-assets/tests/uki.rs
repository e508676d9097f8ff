//! UKI building, inspection, extraction and the store, on a real UKI: Debian's systemd-stub, a
//! Debian kernel and a cpio initramfs (`scripts/install-test-deps` provides all three).

use std::path::{Path, PathBuf};
use std::process::Command;

use boot_assets::{AssetKind, AssetStore, BootSection, Error, UkiBuilder};

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const OSREL: &str =
    "NAME=\"Hadron\"\nID=hadron\nVERSION_ID=0.0.1\nPRETTY_NAME=\"Hadron 0.0.1 (test)\"\n";
const CMDLINE: &str = "console=ttyS0 rd.neednet=1 quiet";

fn kernel() -> PathBuf {
    let cache =
        std::env::var("PROVISIONER_LAB_CACHE").unwrap_or("/var/cache/provisioner-lab".into());
    let k = Path::new(&cache).join("kernel/vmlinuz");
    assert!(
        k.is_file() && Path::new(STUB).is_file(),
        "missing {} or {STUB}: run scripts/install-test-deps (as root)",
        k.display()
    );
    k
}

fn initramfs(dir: &Path) -> Vec<u8> {
    let src = dir.join("initramfs-src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(
        src.join("init"),
        "#!/bin/sh\necho hello from the test initramfs\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . | sort | cpio -o -H newc --owner=0:0 --quiet")
        .current_dir(&src)
        .output()
        .expect("cpio");
    assert!(
        out.status.success() && out.stdout.len() > 512,
        "cpio failed"
    );
    out.stdout
}

struct Built {
    dir: tempfile::TempDir,
    uki: PathBuf,
    linux: Vec<u8>,
    initrd: Vec<u8>,
}

fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let linux = std::fs::read(kernel()).unwrap();
    let initrd = initramfs(dir.path());
    let uki = dir.path().join("hadron.efi");
    UkiBuilder::new()
        .section(".osrel", OSREL.as_bytes().to_vec())
        .section(".cmdline", CMDLINE.as_bytes().to_vec())
        .section(".uname", b"6.1.0-test-amd64".to_vec())
        .section(".initrd", initrd.clone())
        .section(".linux", linux.clone())
        .build(Path::new(STUB), &uki)
        .unwrap();
    Built {
        dir,
        uki,
        linux,
        initrd,
    }
}

#[test]
fn built_uki_inspects_and_objdump_agrees() {
    let b = build();
    let (_, info) = boot_assets::uki::inspect_uki(&b.uki).unwrap();
    let uki = info.uki.as_ref().unwrap();
    assert_eq!(info.arch, "x86_64");
    assert!(!info.signed);
    assert_eq!(uki.os_name(), "Hadron 0.0.1 (test)");
    assert_eq!(uki.os_release["VERSION_ID"], "0.0.1");
    assert_eq!(uki.cmdline.as_deref(), Some(CMDLINE));
    assert_eq!(uki.uname.as_deref(), Some("6.1.0-test-amd64"));
    assert!(
        uki.sbat.as_deref().unwrap_or("").contains("systemd"),
        "{:?}",
        uki.sbat
    );
    let size = |n: &str| info.sections.iter().find(|s| s.name == n).unwrap().size;
    assert_eq!(size(".linux"), b.linux.len() as u64);
    assert_eq!(size(".initrd"), b.initrd.len() as u64);
    // An independent PE reader sees the same sections at 4 KiB-aligned addresses.
    let out = Command::new("objdump")
        .args(["-h", "-w"])
        .arg(&b.uki)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [".osrel", ".cmdline", ".uname", ".initrd", ".linux"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name));
        let vma =
            u64::from_str_radix(line.unwrap().split_whitespace().nth(3).unwrap(), 16).unwrap();
        assert_eq!(vma % 4096, 0, "{name} at {vma:#x}");
    }
}

#[test]
fn authenticode_digest_matches_osslsigncode_after_sbsign() {
    let b = build();
    let d = b.dir.path();
    let key = d.join("db.key");
    let crt = d.join("db.crt");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test db/",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let signed = d.join("signed.efi");
    let ok = Command::new("sbsign")
        .arg("--key")
        .arg(&key)
        .arg("--cert")
        .arg(&crt)
        .arg("--output")
        .arg(&signed)
        .arg(&b.uki)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let (_, unsigned_info) = boot_assets::uki::inspect_uki(&b.uki).unwrap();
    let (_, info) = boot_assets::uki::inspect_uki(&signed).unwrap();
    assert!(info.signed);
    // Signing appends a certificate table; the Authenticode digest does not change.
    assert_eq!(info.authenticode_sha256, unsigned_info.authenticode_sha256);
    let out = Command::new("osslsigncode")
        .arg("verify")
        .arg("-in")
        .arg(&signed)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let digests: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("current message digest") || l.contains("calculated message digest"))
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(digests.len(), 2, "osslsigncode said: {text}");
    for d in digests {
        assert_eq!(d.replace(' ', ""), info.authenticode_sha256, "{text}");
    }
}

#[test]
fn store_imports_once_and_extracts_sections_byte_for_byte() {
    let b = build();
    let store = AssetStore::open(b.dir.path().join("assets")).unwrap();
    let meta = store.import_path(&b.uki, AssetKind::Uki).unwrap();
    assert_eq!(meta.name, "hadron.efi");
    let again = store.import_path(&b.uki, AssetKind::Uki).unwrap();
    assert_eq!(again, meta, "re-import is a no-op");
    assert_eq!(store.list().unwrap().len(), 1);
    let (_, path) = store.file(&meta.digest).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&b.uki).unwrap());
    let read = |s| std::fs::read(store.section(&meta.digest, s).unwrap()).unwrap();
    assert!(read(BootSection::Linux) == b.linux, "kernel differs");
    assert!(read(BootSection::Initrd) == b.initrd, "initrd differs");
    assert_eq!(read(BootSection::Cmdline), CMDLINE.as_bytes());
    // Bare hex works too; a bad digest is named.
    store
        .get(meta.digest.trim_start_matches("sha256:"))
        .unwrap();
    assert!(matches!(
        store.get("sha256:xyz"),
        Err(Error::BadDigest { .. })
    ));

    // gc: leftovers go, referenced assets stay, unreferenced ones go when asked.
    std::fs::write(store.root().join("tmp/.tmpHALF"), b"half an import").unwrap();
    std::fs::write(store.root().join("objects").join("0".repeat(64)), b"orphan").unwrap();
    let keep = [meta.digest.clone()].into_iter().collect();
    let r = store.gc(Some(&keep)).unwrap();
    assert_eq!((r.leftovers, r.unreferenced.len()), (2, 0));
    store.get(&meta.digest).unwrap();
    let r = store.gc(Some(&Default::default())).unwrap();
    assert_eq!(r.unreferenced, vec![meta.digest.clone()]);
    assert!(matches!(
        store.get(&meta.digest),
        Err(Error::NotFound { .. })
    ));
}

fn refused(store: &AssetStore, dir: &Path, name: &str, bytes: &[u8], expect: &str) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let err = store
        .import_path(&p, AssetKind::Uki)
        .unwrap_err()
        .to_string();
    assert!(err.contains(expect), "{name}: {err}");
    assert!(err.contains(name), "the error names the file: {err}");
    assert!(
        store.list().unwrap().is_empty(),
        "{name} left an asset behind"
    );
}

#[test]
fn broken_inputs_are_refused_with_the_reason() {
    let b = build();
    let dir = b.dir.path();
    let store = AssetStore::open(dir.join("assets")).unwrap();
    let uki = std::fs::read(&b.uki).unwrap();
    refused(&store, dir, "empty.efi", b"", "not a PE32+");
    refused(
        &store,
        dir,
        "true.elf",
        &std::fs::read("/bin/true").unwrap(),
        "not a PE32+",
    );
    refused(&store, dir, "half.efi", &uki[..uki.len() / 2], "truncated");
    refused(&store, dir, "headers.efi", &uki[..600], "");
    refused(
        &store,
        dir,
        "stub.efi",
        &std::fs::read(STUB).unwrap(),
        "no .linux section",
    );
    // A section header claiming 4 GiB of data.
    let image = boot_assets::pe::PeImage::read(&b.uki).unwrap();
    let idx = image
        .sections
        .iter()
        .position(|s| s.name == ".linux")
        .unwrap();
    let mut huge = uki.clone();
    let at = (image.section_table_offset + 40 * idx as u64 + 16) as usize;
    huge[at..at + 4].copy_from_slice(&0xffff_f000u32.to_le_bytes());
    refused(&store, dir, "huge.efi", &huge, "truncated or corrupt");
    // A UKI whose .cmdline claims to be enormous (but is inside the file) is refused, not read.
    let idx = image
        .sections
        .iter()
        .position(|s| s.name == ".cmdline")
        .unwrap();
    let mut big_text = uki.clone();
    let lin = image.section(".linux").unwrap();
    let at = (image.section_table_offset + 40 * idx as u64) as usize;
    big_text[at + 8..at + 12].copy_from_slice(&(lin.file_size as u32).to_le_bytes());
    big_text[at + 16..at + 20].copy_from_slice(&(lin.file_size as u32).to_le_bytes());
    big_text[at + 20..at + 24].copy_from_slice(&(lin.file_offset as u32).to_le_bytes());
    refused(&store, dir, "bigcmdline.efi", &big_text, "more than the");
    // Random bytes of every small length never panic.
    for n in 0..300 {
        let junk: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
        let p = dir.join("junk.efi");
        std::fs::write(&p, &junk).unwrap();
        assert!(boot_assets::uki::inspect_uki(&p).is_err());
    }
}

#[test]
fn loaders_import_without_being_ukis() {
    let dir = tempfile::tempdir().unwrap();
    let store = AssetStore::open(dir.path()).unwrap();
    let m = store
        .import_path(Path::new(STUB), AssetKind::Loader)
        .unwrap();
    assert_eq!(m.kind, AssetKind::Loader);
    assert!(m.efi.unwrap().uki.is_none());
}

/// PCR 11 computed from the UKI equals what systemd's own `systemd-measure calculate` (252, the
/// same version as the stub) predicts from the section files, with no boot phase.
#[test]
fn pcr11_agrees_with_systemd_measure() {
    let b = build();
    let (image, _) = boot_assets::uki::inspect_uki(&b.uki).unwrap();
    let p = boot_assets::pcr::pcr11(&b.uki, &image).unwrap();
    assert!(
        p.stub_version.as_deref().unwrap().starts_with("252"),
        "{p:?}"
    );
    assert_eq!(p.sections, [".linux", ".osrel", ".cmdline", ".initrd"]);
    let files = [
        ("linux", &b.linux[..]),
        ("osrel", OSREL.as_bytes()),
        ("cmdline", CMDLINE.as_bytes()),
        ("initrd", &b.initrd[..]),
    ];
    let mut cmd = Command::new("/usr/lib/systemd/systemd-measure");
    cmd.args(["calculate", "--bank=sha256", "--phase=", "--json=short"]);
    for (name, bytes) in files {
        let f = b.dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        cmd.arg(format!("--{name}={}", f.display()));
    }
    let out = cmd
        .output()
        .expect("systemd-measure (Debian's systemd package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sha256"][0]["hash"], p.sha256.as_str(), "{v}");
    // One byte of the initrd changed: another value.
    let mut other = b.initrd.clone();
    other[100] ^= 1;
    let uki2 = b.dir.path().join("other.efi");
    UkiBuilder::new()
        .section(".osrel", OSREL.as_bytes().to_vec())
        .section(".cmdline", CMDLINE.as_bytes().to_vec())
        .section(".initrd", other)
        .section(".linux", b.linux.clone())
        .build(Path::new(STUB), &uki2)
        .unwrap();
    let (image2, _) = boot_assets::uki::inspect_uki(&uki2).unwrap();
    assert_ne!(
        boot_assets::pcr::pcr11(&uki2, &image2).unwrap().sha256,
        p.sha256
    );
}
