//! What a DHCPv6 exchange means beyond its reply, as DHCPv4's does: a `seen` event when a
//! machine of the inventory gets a lease (through the same rate limits as DHCPv4's
//! observations, [`Observations`]), the DUID recorded on the machine the first time, a note for
//! a declined address, and the admission of an unknown netbooting machine (one that sends a
//! client architecture, option 61) under `discover`/`auto` through the gate DHCPv4 and HTTP boot
//! share ([`crate::admission`]): at most `dhcp.max_discovered` waiting and
//! `dhcp.discover_rate` a minute, however many DUIDs or MACs a flood makes up.

use inventory::{EventKind, Lease6, Mac, NewEvent, Timestamp};
use netboot_proto::admission::Newcomer;
use netboot_proto::boot_decision::UnknownPolicy;
use netboot_proto::dhcp::seen_limit::Observations;
use netboot_proto::dhcp6::core::Decision6;

use crate::app::App;
use crate::metrics::DhcpMetrics;

/// The event limiters and what admission needs, kept by the DHCPv6 receive task.
pub struct Effects {
    app: App,
    /// `dhcp6.unknown_machines`.
    policy: UnknownPolicy,
    /// Per-machine and per-stranger limits on events (DHCPv4's limiter, a separate instance).
    seen: Observations,
}

impl Effects {
    pub fn new(app: App, policy: UnknownPolicy) -> Effects {
        Effects {
            app,
            policy,
            seen: Observations::default(),
        }
    }

    /// Records what `d` (its claims `granted`) says about its client, off the reply path
    /// except for the admission of a newcomer and the first DUID, one store write each.
    pub async fn after_reply(&mut self, d: &Decision6, granted: &[Lease6], t: Timestamp) {
        let Some(mac) = d.mac else { return };
        let known = self.app.views.read().machine(mac).cloned();
        let mut machine = known;
        if machine.is_none() {
            machine = self.admit(mac, d.arch, t).await;
        }
        let Some(m) = machine else { return };
        let mut kinds = Vec::new();
        for l in granted {
            kinds.push(if l.declined {
                EventKind::Note {
                    message: format!("declined {} (address in use): quarantined", l.ip),
                }
            } else {
                EventKind::Seen {
                    via: "dhcp6".into(),
                    detail: format!("leased {}", l.ip),
                }
            });
        }
        let (kept, suppressed) = self.seen.filter(mac, true, kinds, t);
        self.app.metrics.dhcp6.suppressed.add(suppressed as u64);
        let events: Vec<NewEvent> = kept
            .into_iter()
            .map(|k| NewEvent::machine(mac, k))
            .collect();
        if !self.app.events.record(events) {
            DhcpMetrics::bump(
                &self.app.metrics.dhcp6.dropped,
                "event queue full (events only)",
            );
        }
        let first = granted.iter().find(|l| !l.declined);
        if let (None, Some(l)) = (&m.duid, first) {
            let duid = l.duid.clone();
            let written = self
                .app
                .write(move |s| {
                    s.update_machine(mac, t, &mut |x| {
                        if x.duid.is_some() {
                            return Ok(vec![EventKind::Note {
                                message: "DHCPv6 DUID already recorded".into(),
                            }]);
                        }
                        x.duid = Some(duid.clone());
                        Ok(vec![EventKind::Note {
                            message: format!("DHCPv6 DUID {duid}"),
                        }])
                    })
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, %mac, "dhcp6: recording the DUID failed");
            }
        }
    }

    /// An unknown netbooting machine through the shared admission gate; its new record.
    async fn admit(&self, mac: Mac, arch: Option<u16>, t: Timestamp) -> Option<inventory::Machine> {
        if arch.is_none() || self.policy == UnknownPolicy::Ignore {
            return None;
        }
        let app = &self.app;
        let decided = {
            let views = app.views.read();
            let mut gate = app.boot.admission.lock();
            if gate.needs_count(t) {
                gate.counted(views.unclaimed(self.policy), t);
            }
            let who = Newcomer {
                mac,
                uuid: None,
                arch,
                via: "dhcp6",
            };
            netboot_proto::admission::admit(&mut gate, &who, self.policy, &|_| None, t)
        };
        let admitted = crate::admission::account(decided, &app.metrics.discovery)?;
        let written = app
            .write(move |s| match crate::admission::write(s, admitted, t) {
                Ok((m, events)) => Ok((Some(m), events)),
                // Recorded meanwhile (DHCPv4, HTTP boot, another server).
                Err(inventory::Error::MachineExists { .. }) => Ok((None, Vec::new())),
                Err(e) => Err(e),
            })
            .await;
        match written {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, %mac, "dhcp6: recording an unknown machine failed");
                None
            }
        }
    }
}
