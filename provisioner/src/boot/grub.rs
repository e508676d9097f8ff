//! GRUB netboot for x86-64 UEFI machines (Debian's `grubnetx64.efi`, the loader MAAS- and
//! Foreman-style racks chainload), rendered from typed values like the iPXE scripts.
//!
//! The flow, for a machine whose `boot.loader` is `grubnetx64.efi`:
//!
//! 1. DHCP hands it `grubnetx64.efi`; the firmware loads it by TFTP
//!    ([`crate::tftp::grub_files`], which also serves GRUB's modules).
//! 2. GRUB's prefix is `(tftp,SERVER)/grub`; it reads `grub/grub.cfg`: [`bootstrap`], the same
//!    bytes for every machine. It loads `http.mod` and, in a loop, sources `/boot/grub` over HTTP.
//! 3. `GET /boot/grub` ([`config`]) answers the machine's own config, chosen by the address the
//!    request comes from — the server's own evidence (an active lease, or a binding proxy mode
//!    observed; [`crate::identity`]) — never by a MAC or name in the request. Install: GRUB
//!    loads the UKI's `.linux` and `.initrd` over HTTP with the full kernel command line (as the
//!    BIOS iPXE path does); hold: a message and a wait, then the loop asks again; installed:
//!    boot from the disk.
//!
//! Quoting: GRUB's script language expands `$…` and treats quotes, `\`, `;`, `|`, `&`, `<`, `>`
//! and braces specially outside single quotes, and nothing inside them. Every value we render
//! is single-quoted and holds no `'` ([`Cmdline`] refuses it, [`GrubText`] replaces it).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use boot_assets::{parse_digest, BootSection};
use inventory::{EventKind, Mac};

use super::plan::{self, BootView};
use super::script::{Cmdline, Url};
use super::{handlers, Base};
use crate::app::App;
use crate::boot_decision::Intent;
use crate::http::Peer;

/// The file name DHCP hands out (a machine's `boot.loader`) and TFTP serves.
pub const LOADER: &str = "grubnetx64.efi";

/// Where GRUB finds our HTTP side, in GRUB's own device syntax: `(http,HOST[:PORT])` and a path
/// prefix (`http.public_url` may carry one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrubServer {
    device: String,
    prefix: String,
}

/// Characters GRUB takes literally inside double quotes and that a host, port or URL path of
/// ours can hold.
fn plain(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_~:[]/%".contains(c))
}

impl GrubServer {
    /// From a base URL `http://HOST[:PORT][/PATH]` (our `http.public_url`, `dhcp.http_url` or
    /// `http://<server_ip>:<port>`). `None` for anything else: GRUB 2.06 speaks plain HTTP only.
    pub fn from_base(base: &str) -> Option<GrubServer> {
        let rest = base.strip_prefix("http://")?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        (!authority.is_empty() && plain(authority) && plain(prefix)).then(|| GrubServer {
            device: format!("(http,{authority})"),
            prefix: prefix.to_string(),
        })
    }

    /// The server GRUB booted from (its `net_default_server`, the TFTP server) on `port`: for
    /// when no base URL is configured.
    pub fn booted_from(port: u16) -> GrubServer {
        GrubServer {
            device: format!("(http,${{net_default_server}}:{port})"),
            prefix: String::new(),
        }
    }
}

/// `grub/grub.cfg` over TFTP: load GRUB's HTTP module, then source the machine's own config from
/// `/boot/grub` until one boots. A failed fetch waits 10 s; a held machine's config waits itself.
pub fn bootstrap(server: &GrubServer) -> String {
    let mut s = String::new();
    s.push_str("# provisioner: GRUB netboot, the same for every machine. Its own config comes\n");
    s.push_str(
        "# from /boot/grub, chosen by the address it asks from (its lease), never by a name.\n",
    );
    s.push_str("insmod http\n");
    s.push_str("while true; do\n");
    let _ = writeln!(
        s,
        "  if source \"{}{}/boot/grub\"; then true; else",
        server.device, server.prefix
    );
    s.push_str("    echo 'provisioner: fetching the boot config failed; trying again in 10 s'\n");
    s.push_str("    sleep 10\n");
    s.push_str("  fi\n");
    s.push_str("done\n");
    s
}

