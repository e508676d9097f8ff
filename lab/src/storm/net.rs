//! The storm's network: two namespaces with random names joined by one veth pair, like a
//! provisioning server's uplink to the racks' routed network (or, for `--ha`, four namespaces
//! on one bridge: see [`StormNet::new_ha`]). Nothing connects them to the host.
//!
//! ```text
//!  stsrv-XXXX: srv0 198.18.0.1/15 ── veth ── cli0 198.18.0.2/15 :stcli-XXXX
//!              route 198.19.0.0/16 via 198.18.0.2        local 198.19.0.0/16 dev lo
//! ```
//!
//! Every simulated machine has its own address in 198.19.0.0/16. The client namespace treats the
//! whole /16 as local (a `local` route: any address in it can be bound without being added to
//! an interface), so each machine binds its TFTP and TCP sockets to the address it leased; the
//! server reaches them through one router (198.18.0.2), as it reaches racks behind their
//! top-of-rack switches, so its neighbour table holds one entry whatever N is. DHCP broadcasts
//! still cross the link (full mode), and relay agents bind their giaddr in the /16 (relayed mode).
//! Every namespace is deleted on drop (which also runs after a Ctrl-C, see [`crate::interrupted`]).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{bail, Context};

/// The server's address (DHCP server id, TFTP, HTTP).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The client namespace's own address: the "router" in front of the machines.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The interface of the server namespace on the link.
pub const SERVER_IF: &str = "srv0";
/// The interface of the client namespace on the link.
pub const CLIENT_IF: &str = "cli0";
/// High availability: the second provisioner's address (its namespace's `srv0`).
pub const SERVER_B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// High availability: the etcd members' addresses, all on `et0` of the etcd namespace.
pub const ETCD_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 0, 11),
    Ipv4Addr::new(198, 18, 0, 12),
    Ipv4Addr::new(198, 18, 0, 13),
];
/// High availability: the bridge in the client namespace every namespace's veth is a port of.
pub const BRIDGE: &str = "br0";

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    ip(&[
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ])
}

fn suffix() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The namespaces; deleted on drop.
pub struct StormNet {
    /// Where the server (ours or the reference stack) runs; with [`StormNet::new_ha`], the
    /// first provisioner (`SERVER_IP`).
    pub server_ns: String,
    /// Where every simulated machine and relay agent lives.
    pub client_ns: String,
    /// The client namespace's interface on the link: `cli0`, or the bridge `br0`.
    pub client_if: &'static str,
    /// High availability only: the second provisioner's namespace (`SERVER_B_IP`) and the
    /// etcd members' (`ETCD_IPS`).
    pub ha: Option<(String, String)>,
}

impl StormNet {
    /// Creates both namespaces, the veth pair, the addresses and routes described above.
    pub fn new() -> anyhow::Result<StormNet> {
        let s = suffix();
        let net = StormNet {
            server_ns: format!("stsrv-{s}"),
            client_ns: format!("stcli-{s}"),
            client_if: CLIENT_IF,
            ha: None,
        };
        ip(&["netns", "add", &net.server_ns])?;
        ip(&["netns", "add", &net.client_ns])?;
        net.tune()?;
        let (sv, cl) = (net.server_ns.as_str(), net.client_ns.as_str());
        ip(&[
            "-n", sv, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF, "netns",
            cl,
        ])?;
        ip(&[
            "-n",
            cl,
            "addr",
            "add",
            &format!("{ROUTER_IP}/15"),
            "dev",
            CLIENT_IF,
        ])?;
        ip(&["-n", cl, "link", "set", CLIENT_IF, "up"])?;
        net.server_side(sv, SERVER_IP)?;
        net.machines_local()?;
        Ok(net)
    }

