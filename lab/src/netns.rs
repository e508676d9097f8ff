//! The lab network: a namespace with a random name holding a bridge (198.18.0.1/24 and
//! 2001:2::1/64, RFC 2544 / RFC 5180 benchmarking ranges) and tap devices for the VMs, created
//! inside the namespace. Nothing connects it to the host network. Optionally a second namespace
//! for the "site" DHCP server (proxy mode), joined to the bridge by a veth pair. Everything is
//! deleted on drop, which also runs when a Ctrl-C interrupts a run (see [`crate::interrupted`]).
//!
//! High availability ([`Topology::new_ha`]): the bridge's own address is [`HA_BRIDGE_IP`] (etcd
//! and the router advertisements live there), and each provisioner gets a namespace of its own
//! at [`HA_SERVER_IPS`], joined to the bridge by a veth pair, so each binds DHCP's port 67 and
//! can be killed alone.
//!
//! Impaired ([`Topology::new_impaired`], `lab run --impair`): the taps join a second bridge,
//! `brvm`, with no address; `br0` and `brvm` are joined only through a namespace of their own
//! (`labimp-…`) where [`crate::impair_link`] forwards the frames with loss and delay: `imp0`
//! (port of `br0`) ↔ `eth0` and `imp1` (port of `brvm`) ↔ `eth1`, two veth pairs. IPv6 is off in
//! that namespace, so its interfaces send nothing of their own.

use std::process::Command;

use anyhow::{bail, Context};

pub const SERVER_IP: &str = "198.18.0.1";
pub const SITE_IP: &str = "198.18.0.2";
/// High availability: the bridge's address in the lab namespace (the etcd member listens here).
pub const HA_BRIDGE_IP: &str = "198.18.0.10";
/// High availability: the two provisioners' addresses, each in its own namespace.
pub const HA_SERVER_IPS: [&str; 2] = ["198.18.0.1", "198.18.0.3"];
/// Impaired: the veth ends in the lab namespace, `br0`'s port first, then `brvm`'s.
pub const IMPAIR_LAB_PORTS: [&str; 2] = ["imp0", "imp1"];
/// Impaired: their peers in the impairment namespace (the servers' side first).
pub const IMPAIR_SIDES: [&str; 2] = ["eth0", "eth1"];

