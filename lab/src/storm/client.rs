//! One simulated machine from power-on to registration, following only what the servers tell
//! it, as firmware does:
//!
//! 1. PXE ROM: DHCP (DORA), then TFTP of the boot file the ACK names from its next-server.
//! 2. iPXE: DHCP again (user class `iPXE`), then the script at the URL the ACK names; a script
//!    `chain`s onwards (`${platform}` is `efi`) until what comes back is not a script: that is
//!    the UKI, and the arguments of the `chain` line are its kernel command line.
//! 3. The installer: GET the `config_url=` of that command line, read `token`, `progress` and
//!    `register` from it, POST progress (`installing`), POST register (the Kairos shape).
//!
//! Every request leaves from the address the machine leased: that address is how the server
//! knows the machine (see the README's security model).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::dhcp::{DhcpClients, Stage};
use super::http::{Client, Url};
use super::tftp;

/// The phases of one boot, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The PXE ROM's DORA.
    Dhcp,
    /// The loader over TFTP (size probe and read).
    Tftp,
    /// iPXE's DORA.
    DhcpIpxe,
    /// The iPXE script(s), until the chain reaches the UKI.
    Script,
    Uki,
    /// The Kairos config from `config_url`.
    Config,
    /// POST progress, then POST register.
    Register,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Dhcp,
        Phase::Tftp,
        Phase::DhcpIpxe,
        Phase::Script,
        Phase::Uki,
        Phase::Config,
        Phase::Register,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Dhcp => "dhcp",
            Phase::Tftp => "tftp",
            Phase::DhcpIpxe => "dhcp-ipxe",
            Phase::Script => "script",
            Phase::Uki => "uki",
            Phase::Config => "config",
            Phase::Register => "register",
        }
    }
}

/// What happened to one machine.
#[derive(Clone, Debug, Default)]
pub struct MachineRun {
    /// Duration of each phase it finished, in [`Phase::ALL`] order.
    pub phases: Vec<(Phase, Duration)>,
    /// The phase it stopped in and why.
    pub failure: Option<(Phase, String)>,
    /// Bytes received over TFTP and HTTP.
    pub bytes: u64,
    /// Power-on to registered.
    pub total: Option<Duration>,
    pub ip: Option<Ipv4Addr>,
    /// Boots started again after a failure (with [`Shared::reboot`]).
    pub reboots: usize,
    /// Every ACK this machine got, in order: (its address, the server that ACKed, when).
    pub acks: Vec<(Ipv4Addr, Ipv4Addr, Instant)>,
    /// Progress and register POSTs a server answered 2xx: events it acknowledged.
    pub acked_progress: usize,
    pub acked_register: usize,
    /// Why each failed boot before the last one failed (with [`Shared::reboot`]).
    pub reboot_causes: Vec<(Phase, String)>,
}

/// What every machine shares.
pub struct Shared {
    pub dhcp: DhcpClients,
    /// No machine runs past this.
    pub deadline: Instant,
    /// A boot that fails is started again from the PXE ROM's DHCP after this pause, as
    /// firmware retries its boot order (None: a failure is final).
    pub reboot: Option<Duration>,
    /// With `--ha`, every server's address: the installed system's requests (config,
    /// progress, register) go to a service name that resolves to all of them, so one that
    /// fails at the transport or with a 5xx is retried on the next (see [`os_request`]);
    /// empty: retried on the server its URL names.
    pub servers: Vec<Ipv4Addr>,
    /// Machines registered so far (what a kill schedule watches).
    pub registered: Arc<std::sync::atomic::AtomicUsize>,
}

const SCRIPT_LIMIT: usize = 64 * 1024;

