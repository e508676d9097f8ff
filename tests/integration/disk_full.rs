//! Disk full (issue 19, item 3): the data directory on a small tmpfs the test mounts, filled
//! with a filler file while the real server runs. A lease write that fails sends no ACK; an
//! asset import fails clearly and leaves nothing; API writes answer 507 with what to do; an
//! installed machine still gets "boot from disk"; and once the filler is deleted everything
//! works again without a restart, and a restart finds what was stored before the disk filled.
//!
//! tmpfs reports a full disk at `write` (ENOSPC; its fsync never fails): redb meets it when a
//! commit writes its pages, the asset store when it streams the upload.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use inventory::{Mac, Machine, MachineSpec, RedbStore, Store, Timestamp};
use serde_json::json;

use crate::harness::{macs, Api, Server};
use crate::loopback_dhcp::{dora, from_address, octets, relay_socket, LeaseServer};

/// A tmpfs of a few MiB mounted on a fresh directory under /tmp; unmounted and removed on drop,
/// also when the test fails (declare it before the server, so the server stops first).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("disk-full-")
            .tempdir()
            .unwrap()
            .keep();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs on {} (root?)", dir.display());
        SmallDisk { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Writes the filler until the file system is full (bounded by its size); the bytes written.
    fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let block = vec![0x5au8; 64 * 1024];
        let mut written = 0u64;
        // Full pages first, then single bytes for the last partial page.
        for chunk in [&block[..], &block[..1]] {
            loop {
                match f.write(chunk) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("filling {}: {e}", self.dir.display()),
                }
                assert!(written < 1 << 30, "the tmpfs never filled");
            }
        }
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// What a disk-full answer must say: the data directory, that the disk is full, what to do.
fn assert_disk_full_detail(detail: &str, data: &Path) {
    assert!(
        detail.contains(&data.display().to_string()),
        "names the data dir {}: {detail}",
        data.display()
    );
    assert!(
        detail.contains("no space left"),
        "says the disk is full: {detail}"
    );
    assert!(
        detail.contains("free space under"),
        "says what to do: {detail}"
    );
}

/// CSV imports of `batch` new machines each until one is refused; that reply and the MACs of
/// the refused batch. Panics when none is refused within `rounds`.
fn import_until_refused(
    api: &Api,
    base: u32,
    batch: u32,
    rounds: u32,
) -> (u16, String, Vec<String>) {
    for round in 0..rounds {
        let ms = macs(base + round * batch, batch);
        let csv: String = ms
            .iter()
            .map(|m| format!("{m},host-{},,site=disk-full-test\n", m.replace(':', "")))
            .collect();
        let r = api.csv(csv);
        if r.status != 201 && r.status != 200 {
            return (r.status, r.text, ms);
        }
    }
    panic!("{rounds} imports of {batch} machines all succeeded on a full disk");
}

fn machine_exists(api: &Api, mac: &str) -> bool {
    api.get(&format!("/api/v1/machines/{mac}")).status == 200
}