pub(crate) fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn suffix() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The VMs' bridge `brvm` in the lab namespace `n` and the impairment namespace `imp` joined to
/// both bridges (see the module documentation).
fn impairment(n: &str, imp: &str) -> anyhow::Result<()> {
    ip(&["-n", n, "link", "add", "brvm", "type", "bridge"])?;
    ip(&[
        "-n",
        n,
        "link",
        "set",
        "brvm",
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
    ])?;
    ip(&["-n", n, "link", "set", "brvm", "addrgenmode", "none"])?;
    ip(&["-n", n, "link", "set", "brvm", "up"])?;
    // `brvm` is in the lab namespace, whose stack owns the servers' addresses: it must not answer
    // or take in anything itself, or the VMs' frames would reach the servers through it,
    // around the link (ARP for 198.18.0.1 answered with brvm's MAC).
    sysctl(
        n,
        &[
            "net.ipv4.conf.brvm.arp_ignore=8",
            "net.ipv6.conf.brvm.disable_ipv6=1",
        ],
    )?;
    ip(&["netns", "add", imp])?;
    // Before the veths exist, so theirs start with IPv6 off too.
    sysctl(
        imp,
        &[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )?;
    ip(&["-n", imp, "link", "set", "lo", "up"])?;
    for (port, side, bridge) in [("imp0", "eth0", "br0"), ("imp1", "eth1", "brvm")] {
        ip(&[
            "-n", n, "link", "add", port, "type", "veth", "peer", "name", side, "netns", imp,
        ])?;
        ip(&["-n", n, "link", "set", port, "master", bridge])?;
        ip(&["-n", n, "link", "set", port, "up"])?;
        ip(&["-n", imp, "link", "set", side, "up"])?;
    }
    Ok(())
}

/// `sysctl -w` of `settings` in namespace `ns`.
fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
        .args(settings)
        .output()
        .context("running sysctl")?;
    anyhow::ensure!(
        out.status.success(),
        "sysctl {} in {ns}: {}",
        settings.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

pub struct Topology {
    pub ns: String,
    pub site_ns: Option<String>,
    pub taps: usize,
    /// High availability: each provisioner's namespace, in the order of [`HA_SERVER_IPS`].
    pub server_ns: Vec<String>,
    /// Impaired: the namespace between the servers' bridge and the VMs' (see the module
    /// documentation).
    pub impair_ns: Option<String>,
}

impl Topology {
    /// A namespace with the bridge and `taps` tap devices (`tap0`…).
    pub fn new(taps: usize, with_site: bool) -> anyhow::Result<Topology> {
        Self::build(taps, with_site, false, false)
    }

    /// The HA shape (see the module documentation): the bridge at [`HA_BRIDGE_IP`], `taps`
    /// taps, and one namespace per address of [`HA_SERVER_IPS`] on the bridge.
    pub fn new_ha(taps: usize) -> anyhow::Result<Topology> {
        Self::build(taps, false, true, false)
    }

    /// [`Topology::new`] or [`Topology::new_ha`] with the VMs behind the impairment namespace
    /// (see the module documentation); [`crate::impair_link::start`] then forwards.
    pub fn new_impaired(taps: usize, with_site: bool, ha: bool) -> anyhow::Result<Topology> {
        Self::build(taps, with_site, ha, true)
    }

    fn build(taps: usize, with_site: bool, ha: bool, impaired: bool) -> anyhow::Result<Topology> {
        let s = suffix();
        let mut t = Topology {
            ns: format!("lab-{s}"),
            site_ns: with_site.then(|| format!("labsite-{s}")),
            taps,
            server_ns: Vec::new(),
            impair_ns: None,
        };
        let bridge_ip = if ha { HA_BRIDGE_IP } else { SERVER_IP };
        ip(&["netns", "add", &t.ns])?;
        let ns = t.ns.clone();
        let n = ns.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            n,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{bridge_ip}/24"),
            "dev",
            "br0",
        ])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            "2001:2::1/64",
            "dev",
            "br0",
            "nodad",
        ])?;
        ip(&["-n", n, "link", "set", "br0", "up"])?;
        let vm_bridge = if impaired {
            t.impair_ns = Some(format!("labimp-{s}"));
            impairment(n, t.impair_ns.as_deref().expect("just set"))?;
            "brvm"
        } else {
            "br0"
        };
        for i in 0..taps {
            let tap = format!("tap{i}");
            ip(&["-n", n, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ip(&["-n", n, "link", "set", &tap, "master", vm_bridge])?;
            ip(&["-n", n, "link", "set", &tap, "up"])?;
        }
        if let Some(site) = &t.site_ns {
            ip(&["netns", "add", site])?;
            ip(&["-n", site, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", n, "link", "add", "vsite", "type", "veth", "peer", "name", "eth0", "netns",
                site,
            ])?;
            ip(&["-n", n, "link", "set", "vsite", "master", "br0"])?;
            ip(&["-n", n, "link", "set", "vsite", "up"])?;
            ip(&[
                "-n",
                site,
                "addr",
                "add",
                &format!("{SITE_IP}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", site, "link", "set", "eth0", "up"])?;
        }
        if ha {
            for (i, addr) in HA_SERVER_IPS.iter().enumerate() {
                let sv = format!("labsv{i}-{s}");
                ip(&["netns", "add", &sv])?;
                t.server_ns.push(sv.clone());
                ip(&["-n", &sv, "link", "set", "lo", "up"])?;
                let port = format!("vsv{i}");
                ip(&[
                    "-n", n, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                    &sv,
                ])?;
                ip(&["-n", n, "link", "set", &port, "master", "br0"])?;
                ip(&["-n", n, "link", "set", &port, "up"])?;
                ip(&[
                    "-n",
                    &sv,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ])?;
                ip(&["-n", &sv, "link", "set", "eth0", "up"])?;
            }
        }
        Ok(t)
    }

    /// `ip netns exec <namespace of provisioner i> <program>` (HA).
    pub fn exec_server(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.server_ns[i], program]);
        c
    }

    /// `ip netns exec <ns> <program>`.
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    pub fn exec_site(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            self.site_ns.as_deref().expect("site namespace"),
            program,
        ]);
        c
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [
            Some(&self.ns),
            self.site_ns.as_ref(),
            self.impair_ns.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(&self.server_ns)
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