/// Free text in single quotes: `'`, `\` and control characters become `_`, at most 300 chars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrubText(String);

impl GrubText {
    pub fn new(s: &str) -> Self {
        GrubText(
            s.chars()
                .take(300)
                .map(|c| {
                    if c == ' ' || (c.is_ascii_graphic() && c != '\'' && c != '\\') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        )
    }
}

/// A file on our HTTP side in GRUB's syntax, `(http,HOST:PORT)/path?query`; built only from our
/// own [`Url`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrubFile(String);

impl GrubFile {
    /// `None` for a URL GRUB cannot fetch (not `http://`, or characters outside a URL's).
    pub fn from_url(url: &Url) -> Option<GrubFile> {
        let rest = url.as_str().strip_prefix("http://")?;
        let i = rest.find('/')?;
        let (authority, path) = rest.split_at(i);
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_graphic() && c != '\'' && c != '\\')
        };
        (!authority.is_empty() && ok(authority) && ok(path))
            .then(|| GrubFile(format!("(http,{authority}){path}")))
    }
}

/// What the machine's GRUB should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrubConfig {
    /// Load the UKI's kernel and initrd over HTTP and boot the installer.
    Install {
        kernel: GrubFile,
        initrd: Option<GrubFile>,
        cmdline: Cmdline,
    },
    /// Installed: boot the disk's UEFI loader (`\EFI\BOOT\BOOTX64.EFI`); failing that, leave
    /// GRUB so the firmware tries its next boot entry. (TFTP already refuses `grubnetx64.efi` to
    /// an installed machine, so this is the rare case of a machine installed meanwhile.)
    LocalDisk,
    /// Say why the machine waits, wait, and let the bootstrap loop ask again.
    Hold { message: GrubText, poll: Duration },
}

impl GrubConfig {
    /// The config text for machine `mac` (`None`: an address no machine holds).
    pub fn render(&self, mac: Option<Mac>) -> String {
        let mut s = String::new();
        let who = mac.map_or("an unknown address".to_string(), |m| m.to_string());
        let _ = writeln!(s, "# provisioner: {who} (GRUB)");
        match self {
            GrubConfig::Install {
                kernel,
                initrd,
                cmdline,
            } => {
                let _ = writeln!(
                    s,
                    "echo 'provisioner: installing {who} (GRUB, kernel + initrd from the UKI over HTTP)'"
                );
                let _ = write!(s, "linux '{}'", kernel.0);
                for word in cmdline.as_str().split(' ').filter(|w| !w.is_empty()) {
                    let _ = write!(s, " '{word}'");
                }
                s.push('\n');
                if let Some(i) = initrd {
                    let _ = writeln!(s, "initrd '{}'", i.0);
                }
                s.push_str("boot\n");
                s.push_str("echo 'provisioner: download or boot failed, trying again in 10 s'\n");
                s.push_str("sleep 10\n");
            }
            GrubConfig::LocalDisk => {
                let _ = writeln!(
                    s,
                    "echo 'provisioner: {who} is installed, booting from disk'"
                );
                s.push_str("if search --no-floppy --file --set=root /EFI/BOOT/BOOTX64.EFI; then\n");
                s.push_str("  chainloader /EFI/BOOT/BOOTX64.EFI\n");
                s.push_str("  boot\n");
                s.push_str("fi\n");
                s.push_str("exit 1\n");
            }
            GrubConfig::Hold { message, poll } => {
                let _ = writeln!(s, "echo 'provisioner: {}'", message.0);
                let secs = poll.as_secs().max(1);
                let _ = writeln!(s, "echo 'provisioner: asking again in {secs} s'");
                let _ = writeln!(s, "sleep {secs}");
            }
        }
        s
    }
}

