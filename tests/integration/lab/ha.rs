//! Real firmware through two provisioners sharing one etcd (issue 13): `lab run --ha` boots two
//! OVMF + iPXE VMs at once on one bridge with two full-mode provisioners; right after the first
//! VM's first DHCP ACK (seen on the wire) the provisioner that sent it is killed with `kill -9`.
//! Both VMs must reach `ready` in the survivor's inventory, installed once and registered from
//! their disks. Everything asserted here was read from the survivor by the lab (etcd and the
//! namespaces are gone when the run returns). Needs root, QEMU and etcd.

use serde_json::Value;

use super::{lab, transitions};

/// "seconds mac yiaddr server" lines of the outcome.
fn acks(ha: &Value) -> Vec<(f64, String, String, String)> {
    ha["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.as_str().unwrap().split_whitespace().collect();
            (
                w[0].parse().unwrap(),
                w[1].to_string(),
                w[2].to_string(),
                w[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn two_vms_two_provisioners_one_killed_after_the_first_ack_both_ready_on_the_survivor() {
    let run = lab(&["--machines", "2", "--ha"]);
    let ctx = || run.dump();
    let ha = &run.outcome["ha"];
    let (killed, survivor) = (
        ha["killed"].as_str().expect("a provisioner was killed"),
        ha["survivor"].as_str().unwrap(),
    );
    assert_ne!(killed, survivor);
    let vm0 = run.outcome["machines"][0]["mac"].as_str().unwrap();

    // The kill followed vm0's first ACK, and hit the server that sent it.
    let acks = acks(ha);
    let first = acks.iter().position(|a| a.1 == vm0).expect("vm0 was ACKed");
    assert_eq!(acks[first].3, killed, "{acks:?}");
    assert_eq!(ha["kill_after_ack_to"], vm0);
    let kill_at = ha["kill_at_seconds"].as_f64().unwrap();
    // After the kill only the survivor ACKs, and vm0 was ACKed by it (its firmware or its
    // installer got through on the survivor).
    for a in acks.iter().filter(|a| a.0 > kill_at) {
        assert_eq!(a.3, survivor, "an ACK after the kill: {acks:?}");
    }
    assert!(
        acks.iter().any(|a| a.0 > kill_at && a.1 == vm0),
        "vm0 never ACKed by the survivor: {acks:?}\n{}",
        ctx()
    );

    for m in run.outcome["machines"].as_array().unwrap() {
        let mac = m["mac"].as_str().unwrap();
        assert_eq!(
            m["state"],
            "ready",
            "{mac} in the survivor's inventory\n{}",
            ctx()
        );
        let evs = ha["events"][mac].as_array().unwrap();
        let steps = transitions(evs);
        let count = |s: &str| steps.iter().filter(|x| x.ends_with(s)).count();
        assert_eq!(count("→installed"), 1, "{mac}: {steps:?}");
        assert_eq!(count("→installing"), 1, "{mac}: {steps:?}");
        assert!(
            steps.last().unwrap().ends_with("→ready"),
            "{mac}: {steps:?}"
        );
        let installed = evs
            .iter()
            .rposition(|e| e["type"] == "state" && e["to"] == "installed")
            .unwrap();
        assert!(
            evs[installed..]
                .iter()
                .any(|e| e["type"] == "registered" && e["boot_state"] == "active_boot"),
            "{mac}: no registration from its disk after the install: {steps:?}"
        );
        // The survivor's store holds the machine's lease.
        assert!(
            ha["leases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["mac"] == mac),
            "{mac}: no lease in the store: {}",
            ha["leases"]
        );
    }
}