/// Runs machine `i` to the end (registered, failed, or the deadline).
pub async fn run(shared: Arc<Shared>, i: usize) -> MachineRun {
    let mut run = MachineRun::default();
    let started = Instant::now();
    let mut phase = Phase::Dhcp;
    let attempts = async {
        loop {
            run.phases.clear();
            let r = boot(&shared, i, &mut run, &mut phase).await;
            match (r, shared.reboot) {
                (Err(e), Some(pause)) => {
                    run.reboots += 1;
                    run.reboot_causes.push((phase, e));
                    tokio::time::sleep(pause).await;
                }
                (r, _) => return r,
            }
        }
    };
    let result = tokio::time::timeout_at(shared.deadline, attempts)
        .await
        .unwrap_or_else(|_| Err("deadline".into()));
    match result {
        Ok(()) => {
            run.total = Some(started.elapsed());
            shared
                .registered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => run.failure = Some((phase, e)),
    }
    run
}

async fn boot(
    shared: &Shared,
    i: usize,
    run: &mut MachineRun,
    phase: &mut Phase,
) -> Result<(), String> {
    let mut t = Instant::now();
    let done = |run: &mut MachineRun, p: Phase, t: &mut Instant| {
        run.phases.push((p, t.elapsed()));
        *t = Instant::now();
    };
    // 1. PXE ROM.
    *phase = Phase::Dhcp;
    let lease = shared.dhcp.dora(i, Stage::PxeRom, shared.deadline).await?;
    if lease.file.is_empty() {
        return Err("no boot file in the ACK".into());
    }
    run.ip = Some(lease.ip);
    run.acks.push((lease.ip, lease.server, Instant::now()));
    done(run, Phase::Dhcp, &mut t);
    *phase = Phase::Tftp;
    let server = if lease.next_server.is_unspecified() {
        return Err("no next-server in the ACK".into());
    } else {
        lease.next_server
    };
    run.bytes += tftp::fetch(lease.ip, server, &lease.file).await?;
    done(run, Phase::Tftp, &mut t);
    // 2. iPXE.
    *phase = Phase::DhcpIpxe;
    let lease = shared.dhcp.dora(i, Stage::Ipxe, shared.deadline).await?;
    if !lease.file.starts_with("http://") {
        return Err(format!("iPXE got boot file {:?}, not a URL", lease.file));
    }
    run.ip = Some(lease.ip);
    run.acks.push((lease.ip, lease.server, Instant::now()));
    done(run, Phase::DhcpIpxe, &mut t);
    *phase = Phase::Script;
    let mut ipxe = Client::new(lease.ip);
    let mut target = lease.file.clone();
    let mut args = String::new();
    let mut scripts = 0;
    loop {
        let url = Url::parse(&target)?;
        let resp = ipxe.request("GET", &url, &[], &[], SCRIPT_LIMIT).await?;
        if resp.status != 200 {
            return Err(format!("GET {} answered {}", url.target, resp.status));
        }
        run.bytes += resp.length;
        if !resp.head.starts_with(b"#!ipxe") {
            break;
        }
        scripts += 1;
        if scripts > 8 {
            return Err("more than 8 chained scripts".into());
        }
        let text = String::from_utf8_lossy(&resp.head).into_owned();
        let (next, next_args, sleep) = chain_of(&text, i)?;
        if let Some(s) = sleep {
            tokio::time::sleep(s).await;
        }
        (target, args) = (next, next_args);
        // What follows a script may be the UKI: its download is the UKI phase.
        if looks_like_script(&target) {
            continue;
        }
        done(run, Phase::Script, &mut t);
        *phase = Phase::Uki;
    }
    if *phase != Phase::Uki {
        return Err(format!(
            "{target} is not a script, but the chain did not name it as the image"
        ));
    }
    done(run, Phase::Uki, &mut t);
    drop(ipxe);
    // 3. The installer: a fresh client, as the booted kernel's userspace is.
    *phase = Phase::Config;
    let config_url = args
        .split_whitespace()
        .find_map(|w| w.strip_prefix("config_url="))
        .ok_or_else(|| format!("no config_url= in the kernel command line {args:?}"))?
        .to_string();
    let mut agent = Client::new(lease.ip);
    let resp = os_request(
        shared,
        &mut agent,
        ("GET", &Url::parse(&config_url)?),
        &[],
        &[],
        SCRIPT_LIMIT,
    )
    .await?;
    if resp.status != 200 {
        return Err(format!("GET config answered {}", resp.status));
    }
    run.bytes += resp.length;
    let config = String::from_utf8_lossy(&resp.head).into_owned();
    let value = |key: &str| -> Result<String, String> {
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}:")).map(str::trim))
            .map(|v| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_string()))
            .ok_or_else(|| format!("the config has no {key}:"))
    };
    let (token, progress, register) = (value("token")?, value("progress")?, value("register")?);
    done(run, Phase::Config, &mut t);
    *phase = Phase::Register;
    let bearer = format!("Bearer {token}");
    let json = [("Content-Type", "application/json")];
    let body = serde_json::json!({"state": "installing", "phase": "storm", "percent": 50,
        "message": "lab storm: installing"});
    let resp = os_request(
        shared,
        &mut agent,
        ("POST", &Url::parse(&progress)?),
        &[json[0], ("Authorization", &bearer)],
        body.to_string().as_bytes(),
        4096,
    )
    .await?;
    if !(200..300).contains(&resp.status) {
        return Err(format!(
            "POST progress answered {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.head)
        ));
    }
    run.acked_progress += 1;
    let body = serde_json::json!({"registrationToken": token,
        "machineID": format!("{:032x}", 0x5a57_0000_0000u64 + i as u64),
        "hostname": format!("storm-{i}"), "agentVersion": "lab-storm",
        "addresses": [lease.ip.to_string()], "bootState": "active_boot"});
    let resp = os_request(
        shared,
        &mut agent,
        ("POST", &Url::parse(&register)?),
        &json,
        body.to_string().as_bytes(),
        4096,
    )
    .await?;
    if !(200..300).contains(&resp.status) {
        return Err(format!(
            "POST register answered {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.head)
        ));
    }
    run.acked_register += 1;
    done(run, Phase::Register, &mut t);
    Ok(())
}