/// The config for `intent`; `None` when the machine gets none (not ours to answer).
pub fn decide_config(
    view: &BootView,
    intent: &Intent,
    base: &Base,
    poll: Duration,
) -> Option<GrubConfig> {
    let hold = |m: &str| GrubConfig::Hold {
        message: GrubText::new(m),
        poll,
    };
    Some(match intent {
        Intent::Ignore => return None,
        Intent::LocalDisk => GrubConfig::LocalDisk,
        Intent::Hold { reason } => hold(reason),
        Intent::Install => {
            if let Some(problem) = plan::install_problem(view) {
                return Some(hold(&problem));
            }
            let uki = view.uki.as_ref().expect("checked by install_problem");
            let hex = parse_digest(&uki.digest).expect("stored digests are valid");
            let cmdline = match plan::cmdline(view, base) {
                Ok(c) => c,
                Err(e) => return Some(hold(&e)),
            };
            let has_initrd = uki
                .efi
                .as_ref()
                .and_then(|e| e.uki.as_ref())
                .is_some_and(|u| u.has_initrd);
            let file = |section| GrubFile::from_url(&base.section(&hex, section, view.mac));
            let Some(kernel) = file(BootSection::Linux) else {
                return Some(hold(
                    "GRUB fetches over plain http:// only; set http.public_url to an http:// URL",
                ));
            };
            GrubConfig::Install {
                kernel,
                initrd: if has_initrd {
                    file(BootSection::Initrd)
                } else {
                    None
                },
                cmdline,
            }
        }
    })
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `GET /boot/grub`: the config of the machine the caller's address belongs to by the server's
/// own evidence. No parameters: a MAC in the request would be a claim, not evidence.
pub async fn config(State(app): State<App>, ConnectInfo(peer): ConnectInfo<Peer>) -> Response {
    match config_reply(&app, &peer).await {
        Ok(r) | Err(r) => r,
    }
}

async fn config_reply(app: &App, peer: &Peer) -> Result<Response, Response> {
    let caller = handlers::caller_holder(app, peer).await?;
    let ip = peer.remote.ip();
    let Some(holder) = caller else {
        let message = GrubText::new(&format!(
            "no machine holds {} by this server's evidence (a lease from our DHCP, or a binding seen in proxy mode)",
            peer.remote.ip()
        ));
        let cfg = GrubConfig::Hold {
            message,
            poll: app.boot.poll,
        };
        return Ok(text(StatusCode::OK, cfg.render(None)));
    };
    let mac = holder.mac;
    let view = plan::load(app, mac).await.map_err(|e| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("provisioner: {e}\n"),
        )
    })?;
    let intent = view.intent(app.boot.unknown);
    let base = Base::new(app, peer);
    let Some(cfg) = decide_config(&view, &intent, &base, app.boot.poll) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("provisioner: {mac} is not in the inventory (unknown machines are ignored)\n"),
        ));
    };
    record(app, mac, ip, &cfg).await;
    Ok(text(StatusCode::OK, cfg.render(Some(mac))))
}

/// The caller is the machine (by evidence): an install moves it to `booting`; the others leave
/// a `seen` event like the iPXE script does.
async fn record(app: &App, mac: Mac, ip: IpAddr, cfg: &GrubConfig) {
    match cfg {
        GrubConfig::Install { .. } => {
            plan::record_boot(app, mac, ip, "GRUB config: install (efi)".into()).await
        }
        GrubConfig::LocalDisk => {
            let kind = EventKind::Seen {
                via: "http".into(),
                detail: "GRUB config: boot from disk".into(),
            };
            plan::note(app, mac, kind).await;
        }
        GrubConfig::Hold { .. } => {}
    }
}

#[cfg(test)]
#[path = "grub_tests.rs"]
mod tests;