    /// The high-availability layout: two provisioners and three etcd members, each namespace
    /// a port of one bridge in the client namespace (one broadcast domain, as servers on a
    /// rack's provisioning VLAN):
    ///
    /// ```text
    ///  stsrv-X:  srv0 198.18.0.1/15 ──┐
    ///  stsrvb-X: srv0 198.18.0.3/15 ──┼── br0 198.18.0.2/15 :stcli-X (machines)
    ///  stetcd-X: et0 198.18.0.11–13/15 ┘
    /// ```
    pub fn new_ha() -> anyhow::Result<StormNet> {
        let s = suffix();
        let net = StormNet {
            server_ns: format!("stsrv-{s}"),
            client_ns: format!("stcli-{s}"),
            client_if: BRIDGE,
            ha: Some((format!("stsrvb-{s}"), format!("stetcd-{s}"))),
        };
        let (b, e) = net.ha.clone().expect("set above");
        for ns in [&net.server_ns, &net.client_ns, &b, &e] {
            ip(&["netns", "add", ns])?;
        }
        net.tune()?;
        let cl = net.client_ns.as_str();
        ip(&["-n", cl, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&[
            "-n",
            cl,
            "addr",
            "add",
            &format!("{ROUTER_IP}/15"),
            "dev",
            BRIDGE,
        ])?;
        ip(&["-n", cl, "link", "set", BRIDGE, "up"])?;
        let ports = [
            (net.server_ns.as_str(), SERVER_IF, "pa"),
            (b.as_str(), SERVER_IF, "pb"),
            (e.as_str(), "et0", "pe"),
        ];
        for (ns, inner, port) in ports {
            ip(&[
                "-n", cl, "link", "add", port, "type", "veth", "peer", "name", inner, "netns", ns,
            ])?;
            ip(&["-n", cl, "link", "set", port, "master", BRIDGE])?;
            ip(&["-n", cl, "link", "set", port, "up"])?;
        }
        net.server_side(&net.server_ns, SERVER_IP)?;
        net.server_side(&b, SERVER_B_IP)?;
        for a in ETCD_IPS {
            ip(&["-n", &e, "addr", "add", &format!("{a}/15"), "dev", "et0"])?;
        }
        ip(&["-n", &e, "link", "set", "et0", "up"])?;
        net.machines_local()?;
        Ok(net)
    }

    fn all(&self) -> Vec<&str> {
        let mut v = vec![self.server_ns.as_str(), self.client_ns.as_str()];
        if let Some((b, e)) = &self.ha {
            v.extend([b.as_str(), e.as_str()]);
        }
        v
    }

    fn tune(&self) -> anyhow::Result<()> {
        for ns in self.all() {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            // Replies to relayed requests and to machines leave towards addresses that are
            // routed, not on-link; strict reverse-path checks would drop nothing here, but a
            // host default of 1 must not decide the result of a benchmark.
            sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")?;
            sysctl(ns, "net.ipv4.conf.default.rp_filter", "0")?;
            sysctl(ns, "net.core.somaxconn", "65535")?;
            sysctl(ns, "net.ipv4.tcp_max_syn_backlog", "65535")?;
        }
        sysctl(
            &self.client_ns,
            "net.ipv4.ip_local_port_range",
            "10000 65000",
        )
    }

    /// A server namespace's `srv0`: its address, up, and the route to the machines' /16.
    fn server_side(&self, sv: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        ip(&[
            "-n",
            sv,
            "addr",
            "add",
            &format!("{addr}/15"),
            "dev",
            SERVER_IF,
        ])?;
        ip(&["-n", sv, "link", "set", SERVER_IF, "up"])?;
        ip(&[
            "-n",
            sv,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            &ROUTER_IP.to_string(),
            "dev",
            SERVER_IF,
        ])
    }

    /// Every address of the machines' /16 is local in the client namespace.
    fn machines_local(&self) -> anyhow::Result<()> {
        ip(&[
            "-n",
            &self.client_ns,
            "route",
            "add",
            "local",
            "198.19.0.0/16",
            "dev",
            "lo",
        ])
    }

    /// Drops `percent` % of the packets crossing the link in each direction, at random, where
    /// they arrive (nftables `numgen random` on the input hook of both namespaces: this kernel
    /// has no netem, and a drop on the output hook would fail the sender's `send` instead of
    /// losing the packet on the wire).
    pub fn set_loss(&self, percent: u32) -> anyhow::Result<()> {
        anyhow::ensure!(self.ha.is_none(), "--loss is not supported with --ha");
        for (ns, dev) in [(&self.client_ns, CLIENT_IF), (&self.server_ns, SERVER_IF)] {
            let rules = format!(
                "table inet stormloss {{\n chain input {{\n  type filter hook input priority 0;\n  iifname \"{dev}\" numgen random mod 100 < {percent} drop\n }}\n}}\n"
            );
            let file = tempfile::NamedTempFile::new()?;
            std::fs::write(file.path(), rules)?;
            ip(&[
                "netns",
                "exec",
                ns,
                "nft",
                "-f",
                file.path().to_str().context("temp path")?,
            ])
            .context("nftables (apt-get install nftables) for --loss")?;
        }
        Ok(())
    }

    /// `ip netns exec <server ns> <program>`.
    pub fn exec_server(&self, program: &str) -> Command {
        exec_in(&self.server_ns, program)
    }
}

/// `ip netns exec <ns> <program>`.
pub fn exec_in(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

impl Drop for StormNet {
    fn drop(&mut self) {
        for ns in self.all() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into the named network namespace: sockets it creates afterwards
/// (and threads it spawns) live there.
pub fn enter(ns: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: setns on a descriptor we own; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one (every machine holds a socket or two).
pub fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