#[test]
fn api_writes_on_a_full_disk_answer_507_and_work_again_once_space_is_freed() {
    let disk = SmallDisk::mount("24m");
    let data = disk.data();
    let mut server = Server::start_in(&data, &[]);
    let api = server.http();
    let before = macs(0x0df0_0000, 1).remove(0);
    let r = api.json("POST", "/api/v1/machines", json!({"mac": before}));
    assert_eq!(r.status, 201, "{}", r.text);

    disk.fill();
    let (status, text, refused) = import_until_refused(&api, 0x0df1_0000, 400, 60);
    assert_eq!(
        status, 507,
        "a full disk is 507 Insufficient Storage: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "disk_full", "{text}");
    assert_disk_full_detail(body["detail"].as_str().unwrap(), &data);
    // Reads go on while the disk is full; the refused batch is not half there.
    assert!(machine_exists(&api, &before));
    assert!(
        !refused.iter().any(|m| machine_exists(&api, m)),
        "part of a refused import is visible"
    );

    disk.free();
    let after = macs(0x0df2_0000, 1).remove(0);
    let r = api.json("POST", "/api/v1/machines", json!({"mac": after}));
    assert_eq!(
        r.status, 201,
        "the next write once space is freed: {}",
        r.text
    );
    let r = api.csv(format!("{},again,,\n", refused[0]));
    assert!(
        r.status == 201 || r.status == 200,
        "the refused import again: {}",
        r.text
    );

    assert!(server.terminate().success(), "{}", server.log());
    drop(server);
    let server = Server::start_in(&data, &[]);
    let api = server.http();
    for m in [&before, &after, &refused[0]] {
        assert!(machine_exists(&api, m), "{m} after a restart");
    }
    assert!(
        !machine_exists(&api, &refused[1]),
        "a refused machine after a restart"
    );
}

#[test]
fn an_asset_import_on_a_full_disk_fails_clearly_and_leaves_nothing_behind() {
    let disk = SmallDisk::mount("24m");
    let data = disk.data();
    let server = Server::start_in(&data, &[]);
    let api = server.http();
    disk.fill();
    let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let upload = |body: Vec<u8>| {
        api.send(
            api.request("POST", "/api/v1/assets?name=filler-loader.efi&kind=loader")
                .body(body),
        )
    };
    let r = upload(body.clone());
    assert_eq!(r.status, 507, "{}", r.text);
    assert_eq!(r.body["error"], "disk_full", "{}", r.text);
    assert_disk_full_detail(r.body["detail"].as_str().unwrap(), &data);
    let listed = api.get("/api/v1/assets");
    assert_eq!(
        listed.body,
        json!([]),
        "no catalogue entry: {}",
        listed.text
    );
    for sub in ["tmp", "objects", "sections", "meta"] {
        let left: Vec<_> = std::fs::read_dir(data.join("assets").join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "assets/{sub} keeps {left:?}");
    }

    disk.free();
    let r = upload(body);
    assert_eq!(r.status, 201, "the import once space is freed: {}", r.text);
    assert_eq!(api.get("/api/v1/assets").body.as_array().unwrap().len(), 1);
}

/// One relayed DORA for `mac`, one attempt: the ACKed address.
fn one_dora(port: u16, mac: &str, xid: u32) -> Option<Ipv4Addr> {
    let (relay, sock) = relay_socket();
    dora(
        &sock,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        relay,
        octets(mac),
        xid,
    )
}

fn leased(api: &Api, mac: &str) -> bool {
    let leases = api.get("/api/v1/leases").body;
    leases
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["mac"].as_str() == Some(mac))
}

#[test]
fn a_lease_write_on_a_full_disk_sends_no_ack_and_the_retry_gets_one_once_space_is_freed() {
    let disk = SmallDisk::mount("24m");
    let tmp = tempfile::tempdir().unwrap();
    let data = disk.data();
    let mut ls = LeaseServer::start(tmp.path(), &data, "", &[]);
    let api = ls.server.http();
    let first = macs(0x0df3_0000, 1).remove(0);
    let first_ip =
        one_dora(ls.dhcp_port, &first, 0x0df3_0001).expect("a lease before the disk fills");

    disk.fill();
    // New bindings until one cannot be stored (the lease file has some room of its own).
    let started = Instant::now();
    let unacked = macs(0x0df4_0000, 2000)
        .into_iter()
        .enumerate()
        .find(|(i, m)| one_dora(ls.dhcp_port, m, 0x0df4_0000 + *i as u32).is_none())
        .map(|(_, m)| m)
        .expect("a DORA without an ACK on a full disk");
    eprintln!("first DORA without an ACK after {:?}", started.elapsed());
    assert!(
        !leased(&api, &unacked),
        "a lease without an ACK is not stored"
    );
    // The client retries; still full: still no ACK.
    assert_eq!(one_dora(ls.dhcp_port, &unacked, 0x0df5_0001), None);
    let metrics = api.get("/metrics").text;
    assert!(
        metrics.contains("provisioner_dhcp_dropped_total{reason=\"store error\"}"),
        "{metrics}"
    );

    disk.free();
    let got = one_dora(ls.dhcp_port, &unacked, 0x0df5_0002).expect("an ACK once space is freed");
    assert!(leased(&api, &unacked));

    assert!(ls.server.terminate().success(), "{}", ls.server.log());
    drop(ls);
    let ls = LeaseServer::start(tmp.path(), &data, "", &[]);
    let api = ls.server.http();
    let leases = api.get("/api/v1/leases").body;
    for (mac, ip) in [(&first, first_ip), (&unacked, got)] {
        assert!(
            leases.as_array().unwrap().iter().any(
                |l| l["mac"].as_str() == Some(mac) && l["ip"].as_str() == Some(&ip.to_string())
            ),
            "{mac} {ip} after a restart: {leases}"
        );
    }
}