/// How long the installed system keeps retrying one request when its machine reboots after
/// failures (`--ha`, `--crash-kills`): a server restarted after a crash is back within that.
const OS_RETRY_FOR: Duration = Duration::from_secs(30);

/// A request of the installer or the installed system. Without [`Shared::reboot`], one try.
/// With it, as an agent retries: a try that fails at the transport (refused, reset, closed
/// before the answer) or answers 5xx is retried a second later, for [`OS_RETRY_FOR`], and with
/// several servers ([`Shared::servers`]) each retry goes to the next server's address, same
/// path, as to a service name that resolves to every server (a DNS name with one address per
/// server, or a VIP). That is safe because each of these requests is idempotent on the
/// server: a config read, a progress report, and a registration whose replay (same
/// machine-id, already `ready`) changes nothing. A firmware download (script, UKI) is not
/// retried this way: a failed one reboots the machine.
async fn os_request(
    shared: &Shared,
    client: &mut Client,
    (method, url): (&str, &Url),
    headers: &[(&str, &str)],
    body: &[u8],
    keep: usize,
) -> Result<super::http::Response, String> {
    let until = Instant::now() + OS_RETRY_FOR;
    let start = shared
        .servers
        .iter()
        .position(|s| std::net::IpAddr::V4(*s) == url.addr.ip())
        .unwrap_or(0);
    let mut k = 0;
    loop {
        let mut at = url.clone();
        if !shared.servers.is_empty() {
            at.addr
                .set_ip(shared.servers[(start + k) % shared.servers.len()].into());
        }
        k += 1;
        let last_try = shared.reboot.is_none() || Instant::now() >= until;
        match client.request(method, &at, headers, body, keep).await {
            Ok(r) if r.status < 500 || last_try => return Ok(r),
            Err(e) if last_try => return Err(e),
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether a chain target is another script rather than the image: our scripts chain to
/// `/boot/…` endpoints or `.ipxe` files; images are assets or `.efi` files.
fn looks_like_script(url: &str) -> bool {
    let path = url.split('?').next().unwrap_or(url);
    path.ends_with(".ipxe") || path.contains("/boot/ipxe")
}

/// The first `chain` line of an iPXE script: its target (with `${platform}`, `${buildarch}`
/// and `${net0/mac}` filled in as a UEFI x86-64 iPXE would), its arguments, and the `sleep`
/// before it, if any.
fn chain_of(script: &str, i: usize) -> Result<(String, String, Option<Duration>), String> {
    let mac = super::plan::Plan::mac_text(i);
    let mut sleep = None;
    for line in script.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix("sleep ") {
            sleep = s.trim().parse().ok().map(Duration::from_secs);
        }
        let Some(rest) = line.strip_prefix("chain ") else {
            continue;
        };
        let rest = rest.split("||").next().unwrap_or(rest);
        let mut words = rest.split_whitespace().filter(|w| !w.starts_with("--"));
        let target = words.next().ok_or("a chain line without a URL")?;
        let fill = |s: &str| {
            s.replace("${platform}", "efi")
                .replace("${buildarch}", "x86_64")
                .replace("${net0/mac}", &mac)
        };
        let args: Vec<String> = words.map(fill).collect();
        return Ok((fill(target), args.join(" "), sleep));
    }
    Err(format!(
        "a script without a chain line: {:?}",
        script.lines().take(4).collect::<Vec<_>>().join(" | ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lines_are_followed_as_ipxe_would() {
        let s = "#!ipxe\nisset ${platform} || goto no\nchain --replace --autofree http://198.18.0.1:8080/boot/ipxe?mac=aa&platform=${platform}\nexit 1\n";
        let (t, a, _) = chain_of(s, 0).unwrap();
        assert_eq!(t, "http://198.18.0.1:8080/boot/ipxe?mac=aa&platform=efi");
        assert_eq!(a, "");
        let s = "#!ipxe\necho x\nchain --autofree http://h:1/assets/ab/uki.efi console=ttyS0 config_url=http://h:1/config/m || goto failed\n";
        let (t, a, _) = chain_of(s, 0).unwrap();
        assert_eq!(t, "http://h:1/assets/ab/uki.efi");
        assert_eq!(a, "console=ttyS0 config_url=http://h:1/config/m");
        assert!(looks_like_script(
            "http://198.18.0.1:8080/boot/ipxe?mac=aa&platform=efi"
        ));
        assert!(!looks_like_script("http://h:1/assets/ab/uki.efi"));
    }
}
