//! Authenticode verification on real files: a UKI built on Debian's systemd-stub, signed with
//! `sbsign` by keys `openssl` makes here; every verdict is checked against `sbverify --cert`
//! (sbsigntool), an independent implementation.

use std::path::{Path, PathBuf};
use std::process::Command;

use boot_assets::signature::{self, TrustStore, Verdict};
use boot_assets::{Error, UkiBuilder};

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A small UKI: the real stub, a made-up kernel (verification does not care what it is).
fn build(dir: &Path) -> PathBuf {
    assert!(
        Path::new(STUB).is_file(),
        "missing {STUB}: run scripts/install-test-deps"
    );
    let uki = dir.join("hadron.efi");
    let linux: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    UkiBuilder::new()
        .section(".osrel", b"NAME=\"Hadron\"\nID=hadron\n".to_vec())
        .section(".cmdline", b"console=ttyS0".to_vec())
        .section(".linux", linux)
        .build(Path::new(STUB), &uki)
        .unwrap();
    uki
}

/// A key and a certificate `name` (self-signed, or issued by `ca` = (key, cert)).
fn key(dir: &Path, name: &str, cn: &str, ca: Option<(&Path, &Path)>) -> (PathBuf, PathBuf) {
    let (k, c) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    let subj = format!("/CN={cn}/");
    match ca {
        None => run(Command::new("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            ])
            .args(["-days", "1", "-subj", &subj, "-keyout"])
            .arg(&k)
            .arg("-out")
            .arg(&c)),
        Some((ca_key, ca_cert)) => {
            let csr = dir.join(format!("{name}.csr"));
            run(Command::new("openssl")
                .args([
                    "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", &subj,
                ])
                .arg("-keyout")
                .arg(&k)
                .arg("-out")
                .arg(&csr));
            run(Command::new("openssl")
                .args(["x509", "-req", "-sha256", "-days", "1", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(ca_cert)
                .arg("-CAkey")
                .arg(ca_key)
                .args(["-CAcreateserial", "-out"])
                .arg(&c))
        }
    };
    (k, c)
}

fn sign(uki: &Path, (k, c): &(PathBuf, PathBuf), out: &Path) {
    run(Command::new("sbsign")
        .arg("--key")
        .arg(k)
        .arg("--cert")
        .arg(c)
        .arg("--output")
        .arg(out)
        .arg(uki));
}

/// Whether `sbverify --cert cert file` accepts it.
fn sbverify(cert: &Path, file: &Path) -> bool {
    Command::new("sbverify")
        .arg("--cert")
        .arg(cert)
        .arg(file)
        .output()
        .unwrap()
        .status
        .success()
}

fn trust(certs: &[&Path]) -> TrustStore {
    TrustStore::load(&certs.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn verdicts_agree_with_sbverify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let uki = build(d);
    let db = key(d, "db", "Test db", None);
    let other = key(d, "other", "Other", None);
    let db_trust = trust(&[&db.1]);

    // Signed with the db key: trusted by it.
    let signed = d.join("signed.efi");
    sign(&uki, &db, &signed);
    let v = signature::verify(&signed, &db_trust).unwrap();
    assert_eq!(
        v,
        Verdict::Trusted {
            signer: "CN=Test db".into(),
            issuer: "CN=Test db".into(),
            by: "CN=Test db".into(),
            by_file: db.1.clone(),
        }
    );
    assert!(sbverify(&db.1, &signed));

    // Signed by another key: intact, not trusted; trusted once its certificate is in db too.
    let by_other = d.join("other.efi");
    sign(&uki, &other, &by_other);
    let v = signature::verify(&by_other, &db_trust).unwrap();
    match &v {
        Verdict::Untrusted { signer, reason, .. } => {
            assert_eq!(signer, "CN=Other");
            assert!(reason.starts_with("no db certificate trusts"), "{reason}");
        }
        v => panic!("{v:?}"),
    }
    assert!(!sbverify(&db.1, &by_other));
    assert!(signature::verify(&by_other, &trust(&[&db.1, &other.1]))
        .unwrap()
        .is_trusted());
    assert!(signature::verify(&by_other, &TrustStore::default())
        .unwrap()
        .describe()
        .contains("no db certificates are configured"));

    // Unsigned.
    assert_eq!(
        signature::verify(&uki, &db_trust).unwrap(),
        Verdict::Unsigned
    );
    assert!(!sbverify(&db.1, &uki));

    // One byte of a section changed after signing: the signature covers another image.
    let mut bytes = std::fs::read(&signed).unwrap();
    let image = boot_assets::pe::PeImage::read(&signed).unwrap();
    let osrel = image.section(".osrel").unwrap();
    bytes[osrel.file_offset as usize] ^= 0x20;
    let flipped = d.join("flipped.efi");
    std::fs::write(&flipped, &bytes).unwrap();
    let v = signature::verify(&flipped, &db_trust).unwrap();
    assert!(matches!(v, Verdict::DigestMismatch { .. }), "{v:?}");
    assert!(!sbverify(&db.1, &flipped));

    // The last byte of the PKCS#7 (its signature value) changed: the signature does not verify.
    let mut bytes = std::fs::read(&signed).unwrap();
    let (table, _) = image.cert_table.unwrap();
    let blob = table as usize + 8;
    assert_eq!(
        &bytes[blob..blob + 2],
        &[0x30, 0x82],
        "PKCS#7 SEQUENCE, 2-byte length"
    );
    let der_len = 4 + u16::from_be_bytes([bytes[blob + 2], bytes[blob + 3]]) as usize;
    bytes[blob + der_len - 1] ^= 0x01;
    let broken = d.join("broken.efi");
    std::fs::write(&broken, &bytes).unwrap();
    let v = signature::verify(&broken, &db_trust).unwrap();
    match &v {
        Verdict::BadSignature { reason } => {
            assert!(reason.contains("does not verify with the key"), "{reason}")
        }
        v => panic!("{v:?}"),
    }
    assert!(!sbverify(&db.1, &broken));
}

#[test]
fn a_signer_issued_by_a_db_certificate_is_trusted_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let uki = build(d);
    let ca = key(d, "ca", "Test CA", None);
    let leaf = key(d, "leaf", "Test signer", Some((&ca.0, &ca.1)));
    let signed = d.join("signed.efi");
    sign(&uki, &leaf, &signed);
    let v = signature::verify(&signed, &trust(&[&ca.1])).unwrap();
    assert_eq!(
        v,
        Verdict::Trusted {
            signer: "CN=Test signer".into(),
            issuer: "CN=Test CA".into(),
            by: "CN=Test CA".into(),
            by_file: ca.1.clone(),
        }
    );
    assert!(sbverify(&ca.1, &signed));
    // A CA of the same name but another key issued nothing here.
    let impostor = key(&d.join("."), "impostor", "Test CA", None);
    let v = signature::verify(&signed, &trust(&[&impostor.1])).unwrap();
    assert_eq!(v.name(), "untrusted", "{v:?}");
    assert!(!sbverify(&impostor.1, &signed));
}

#[test]
fn certificate_files_pem_bundles_der_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = key(d, "a", "A", None);
    let b = key(d, "b", "B", None);
    let bundle = d.join("bundle.pem");
    let text = std::fs::read_to_string(&a.1).unwrap() + &std::fs::read_to_string(&b.1).unwrap();
    std::fs::write(&bundle, text).unwrap();
    let der = d.join("a.der");
    run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&a.1)
        .arg("-out")
        .arg(&der));
    let t = trust(&[&bundle, &der]);
    let subjects: Vec<&str> = t.certs().iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["CN=A", "CN=B", "CN=A"]);
    let junk = d.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let err = TrustStore::load(std::slice::from_ref(&junk)).unwrap_err();
    assert!(matches!(err, Error::Certificates { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );
    let missing = d.join("missing.pem");
    let err = TrustStore::load(std::slice::from_ref(&missing))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