#[test]
fn an_installed_machine_boots_from_disk_while_the_disk_is_full() {
    let disk = SmallDisk::mount("24m");
    let tmp = tempfile::tempdir().unwrap();
    let data = disk.data();
    let ls = LeaseServer::start(tmp.path(), &data, "", &[]);
    let api = ls.server.http();
    let mac = macs(0x0df6_0000, 1).remove(0);
    let r = api.json("POST", "/api/v1/machines", json!({"mac": mac}));
    assert_eq!(r.status, 201, "{}", r.text);
    let out = ls.server.cli(&["machines", "token", &mac]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = api.without_token().json(
        "POST",
        "/api/v1/nodes/register",
        json!({"registrationToken": token, "machineID": "0df60000", "bootState": "active_boot"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let ip = one_dora(ls.dhcp_port, &mac, 0x0df6_0001).expect("the machine's lease");
    let machine = from_address(&api, ip);
    let script = format!("/boot/ipxe?mac={mac}&platform=efi");
    let before = machine.get(&script);
    assert!(before.text.contains("booting from disk"), "{}", before.text);

    disk.fill();
    let (status, text, _) = import_until_refused(&api, 0x0df7_0000, 400, 60);
    assert_eq!(status, 507, "the store is out of space: {text}");
    for _ in 0..3 {
        let during = machine.get(&script);
        assert_eq!(during.status, 200, "{}", during.text);
        assert_eq!(during.text, before.text, "the same boot-from-disk script");
    }
}

/// Writers sharing a group commit on a full disk: each gets `DiskFull` naming the directory (not
/// redb's "previous I/O error"); reads go on; once space is freed the same store writes again
/// and a re-open finds everything written before the disk filled and after it was freed.
#[test]
fn concurrent_store_writers_on_a_full_disk_get_disk_full_and_the_store_recovers() {
    let disk = SmallDisk::mount("16m");
    let data = disk.data();
    std::fs::create_dir(&data).unwrap();
    let path = data.join("inventory.redb");
    let store = std::sync::Arc::new(RedbStore::open(&path).unwrap());
    let machine = |i: u32| {
        let mac: Mac = macs(0x0df8_0000 + i, 1)[0].parse().unwrap();
        let spec = MachineSpec {
            hostname: Some(format!("h{i}")),
            ..Default::default()
        };
        Machine::registered(mac, spec, Timestamp(1))
    };
    store
        .create_machines(vec![machine(0)], "test", Timestamp(1))
        .unwrap();
    disk.fill();

    let deadline = Instant::now() + Duration::from_secs(60);
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut refused = Vec::new();
                for i in 0..400u32 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let batch: Vec<Machine> = (0..20)
                        .map(|k| machine(1 + t * 100_000 + i * 20 + k))
                        .collect();
                    if let Err(e) = store.create_machines(batch, "test", Timestamp(2)) {
                        refused.push(e);
                        if refused.len() >= 3 {
                            break;
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refused: Vec<inventory::Error> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(!refused.is_empty(), "no write was refused on a full disk");
    eprintln!("{} writes refused", refused.len());
    for e in &refused {
        match e {
            inventory::Error::DiskFull { dir, .. } => assert_eq!(dir, &data),
            other => panic!("not DiskFull: {other}"),
        }
    }
    assert_eq!(
        store
            .machine(machine(0).mac)
            .unwrap()
            .unwrap()
            .spec
            .hostname
            .as_deref(),
        Some("h0")
    );

    disk.free();
    store
        .create_machines(vec![machine(99_999_999)], "test", Timestamp(3))
        .expect("a write once space is freed");
    let count = store.machines().unwrap().len();
    drop(store);
    let store = RedbStore::open(&path).expect("the store opens after the disk was full");
    assert_eq!(store.machines().unwrap().len(), count);
    assert!(store.machine(machine(99_999_999).mac).unwrap().is_some());
}
