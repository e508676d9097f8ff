//! The one per-machine boot decision. DHCP (boot file or none), TFTP, the iPXE script and the
//! UKI download all ask this function, so no path can loop an installed machine back into the
//! installer (the failure other servers have when only some paths check a flag).

use inventory::{Machine, State};

/// What to do with machines the inventory does not know (`dhcp.unknown_machines`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPolicy {
    /// Never answer an unregistered machine (default: safe beside other netboot servers).
    Ignore,
    /// Record it as `discovered` and hold it until an operator approves it.
    Discover,
    /// Register it and install it with the default profile (labs).
    Auto,
}

/// What a machine should boot right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Netboot the installer.
    Install,
    /// Boot from its own disk: offer no boot file.
    LocalDisk,
    /// Netboot into a script that says why it waits and polls until that changes.
    Hold {
        /// One line for the operator and the machine's console: why it waits and, for a failed
        /// install, the command that retries it.
        reason: String,
    },
    /// Do not answer at all.
    Ignore,
}

/// Decides from the machine's lifecycle state (or its absence) and the unknown-machine policy.
pub fn decide(machine: Option<&Machine>, unknown: UnknownPolicy) -> Intent {
    let Some(m) = machine else {
        return match unknown {
            UnknownPolicy::Ignore => Intent::Ignore,
            UnknownPolicy::Discover => Intent::Hold {
                reason: "discovered: waiting for an operator to approve this machine".into(),
            },
            UnknownPolicy::Auto => Intent::Install,
        };
    };
    match m.state() {
        State::Registered | State::Booting | State::Installing | State::Reprovision => {
            Intent::Install
        }
        State::Installed | State::Ready => Intent::LocalDisk,
        State::Discovered => Intent::Hold {
            reason: "discovered: waiting for an operator to approve this machine".into(),
        },
        State::Failed => Intent::Hold {
            reason: format!(
                "install failed ({}); run `provisioner machines reprovision {}` to try again",
                m.lifecycle.reason.as_deref().unwrap_or("no reason given"),
                m.mac
            ),
        },
        State::Unknown => Intent::Ignore,
    }
}

/// Whether a record is one the server made for a stranger and nobody has claimed since: a
/// `discovered` machine, or (under `auto`, which records strangers as `registered`) a
/// `registered` one with no profile, hostname, labels or reservation. These count against the
/// cap. Under `discover` and `ignore` a bare registered machine is an operator's, never counted.
pub fn unclaimed(m: &Machine, policy: UnknownPolicy) -> bool {
    let s = &m.spec;
    match m.state() {
        State::Discovered => true,
        State::Registered if policy == UnknownPolicy::Auto => {
            s.profile.is_none() && s.hostname.is_none() && s.labels.is_empty() && s.ip.is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::{Lifecycle, Timestamp};

    fn machine(state: State) -> Machine {
        let mut m = Machine::registered(
            "52:54:00:00:00:01".parse().unwrap(),
            Default::default(),
            Timestamp(0),
        );
        m.lifecycle = Lifecycle::new(state, Timestamp(0));
        m
    }

    #[test]
    fn installed_machines_never_get_the_installer() {
        for s in State::ALL {
            let intent = decide(Some(&machine(s)), UnknownPolicy::Auto);
            let expect_install = matches!(
                s,
                State::Registered | State::Booting | State::Installing | State::Reprovision
            );
            assert_eq!(intent == Intent::Install, expect_install, "{s}: {intent:?}");
            if matches!(s, State::Installed | State::Ready) {
                assert_eq!(intent, Intent::LocalDisk);
            }
        }
    }

    #[test]
    fn a_bare_registered_machine_is_unclaimed_only_under_auto() {
        let bare = machine(State::Registered);
        assert!(
            unclaimed(&bare, UnknownPolicy::Auto),
            "auto records strangers so"
        );
        assert!(
            !unclaimed(&bare, UnknownPolicy::Discover),
            "under discover it is an operator's"
        );
        assert!(!unclaimed(&bare, UnknownPolicy::Ignore));
        let mut named = bare.clone();
        named.spec.hostname = Some("node-1".into());
        assert!(!unclaimed(&named, UnknownPolicy::Auto));
        for p in [UnknownPolicy::Auto, UnknownPolicy::Discover] {
            assert!(unclaimed(&machine(State::Discovered), p));
            assert!(!unclaimed(&machine(State::Ready), p));
        }
    }

    #[test]
    fn unknown_machines_follow_the_policy() {
        assert_eq!(decide(None, UnknownPolicy::Ignore), Intent::Ignore);
        assert!(matches!(
            decide(None, UnknownPolicy::Discover),
            Intent::Hold { .. }
        ));
        assert_eq!(decide(None, UnknownPolicy::Auto), Intent::Install);
    }

    #[test]
    fn failed_machines_hold_with_the_reason_and_the_fix() {
        let mut m = machine(State::Failed);
        m.lifecycle.reason = Some("disk /dev/sda not found".into());
        let Intent::Hold { reason } = decide(Some(&m), UnknownPolicy::Ignore) else {
            panic!()
        };
        assert!(
            reason.contains("disk /dev/sda not found")
                && reason.contains("machines reprovision 52:54:00:00:00:01")
        );
    }
}
