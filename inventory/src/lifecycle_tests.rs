use super::*;

fn all_transitions() -> Vec<Transition> {
    vec![
        Transition::Discover,
        Transition::Register,
        Transition::Approve,
        Transition::Boot,
        Transition::Progress,
        Transition::InstallDone,
        Transition::Ready,
        Transition::Fail {
            reason: "disk not found".into(),
        },
        Transition::Reprovision,
    ]
}

/// The full table, written out independently of `next`: (from, transition index, to).
fn legal() -> Vec<(State, usize, State)> {
    use State as S;
    let mut v = vec![
        (S::Unknown, 0, S::Discovered),
        (S::Unknown, 1, S::Registered),
        (S::Discovered, 2, S::Registered),
        (S::Registered, 3, S::Booting),
        (S::Reprovision, 3, S::Booting),
        (S::Booting, 3, S::Booting),
        (S::Booting, 4, S::Installing),
        (S::Installing, 4, S::Installing),
        (S::Booting, 5, S::Installed),
        (S::Installing, 5, S::Installed),
        (S::Installed, 6, S::Ready),
        (S::Ready, 6, S::Ready),
    ];
    for s in [
        S::Registered,
        S::Booting,
        S::Installing,
        S::Installed,
        S::Ready,
        S::Reprovision,
    ] {
        v.push((s, 7, S::Failed));
    }
    for s in [
        S::Registered,
        S::Booting,
        S::Installing,
        S::Installed,
        S::Ready,
        S::Failed,
        S::Reprovision,
    ] {
        v.push((s, 8, S::Reprovision));
    }
    v
}

#[test]
fn every_pair_is_legal_or_a_typed_error() {
    let table = legal();
    let ts = all_transitions();
    let mut legal_count = 0;
    for from in State::ALL {
        for (i, t) in ts.iter().enumerate() {
            let want = table
                .iter()
                .find(|(f, ti, _)| *f == from && *ti == i)
                .map(|x| x.2);
            let mut lc = Lifecycle::new(from, Timestamp(1000));
            match (lc.apply(t, Timestamp(2000)), want) {
                (Ok(prev), Some(to)) => {
                    legal_count += 1;
                    assert_eq!(prev, from);
                    assert_eq!(lc.state, to, "{from} + {t}");
                    let since = if to == from { 1000 } else { 2000 };
                    assert_eq!(lc.since, Timestamp(since), "{from} + {t}");
                }
                (
                    Err(Error::IllegalTransition {
                        from: f,
                        transition,
                    }),
                    None,
                ) => {
                    assert_eq!(f, from);
                    assert_eq!(&transition, t);
                    assert_eq!(lc, Lifecycle::new(from, Timestamp(1000)), "unchanged");
                }
                (got, want) => panic!("{from} + {t}: got {got:?}, want {want:?}"),
            }
        }
    }
    assert_eq!(legal_count, table.len());
}

#[test]
fn failure_keeps_reason_until_left() {
    let mut lc = Lifecycle::new(State::Installing, Timestamp(0));
    lc.apply(
        &Transition::Fail {
            reason: "no disk".into(),
        },
        Timestamp(5),
    )
    .unwrap();
    assert_eq!(lc.reason.as_deref(), Some("no disk"));
    lc.apply(&Transition::Reprovision, Timestamp(6)).unwrap();
    assert_eq!(lc.reason, None);
    assert_eq!(lc.state, State::Reprovision);
}

#[test]
fn illegal_error_says_what_and_where() {
    let mut lc = Lifecycle::new(State::Discovered, Timestamp(0));
    let err = lc.apply(&Transition::Boot, Timestamp(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "machine is discovered: cannot start booting the installer"
    );
}

#[test]
fn transitional_states_expire_at_their_deadline() {
    let d = Deadlines {
        booting: Duration::from_secs(60),
        installing: Duration::from_secs(600),
        ..Default::default()
    };
    let booting = Lifecycle::new(State::Booting, Timestamp(1_000));
    assert_eq!(booting.expiry(Timestamp(60_999), &d), None);
    let t = booting.expiry(Timestamp(61_000), &d).expect("expired");
    assert!(
        matches!(&t, Transition::Fail { reason } if reason.contains("stuck in booting for 60s"))
    );
    let mut lc = booting.clone();
    lc.apply(&t, Timestamp(61_000)).unwrap();
    assert_eq!(lc.state, State::Failed);

    let installing = Lifecycle::new(State::Installing, Timestamp(0));
    assert_eq!(installing.expiry(Timestamp(599_999), &d), None);
    assert!(installing.expiry(Timestamp(600_000), &d).is_some());

    for s in State::ALL.into_iter().filter(|s| !s.is_transitional()) {
        assert_eq!(
            Lifecycle::new(s, Timestamp(0)).expiry(Timestamp(u64::MAX), &d),
            None,
            "{s}"
        );
    }
}

#[test]
fn a_downloaded_uki_never_started_fails_at_its_own_deadline() {
    let d = Deadlines {
        uki_start: Duration::from_secs(120),
        ..Default::default()
    };
    let uki = format!("sha256:{}", "ab".repeat(32));
    let mut lc = Lifecycle::new(State::Registered, Timestamp(0));
    assert!(
        !lc.uki_downloaded(&uki, Timestamp(1)),
        "not booting: not counted"
    );
    lc.apply(&Transition::Boot, Timestamp(1_000)).unwrap();
    assert!(lc.uki_downloaded(&uki, Timestamp(10_000)));
    // The firmware retries: counted, and the deadline still runs from the first download.
    assert!(lc.uki_downloaded(&uki, Timestamp(70_000)));
    assert_eq!(lc.uki_fetch.as_ref().unwrap().count, 2);
    assert_eq!(lc.expiry(Timestamp(129_999), &d), None);
    let Some(Transition::Fail { reason }) = lc.expiry(Timestamp(130_000), &d) else {
        panic!("not expired");
    };
    assert!(
        reason.starts_with(&format!(
            "downloaded its UKI {uki} at 1970-01-01T00:00:10Z (2 times, last at 1970-01-01T00:01:10Z) and never started it: the firmware likely refused it (Secure Boot: unsigned or untrusted?)"
        )),
        "{reason}"
    );
    // A sign of life (a config fetch) or any state change ends the watch.
    let mut started = lc.clone();
    assert!(started.uki_started());
    assert_eq!(started.expiry(Timestamp(130_000), &d), None);
    let mut installing = lc.clone();
    installing
        .apply(&Transition::Progress, Timestamp(20_000))
        .unwrap();
    assert_eq!(installing.uki_fetch, None);
    // Failing happens once: a failed machine's downloads are not counted again.
    lc.apply(&Transition::Fail { reason }, Timestamp(130_000))
        .unwrap();
    assert_eq!(lc.uki_fetch, None);
    assert!(!lc.uki_downloaded(&uki, Timestamp(140_000)));
    assert_eq!(lc.expiry(Timestamp(u64::MAX), &d), None);
}
