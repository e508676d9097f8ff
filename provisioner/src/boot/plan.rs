//! From a MAC to what it boots: the machine, its profile and the profile's UKI, the boot
//! decision, and the script (or file) that carries it out. Also the bookkeeping every boot path
//! shares: admitting unknown machines under `discover`/`auto`, and recording that a machine
//! netbooted its installer (`booting`, the address it came from, an event).

use std::net::IpAddr;

use boot_assets::{parse_digest, AssetKind, AssetMeta, BootSection};
use inventory::{lifecycle, EventKind, Mac, Machine, NewEvent, Profile, State, Transition};

use super::script::{Cmdline, IpxeText, Platform, Script};
use super::Base;
use crate::app::{now, App};
use crate::boot_decision::{decide, Intent, UnknownPolicy};

/// Everything the decision and the rendering need about one machine.
#[derive(Clone, Debug)]
pub struct BootView {
    pub mac: Mac,
    pub machine: Option<Machine>,
    pub profile: Option<Profile>,
    /// The profile's UKI, when it is in the store.
    pub uki: Option<AssetMeta>,
    /// Why that UKI may not be served although the machine would install: its profile has
    /// `secure_boot` and the configured db certificates do not trust it (see [`secure_boot`]).
    pub refusal: Option<String>,
}

impl BootView {
    pub fn intent(&self, unknown: UnknownPolicy) -> Intent {
        decide(self.machine.as_ref(), unknown)
    }
}

/// Loads the view, admitting an unknown machine first when the policy says so. The machine
/// comes from the in-memory views (no store access for a known machine's record); only a
/// newcomer's admission writes, and the profile is read from the store.
pub async fn load(app: &App, mac: Mac) -> inventory::Result<BootView> {
    let policy = app.boot.unknown;
    let t = now();
    let known = app.views.read().machine(mac).cloned();
    let machine = match known {
        Some(m) => Some(m),
        None if policy == UnknownPolicy::Ignore => None,
        None => {
            let (boot, metrics) = (app.boot.clone(), app.metrics.clone());
            app.write(move |s| {
                // Recorded meanwhile by another server (the views follow it a moment later).
                if let Some(m) = s.machine(mac)? {
                    return Ok((Some(m), Vec::new()));
                }
                // The same cap and rate as DHCP discovery; refused: stays unknown (and polls).
                let who = crate::admission::Newcomer {
                    mac,
                    uuid: None,
                    arch: None,
                    via: "http",
                };
                Ok(
                    match boot
                        .admission
                        .admit(s, who, policy, t, &metrics.discovery)?
                    {
                        Some((m, evs)) => (Some(m), evs),
                        None => (None, Vec::new()),
                    },
                )
            })
            .await?
        }
    };
    // A machine that boots from its disk needs no profile: its answer comes from the views
    // alone, so it still boots with the store unreachable (etcd down).
    let local_disk = decide(machine.as_ref(), policy) == Intent::LocalDisk;
    let profile = match machine.as_ref().and_then(|m| m.spec.profile.clone()) {
        Some(p) if !local_disk => app.read(move |s| s.profile(&p)).await?,
        _ => None,
    };
    let uki = profile_uki(app, profile.as_ref()).await;
    let installs = decide(machine.as_ref(), policy) == Intent::Install;
    let refusal = match (&profile, &uki) {
        (Some(p), Some(u)) if installs && p.secure_boot => secure_boot(app, mac, p, u).await,
        _ => None,
    };
    Ok(BootView {
        mac,
        machine,
        profile,
        uki,
        refusal,
    })
}

