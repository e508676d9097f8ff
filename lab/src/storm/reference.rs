//! The reference stack the storm is compared with, in the same server namespace and on the same
//! link: dnsmasq (Debian 2.89) for DHCP and TFTP with the same loader, nginx (Debian 1.22) for
//! a static iPXE script, the same UKI and a static config, and nginx's `return` as the minimal
//! register and progress endpoint. Tuned as an operator would for a storm (settings as in the
//! project's reference benchmarks): `tftp-max` raised from dnsmasq's default 50 to 4096,
//! `no-ping`, a lease limit above N, nginx with `sendfile` and enough connections.
//!
//! The machines run the very same client: the DHCP boot files, the script's `chain` line and
//! the config's `token`/`progress`/`register` keys lead them through the same steps.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use super::net::{StormNet, SERVER_IF, SERVER_IP};
use super::plan::{Plan, FULL_RANGE};
use super::server::{Processes, HTTP_PORT};

/// The loader the PXE ROM fetches (the same file our server hands out by default).
pub const LOADER: &str = "snponly.efi";

fn dnsmasq_conf(plan: &Plan, work: &Path, tftp_root: &Path) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "port=0\ninterface={SERVER_IF}\nbind-interfaces");
    if plan.relayed {
        for r in 0..plan.racks() {
            let k = plan.rack(r);
            let _ = writeln!(c, "dhcp-range={},{},255.255.255.192,1h", k.first, k.last);
        }
    } else {
        let _ = writeln!(
            c,
            "dhcp-range={},{},255.254.0.0,1h",
            FULL_RANGE.0, FULL_RANGE.1
        );
    }
    let _ = writeln!(
        c,
        "dhcp-lease-max=200000\ndhcp-authoritative\nno-ping\nuser=root\nquiet-dhcp\nquiet-tftp\n\
         dhcp-leasefile={}\nlog-facility={}",
        work.join("dnsmasq.leases").display(),
        work.join("dnsmasq.log").display()
    );
    // iPXE (option 175 present) gets the script URL, the PXE ROM the loader over TFTP.
    let _ = writeln!(
        c,
        "dhcp-match=set:ipxe,175\ndhcp-boot=tag:!ipxe,{LOADER},,{SERVER_IP}\n\
         dhcp-boot=tag:ipxe,http://{SERVER_IP}:{HTTP_PORT}/boot.ipxe"
    );
    let _ = writeln!(
        c,
        "enable-tftp\ntftp-root={}\ntftp-max=4096",
        tftp_root.display()
    );
    c
}

fn nginx_conf(work: &Path, root: &Path, machines: usize) -> String {
    let conns = (machines * 2 + 1024).max(4096);
    format!(
        "user root;\nworker_processes auto;\nworker_rlimit_nofile {};\npid {pid};\nerror_log {err} warn;\n\
         events {{ worker_connections {conns}; }}\n\
         http {{\n  default_type application/octet-stream;\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
         \x20 keepalive_requests 100000;\n  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy;\n\
         \x20 fastcgi_temp_path {t}/fcgi; uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n\
         \x20 server {{\n    listen {SERVER_IP}:{HTTP_PORT};\n    root {root};\n\
         \x20   location = /boot.ipxe {{ default_type text/plain; }}\n\
         \x20   location /api/v1/nodes/ {{ default_type application/json; return 200 '{{\"id\":\"reference\",\"apiKey\":\"reference\"}}'; }}\n\
         \x20 }}\n}}\n",
        conns * 2 + 64,
        pid = work.join("nginx.pid").display(),
        err = work.join("nginx-error.log").display(),
        t = work.join("nginx-tmp").display(),
        root = root.display(),
    )
}

/// Waits until something listens on `port` (`udp` or `tcp`) in the server namespace, by
/// asking `ss` (10 s at most).
fn wait_port(net: &StormNet, proto: &str, port: u16) -> anyhow::Result<()> {
    let flag = if proto == "udp" { "-Hlun" } else { "-Hltn" };
    for _ in 0..200 {
        let out = net
            .exec_server("ss")
            .args([flag, &format!("sport = :{port}")])
            .output()?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {proto} port {port} in the server namespace")
}

/// Writes the reference's files (loader, script, UKI link, config) and starts dnsmasq and nginx.
pub fn start(net: &StormNet, plan: &Plan, work: &Path, uki: &Path) -> anyhow::Result<Processes> {
    for tool in ["dnsmasq", "nginx"] {
        anyhow::ensure!(
            which(tool),
            "{tool} is not installed: run bench/storm.sh (it installs dnsmasq and nginx from Debian) or apt-get install {tool}"
        );
    }
    let tftp = work.join("ref-tftp");
    let www = work.join("ref-www");
    std::fs::create_dir_all(&tftp)?;
    std::fs::create_dir_all(&www)?;
    std::fs::create_dir_all(work.join("nginx-tmp"))?;
    let loader = Path::new("/usr/lib/ipxe").join(LOADER);
    std::fs::copy(&loader, tftp.join(LOADER))
        .with_context(|| format!("{} (Debian package ipxe)", loader.display()))?;
    let base = format!("http://{SERVER_IP}:{HTTP_PORT}");
    std::fs::write(
        www.join("boot.ipxe"),
        format!("#!ipxe\nchain --autofree {base}/uki.efi console=ttyS0 config_url={base}/config.yaml || goto failed\nexit 1\n:failed\nsleep 10\nchain --replace --autofree {base}/boot.ipxe\n"),
    )?;
    let _ = std::fs::remove_file(www.join("uki.efi"));
    std::os::unix::fs::symlink(uki, www.join("uki.efi"))?;
    std::fs::write(
        www.join("config.yaml"),
        format!("#cloud-config\ninstall:\n  device: \"/dev/vda\"\n  auto: true\n  reboot: true\nprovisioner:\n  url: \"{base}\"\n  token: \"reference\"\n  register: \"{base}/api/v1/nodes/register\"\n  progress: \"{base}/api/v1/nodes/progress\"\n"),
    )?;
    let dconf = work.join("dnsmasq.conf");
    std::fs::write(&dconf, dnsmasq_conf(plan, work, &tftp))?;
    let nconf = work.join("nginx.conf");
    std::fs::write(&nconf, nginx_conf(work, &www, plan.machines))?;
    let mut procs = Processes::default();
    procs.children.push(
        net.exec_server("dnsmasq")
            .arg("-k")
            .arg("-C")
            .arg(&dconf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("dnsmasq.stderr"))?)
            .spawn()
            .context("starting dnsmasq")?,
    );
    procs.children.push(
        net.exec_server("nginx")
            .arg("-c")
            .arg(&nconf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("nginx.stderr"))?)
            .spawn()
            .context("starting nginx")?,
    );
    wait_port(net, "udp", 67)?;
    wait_port(net, "udp", 69)?;
    wait_port(net, "tcp", HTTP_PORT)?;
    Ok(procs)
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(tool).is_file())
}
