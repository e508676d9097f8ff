//! Two full-mode provisioners on one segment sharing one etcd (issue 13), with a real DHCP
//! client (busybox udhcpc): both offer, the client's REQUEST names one and the other drops it;
//! the server that ACKed is killed (`kill -9`), and the client's REBIND (broadcast, no option
//! 54; with a 60 s lease udhcpc rebinds at T1 = 30 s) is ACKed by the survivor with the same
//! address, from the shared lease. Then etcd is killed: a new client gets an offer (offers
//! come from memory) but no ACK (no ACK without a durable lease), and the survivor's
//! `/metrics` says `provisioner_store_up 0`. Needs root.
//!
//! ```text
//!  ns a: 198.18.0.1 ─┐
//!  ns b: 198.18.0.2 ─┼─ br0 (ns sw: 198.18.0.10, etcd) ─┬─ vc0 (ns c: udhcpc)
//!                    │                                   └─ vc1 (ns c: udhcpc, after etcd died)
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inventory_etcd::test_server::EtcdServer;

use crate::harness::{binary, stderr, Server};
use crate::netns::Netns;

fn ip(ns: &Netns, args: &[&str]) {
    let o = Command::new("ip")
        .args(["-n", &ns.name])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ip -n {} {args:?}: {}",
        ns.name,
        stderr(&o)
    );
}

/// A veth from the switch's bridge (port `port`) to `ns` (named `inner`, with `addr` if any).
fn attach(sw: &Netns, port: &str, ns: &Netns, inner: &str, addr: Option<&str>) {
    ip(
        sw,
        &[
            "link", "add", port, "type", "veth", "peer", "name", inner, "netns", &ns.name,
        ],
    );
    ip(sw, &["link", "set", port, "master", "br0"]);
    ip(sw, &["link", "set", port, "up"]);
    if let Some(a) = addr {
        ip(ns, &["addr", "add", a, "dev", inner]);
    }
    ip(ns, &["link", "set", inner, "up"]);
}

fn config(server_ip: &str) -> String {
    format!(
        r#"
[dhcp]
mode = "full"
server_ip = "{server_ip}"
[[dhcp.subnet]]
network = "198.18.0.0/24"
range = "198.18.0.100-198.18.0.199"
lease_time = "60s"
"#
    )
}

/// `provisioner serve` in `ns` on `addr`, sharing the etcd at `etcd`.
fn serve(ns: &Netns, addr: &str, etcd: &str, dir: &std::path::Path) -> Server {
    let data = dir.join(format!("data-{addr}"));
    let cfg = dir.join(format!("{addr}.toml"));
    std::fs::write(&cfg, config(addr)).unwrap();
    let mut c = Command::new(binary());
    c.args([
        "serve",
        "--listen",
        &format!("{addr}:8080"),
        "--no-tftp",
        "--config",
    ])
    .arg(&cfg)
    .arg("--data-dir")
    .arg(&data)
    .args(["--etcd-endpoints", etcd]);
    Server::spawn(ns.wrap(&c), &data)
}

/// `curl` from the switch namespace; the body of a 2xx answer.
fn curl(sw: &Netns, url: &str, token: Option<&str>) -> Result<String, String> {
    let mut c = sw.command("curl");
    c.args(["-sS", "-f", "--max-time", "15", url]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let o = c.output().unwrap();
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(stderr(&o))
    }
}

/// udhcpc's script: logs `event ip serverid` and configures the address (a REBIND's ACK is
/// unicast to ciaddr, which needs ARP for it).
const SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew) ip addr replace "$ip/24" dev "$interface"; echo "$1 $ip $serverid" >> "$LOG" ;;
  deconfig) ip addr flush dev "$interface"; echo "deconfig" >> "$LOG" ;;
  *) echo "$1" >> "$LOG" ;;
esac
"#;

