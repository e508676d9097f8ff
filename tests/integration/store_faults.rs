//! A corrupt or foreign store (issue 19, item 6): a truncated or bit-flipped `inventory.redb`
//! or `inventory.leases.redb`, a store a newer schema wrote, a data directory or store file
//! owned by another user. `provisioner serve` must exit non-zero at start with an error that
//! names the file and says what to do — never start on a silently empty or altered inventory,
//! never panic.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inventory::{Lease, Mac, Machine, MachineSpec, RedbStore, Store, Timestamp};

use crate::harness::binary;

const HOSTNAME: &str = "zz-canary-hostname";
const LEASE_HOSTNAME: &str = "zz-lease-canary";
/// `nobody` on Debian.
const NOBODY: u32 = 65534;

/// A data directory whose inventory holds one machine and whose lease file holds one lease.
fn populated() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let store = RedbStore::open(&data.join("inventory.redb")).unwrap();
    let spec = MachineSpec {
        hostname: Some(HOSTNAME.into()),
        ..Default::default()
    };
    let mac: Mac = "52:54:00:aa:bb:01".parse().unwrap();
    store
        .create_machines(
            vec![Machine::registered(mac, spec, Timestamp(1))],
            "test",
            Timestamp(1),
        )
        .unwrap();
    store
        .put_leases(&[Lease {
            ip: "198.18.0.100".parse().unwrap(),
            mac,
            expires: Timestamp(u64::MAX / 2),
            hostname: Some(LEASE_HOSTNAME.into()),
            observed: false,
            client_id: None,
        }])
        .unwrap();
    drop(store);
    (tmp, data)
}

/// Starts `provisioner serve` on `data` (optionally through `wrap`, e.g. `setpriv`), expects it
/// to exit non-zero within 30 s and returns its stderr. A server that starts anyway is killed
/// and fails the test.
fn refused(data: &Path, wrap: &[&str]) -> String {
    let (program, mut args) = match wrap.split_first() {
        Some((p, rest)) => (PathBuf::from(p), rest.iter().map(Into::into).collect()),
        None => (binary(), Vec::<std::ffi::OsString>::new()),
    };
    if !wrap.is_empty() {
        args.push(binary().into());
    }
    let mut child = Command::new(program)
        .args(args)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tftp-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the server started on a faulty store; log:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status}; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "a panic:\n{err}");
    err
}

fn assert_names(err: &str, file: &Path, advice: &[&str]) {
    assert!(
        err.contains(&file.display().to_string()),
        "names {}:\n{err}",
        file.display()
    );
    for a in advice {
        assert!(err.contains(a), "says {a:?}:\n{err}");
    }
}

const DAMAGED: &[&str] = &["restore the file from a backup", "move it aside"];

fn truncate_to_half(file: &Path) {
    let len = std::fs::metadata(file).unwrap().len();
    assert!(len > 8192, "{} is {len} bytes", file.display());
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

/// Flips the lowest bit of the first byte of every copy of `needle` in `file` (`z` becomes `{`,
/// still valid inside a JSON string: a plain open would read an altered record, not fail).
fn flip_bit(file: &Path, needle: &str) {
    let mut bytes = std::fs::read(file).unwrap();
    let n = needle.as_bytes();
    let at: Vec<usize> = bytes
        .windows(n.len())
        .enumerate()
        .filter(|(_, w)| *w == n)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "{needle} not in {}", file.display());
    for i in at {
        bytes[i] ^= 1;
    }
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_truncated_inventory_is_refused_by_name() {
    let (_tmp, data) = populated();
    let file = data.join("inventory.redb");
    truncate_to_half(&file);
    assert_names(&refused(&data, &[]), &file, DAMAGED);
}

#[test]
fn an_inventory_truncated_to_nothing_is_not_a_new_empty_one() {
    let (_tmp, data) = populated();
    let file = data.join("inventory.redb");
    std::fs::File::create(&file).unwrap();
    assert_names(
        &refused(&data, &[]),
        &file,
        &["is empty (0 bytes)", "restore the file from a backup"],
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "left as it was");
}

#[test]
fn a_bit_flip_in_the_inventory_is_refused_by_name() {
    let (_tmp, data) = populated();
    let file = data.join("inventory.redb");
    flip_bit(&file, HOSTNAME);
    assert_names(&refused(&data, &[]), &file, DAMAGED);
}

#[test]
fn a_truncated_lease_file_is_refused_by_name() {
    let (_tmp, data) = populated();
    let file = data.join("inventory.leases.redb");
    truncate_to_half(&file);
    assert_names(&refused(&data, &[]), &file, DAMAGED);
}

#[test]
fn a_bit_flip_in_the_lease_file_is_refused_by_name() {
    let (_tmp, data) = populated();
    let file = data.join("inventory.leases.redb");
    flip_bit(&file, LEASE_HOSTNAME);
    assert_names(&refused(&data, &[]), &file, DAMAGED);
}

#[test]
fn a_store_from_a_newer_schema_is_refused_by_name() {
    let (_tmp, data) = populated();
    let file = data.join("inventory.redb");
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(meta).unwrap();
            t.insert("schema_version", inventory::redb_store::SCHEMA_VERSION + 1)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    assert_names(
        &refused(&data, &[]),
        &file,
        &["is newer than this program supports", "run that version"],
    );
}

/// Runs `f` only as root (chown needs it); CI runs the suite as root.
fn as_root(f: impl FnOnce()) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    f()
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

#[test]
fn a_data_dir_owned_by_another_user_is_refused() {
    as_root(|| {
        let (_tmp, data) = populated();
        chown(&data, NOBODY);
        let err = refused(&data, &[]);
        assert_names(&err, &data, &["belongs to uid 65534", "chown -R"]);
    });
}

#[test]
fn a_store_file_owned_by_another_user_is_refused() {
    as_root(|| {
        let (_tmp, data) = populated();
        let file = data.join("inventory.redb");
        chown(&file, NOBODY);
        let err = refused(&data, &[]);
        assert_names(&err, &file, &["belongs to uid 65534", "chown -R"]);
    });
}

#[test]
fn a_store_file_the_server_user_cannot_open_is_refused() {
    as_root(|| {
        // The server runs as nobody on a data directory it owns, holding an inventory only root
        // may read (mode 0600): what a service user meets after someone ran the server with sudo.
        let (tmp, data) = populated();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(&data, NOBODY);
        let file = data.join("inventory.redb");
        let err = refused(
            &data,
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
        );
        assert_names(&err, &file, &["Permission denied", "chown -R"]);
    });
}