/// The UKI `profile` names, as the asset store describes it; `None` without a profile, a UKI,
/// or an asset of that digest. Shared store: a UKI another server imported counts, and this
/// server starts fetching it now, before the machine asks for it.
pub async fn profile_uki(app: &App, profile: Option<&Profile>) -> Option<AssetMeta> {
    let d = profile?.uki.clone()?;
    match (&app.boot.peer_assets, parse_digest(&d)) {
        (Some(peers), Ok(hex)) => peers.describe(&hex).await,
        _ => {
            let assets = app.boot.assets.clone();
            tokio::task::spawn_blocking(move || assets.get(&d).ok())
                .await
                .ok()
                .flatten()
        }
    }
}

/// Why `profile` (with `secure_boot`) may not boot `uki`, recorded as an event of `mac` (at
/// most once a minute): the configuration may have changed since the profile was saved (other
/// db certificates), so every boot checks. The verdict is cached per digest.
async fn secure_boot(app: &App, mac: Mac, profile: &Profile, uki: &AssetMeta) -> Option<String> {
    let why = secure_boot_refusal(app, profile, uki).await?;
    let message = format!("UKI not served: {why}");
    note_limited(app, mac, EventKind::Note { message }).await;
    Some(why)
}

/// Why `profile` may not boot `uki` under its `secure_boot` setting, without recording anything
/// (the boot decision endpoint asks this too); `None`: it may, or `secure_boot` is off.
pub async fn secure_boot_refusal(app: &App, profile: &Profile, uki: &AssetMeta) -> Option<String> {
    if !profile.secure_boot {
        return None;
    }
    let sigs = &app.boot.signatures;
    match sigs.verdict(&app.boot, uki).await {
        Ok(v) => sigs.refusal(&profile.name, &uki.digest, &v),
        Err(e) => Some(format!(
            "profile {}: secure_boot is on but the signature of UKI {} could not be checked: {e}",
            profile.name, uki.digest
        )),
    }
}

/// Why an installer cannot be served (shown on the console, the machine keeps polling).
pub fn install_problem(view: &BootView) -> Option<String> {
    let Some(m) = &view.machine else {
        return None; // `auto` without a record cannot happen: load() admits it.
    };
    let Some(pname) = &m.spec.profile else {
        return Some(format!(
            "{} has no profile; set one: provisioner machines add {} --profile NAME",
            m.mac, m.mac
        ));
    };
    let Some(p) = &view.profile else {
        return Some(format!("profile {pname} does not exist"));
    };
    let Some(d) = &p.uki else {
        return Some(format!(
            "profile {pname} names no UKI; set its uki to an imported asset"
        ));
    };
    match &view.uki {
        None => Some(format!(
            "UKI {d} of profile {pname} is not in the asset store; run provisioner assets import"
        )),
        Some(a) if a.kind != AssetKind::Uki => Some(format!("asset {d} is a loader, not a UKI")),
        Some(_) => view.refusal.clone(),
    }
}

/// The kernel command line the installer boots with: the UKI's own, the profile's, the
/// machine's, then where to find its config and us.
pub fn cmdline(view: &BootView, base: &Base) -> Result<Cmdline, String> {
    let embedded = view
        .uki
        .as_ref()
        .and_then(|a| a.efi.as_ref())
        .and_then(|e| e.uki.as_ref())
        .and_then(|u| u.cmdline.clone())
        .unwrap_or_default();
    let profile = view
        .profile
        .as_ref()
        .map(|p| p.cmdline.clone())
        .unwrap_or_default();
    let extra = view
        .machine
        .as_ref()
        .and_then(|m| m.spec.boot.extra_cmdline.clone())
        .unwrap_or_default();
    let ours = format!(
        "config_url={} provisioner.url={}",
        base.config(view.mac),
        base.machine()
    );
    Cmdline::join([
        embedded.as_str(),
        profile.as_str(),
        extra.as_str(),
        ours.as_str(),
    ])
}

