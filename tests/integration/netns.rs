//! Network namespaces created by a test for itself: random name, loopback only, deleted on drop.
//! Never connected to the host network.

use std::process::Command;

pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Netns {
    /// Creates `<prefix>-<random>` with `lo` up. Needs root: fails loudly otherwise.
    pub fn new(prefix: &str) -> Netns {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test creates a network namespace and must run as root (CI does)"
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}-{:x}{:x}", std::process::id(), nanos);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The same command, run inside the namespace.
    pub fn wrap(&self, c: &Command) -> Command {
        let mut w = self.command(c.get_program().to_str().expect("UTF-8 program path"));
        w.args(c.get_args());
        w
    }

    /// Drops `percent`% of the TFTP DATA (opcode 3) and ACK (opcode 4) datagrams arriving on any
    /// interface, at random (nftables matching the first bytes of the UDP payload). ACK 0 — the
    /// answer to an OACK — is spared: a lost ACK 0 makes the server resend its OACK, and atftp
    /// aborts on a second OACK ("unexpected OACK") whatever the server.
    pub fn drop_tftp_data_and_acks(&self, percent: u32) {
        let rules = format!(
            "table inet loss {{\n chain input {{\n  type filter hook input priority 0;\n  meta l4proto udp @th,64,16 {{ 3, 4 }} @th,64,32 != 0x00040000 numgen random mod 100 < {percent} drop\n }}\n}}\n"
        );
        let o = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(rules.as_bytes())?;
                c.wait_with_output()
            });
        let o = o.expect("running nft (nftables)");
        assert!(
            o.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