/// Waits (bounded) until the udhcpc log has a line `event …`; its words.
fn wait_line(log: &std::path::Path, event: &str, from: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().skip(from).find(|l| l.starts_with(event)) {
            return l.split_whitespace().map(str::to_string).collect();
        }
        assert!(
            Instant::now() < deadline,
            "no {event:?} from udhcpc within {within:?}; its log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_servers_one_etcd_the_survivor_acks_the_rebind_and_nothing_is_acked_without_etcd() {
    let (sw, a, b, c) = (
        Netns::new("hasw"),
        Netns::new("haa"),
        Netns::new("hab"),
        Netns::new("hac"),
    );
    ip(&sw, &["link", "add", "br0", "type", "bridge"]);
    ip(&sw, &["addr", "add", "198.18.0.10/24", "dev", "br0"]);
    ip(&sw, &["link", "set", "br0", "up"]);
    attach(&sw, "pa", &a, "eth0", Some("198.18.0.1/24"));
    attach(&sw, "pb", &b, "eth0", Some("198.18.0.2/24"));
    attach(&sw, "pc0", &c, "vc0", None);
    attach(&sw, "pc1", &c, "vc1", None);
    ip(&c, &["link", "set", "vc0", "address", "52:54:00:13:00:01"]);
    ip(&c, &["link", "set", "vc1", "address", "52:54:00:13:00:02"]);

    let mut etcd = EtcdServer::start_in_netns(&sw.name, "198.18.0.10", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let sa = serve(&a, "198.18.0.1", &etcd.endpoint, tmp.path());
    let sb = serve(&b, "198.18.0.2", &etcd.endpoint, tmp.path());
    let mut servers = [("198.18.0.1", sa), ("198.18.0.2", sb)];
    let token = servers[0].1.token();

    let script = tmp.path().join("udhcpc.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = tmp.path().join("udhcpc.log");
    let mut udhcpc = c
        .command("busybox")
        .args(["udhcpc", "-f", "-i", "vc0", "-t", "10", "-T", "1", "-s"])
        .arg(&script)
        .env("LOG", &log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bound = wait_line(&log, "bound", 0, Duration::from_secs(30));
    let (leased, first) = (bound[1].clone(), bound[2].clone());
    let seen = std::fs::read_to_string(&log).unwrap().lines().count();

    // The other server saw the broadcast REQUEST naming the first and dropped it.
    let k = servers
        .iter()
        .position(|(addr, _)| *addr == first)
        .expect("ACKed by one of ours");
    let survivor = servers[1 - k].0;
    let metrics = curl(&sw, &format!("http://{survivor}:8080/metrics"), None).unwrap();
    assert!(
        metrics.contains("client chose another server"),
        "the survivor dropped the REQUEST naming {first}:\n{metrics}"
    );

    // Kill the server that ACKed; the client's rebind is ACKed by the survivor, same address.
    servers[k].1.kill9();
    let renew = wait_line(&log, "renew", seen, Duration::from_secs(90));
    let _ = udhcpc.kill();
    let _ = udhcpc.wait();
    assert_eq!(
        (renew[1].as_str(), renew[2].as_str()),
        (leased.as_str(), survivor),
        "rebind ACKed by the survivor with the same address; log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let leases = curl(
        &sw,
        &format!("http://{survivor}:8080/api/v1/leases"),
        Some(&token),
    )
    .unwrap();
    let leases: serde_json::Value = serde_json::from_str(&leases).unwrap();
    let holders: Vec<&serde_json::Value> = leases
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ip"] == leased.as_str())
        .collect();
    assert_eq!(holders.len(), 1, "{leases:#}");
    assert_eq!(holders[0]["mac"], "52:54:00:13:00:01", "{leases:#}");

    // etcd gone: offers still come (from memory), ACKs never (no durable lease).
    etcd.kill();
    let o = c
        .command("busybox")
        .args([
            "udhcpc", "-f", "-n", "-q", "-i", "vc1", "-t", "3", "-T", "2", "-s",
        ])
        .arg(&script)
        .env("LOG", tmp.path().join("udhcpc-no-etcd.log"))
        .output()
        .unwrap();
    let out = format!("{}{}", crate::harness::stdout(&o), stderr(&o));
    assert!(
        !o.status.success() && !out.contains("obtained"),
        "no lease without etcd: {out}"
    );
    assert!(
        out.contains("broadcasting select"),
        "it was offered an address: {out}"
    );
    let metrics = curl(&sw, &format!("http://{survivor}:8080/metrics"), None).unwrap();
    assert!(
        metrics.contains("provisioner_store_up 0\n")
            && metrics.contains("provisioner_store_last_error_age_seconds "),
        "{metrics}"
    );
    drop(servers);
}