/// The script for `intent` on `platform` (`None`: ask iPXE which platform first).
pub fn script(
    view: &BootView,
    intent: &Intent,
    platform: Option<Platform>,
    base: &Base,
    poll: std::time::Duration,
) -> Option<Script> {
    let mac = view.mac;
    let hold = |message: String| Script::Hold {
        message: IpxeText::new(&message),
        poll,
        next: base.script(mac, platform.as_ref()),
    };
    if matches!(intent, Intent::Ignore) {
        return None;
    }
    let Some(platform) = platform else {
        return Some(Script::Dispatch {
            next: base.script(mac, None),
        });
    };
    Some(match intent {
        Intent::Ignore => return None,
        Intent::LocalDisk => Script::LocalDisk { platform },
        Intent::Hold { reason } => hold(reason.clone()),
        Intent::Install => {
            if let Some(problem) = install_problem(view) {
                return Some(hold(problem));
            }
            let uki = view.uki.as_ref().expect("checked by install_problem");
            let hex = parse_digest(&uki.digest).expect("stored digests are valid");
            let cmdline = match cmdline(view, base) {
                Ok(c) => c,
                Err(e) => return Some(hold(e)),
            };
            match platform {
                Platform::Efi => Script::InstallEfi {
                    uki: base.asset(&hex, &uki.name, mac),
                    cmdline,
                    retry: base.script(mac, Some(&platform)),
                },
                Platform::Pcbios => Script::InstallBios {
                    kernel: base.section(&hex, BootSection::Linux, mac),
                    initrd: uki
                        .efi
                        .as_ref()
                        .and_then(|e| e.uki.as_ref())
                        .filter(|u| u.has_initrd)
                        .map(|_| base.section(&hex, BootSection::Initrd, mac)),
                    cmdline,
                    retry: base.script(mac, Some(&platform)),
                },
            }
        }
    })
}

/// Records that `mac` fetched its installer (`what`) from `from`, an address the server's own
/// evidence gives it (callers check, see [`crate::identity`]): `booting` where the state
/// machine allows it, the address, and a `seen` event. An IPv6 address (a DHCPv6 lease) is
/// named in the event (`… from [2001:2::1000]`); `boot_ip` holds IPv4 only and is cleared.
pub async fn record_boot(app: &App, mac: Mac, from: IpAddr, what: String) {
    let t = now();
    let ip = crate::identity::ipv4(from);
    let detail = match ip {
        Some(_) => what,
        None => format!("{what} from [{from}]"),
    };
    let seen = EventKind::Seen {
        via: "http".into(),
        detail,
    };
    // The same observation at most once a minute (a firmware retry loop, or repeated ranged
    // requests, must not grow the history); a lifecycle step is always recorded.
    let note_seen = app
        .boot
        .transfer_events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(mac, crate::dhcp::seen_limit::topic(&seen, true), t);
    // Nothing new by the views (already booting from this address, the `seen` already noted in
    // the last minute): no store write at all, so a polling or retrying machine never takes the
    // inventory's writer. The store re-checks the same rule inside the write otherwise.
    if !note_seen {
        let views = app.views.read();
        if let Some(m) = views.machine(mac) {
            if m.state() == State::Booting && m.boot_ip == ip {
                return;
            }
        }
    }
    let result = app
        .write(move |s| {
            let (_, events) = s.update_machine(mac, t, &mut |m| {
                let step = lifecycle::next(m.state(), &Transition::Boot).is_some()
                    && m.state() != State::Booting;
                if !note_seen && !step && m.boot_ip == ip {
                    return Ok(vec![]); // nothing new: no write
                }
                let mut events = vec![seen.clone()];
                m.last_seen = Some(t);
                m.boot_ip = ip;
                if step {
                    events.push(m.transition(&Transition::Boot, t)?);
                }
                Ok(events)
            })?;
            Ok(((), events))
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(%mac, error = %e, "recording a netboot failed");
    }
}

/// A complete download of UKI `digest` (`sha256:<hex>`) by `mac`, which the server's evidence
/// says made it: a `booting` machine counts it ([`inventory::Lifecycle::uki_downloaded`], the
/// UKI-start deadline) with the `transfer` event in the same write; otherwise `transfer` is
/// queued as any other observation, through [`transfer_event_allowed`] (at most once a minute
/// per machine, protocol, file and outcome). Every whole download by a `booting` machine is
/// counted (the first starts the deadline; later ones add to its count, which the failure reason
/// reports): each is a whole UKI sent by the lease holder, one store write per download.
pub async fn record_uki_download(app: &App, mac: Mac, digest: String, transfer: EventKind) {
    let t = now();
    let kind = transfer.clone();
    let counted = app
        .write(move |s| {
            let (_, events) = s.update_machine(mac, t, &mut |m| {
                Ok(match m.lifecycle.uki_downloaded(&digest, t) {
                    true => vec![kind.clone()],
                    false => vec![],
                })
            })?;
            Ok((!events.is_empty(), events))
        })
        .await;
    match counted {
        Ok(true) => {}
        Ok(false) if transfer_event_allowed(app, mac, &transfer) => observe(app, mac, transfer),
        Ok(false) => {}
        Err(e) => tracing::warn!(%mac, error = %e, "recording a UKI download failed"),
    }
}

/// Whether the observation `kind` about `mac` may be recorded now. A `transfer` event is keyed
/// by protocol, file and outcome (not its byte count or duration), so a client that downloads the
/// same file in a loop adds one event a minute at most; other kinds by their whole content.
pub fn transfer_event_allowed(app: &App, mac: Mac, kind: &EventKind) -> bool {
    let topic = match kind {
        EventKind::Transfer {
            protocol,
            file,
            outcome,
            ..
        } => crate::dhcp::seen_limit::topic(
            &EventKind::Note {
                message: format!("{protocol} {file} {outcome}"),
            },
            false,
        ),
        other => crate::dhcp::seen_limit::topic(other, true),
    };
    app.boot
        .transfer_events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(mac, topic, now())
}

/// The machine's UKI runs (its installer fetched its config while `booting`): the UKI-start
/// deadline no longer applies. Writes only when a download was being watched.
pub async fn uki_started(app: &App, machine: &Machine) {
    if machine.lifecycle.uki_fetch.is_none() {
        return;
    }
    let mac = machine.mac;
    let t = now();
    let r = app
        .write(move |s| {
            let (_, events) = s.update_machine(mac, t, &mut |m| {
                Ok(match m.lifecycle.uki_started() {
                    true => vec![EventKind::Seen {
                        via: "http".into(),
                        detail: "the UKI runs: its installer fetched its config".into(),
                    }],
                    false => vec![],
                })
            })?;
            Ok(((), events))
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(%mac, error = %e, "recording that the UKI started failed");
    }
}

/// Appends an observation about `mac` unless the same one was recorded in the last minute
/// (anything a machine's requests can repeat goes through here, so they cannot grow the history).
pub async fn note_limited(app: &App, mac: Mac, kind: EventKind) {
    let allowed = app
        .boot
        .transfer_events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(mac, crate::dhcp::seen_limit::topic(&kind, true), now());
    if allowed {
        note(app, mac, kind).await;
    }
}

/// Appends one event about `mac` (no state change) before returning: for what the operator
/// must find once the response is out (a failed render, a local-disk boot).
pub async fn note(app: &App, mac: Mac, kind: EventKind) {
    let t = now();
    if let Err(e) = app
        .write(move |s| Ok(((), s.append_events(vec![NewEvent::machine(mac, kind)], t)?)))
        .await
    {
        tracing::warn!(%mac, error = %e, "recording an event failed");
    }
}

/// Queues one high-volume observation about `mac` (a download finished) for the batched event
/// writer ([`crate::event_writer`]): one fsync per batch, not per transfer.
pub fn observe(app: &App, mac: Mac, kind: EventKind) {
    app.events.record(vec![NewEvent::machine(mac, kind)]);
}
