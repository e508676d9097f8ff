//! Human output: aligned tables and one-line event descriptions.

use std::net::Ipv4Addr;

use inventory::{Event, Machine, Profile};
use serde::{Deserialize, Serialize};

/// One row of `GET /machines`: the machine and the address of its active DHCP binding.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListedMachine {
    #[serde(flatten)]
    pub machine: Machine,
    /// The leased (or, in proxy mode, observed) address; `None` without an active binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
}

/// Prints rows as columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The machines table; ADDRESS is the leased address, else the reserved `ip`, else `-`.
pub fn machines(ms: &[ListedMachine]) {
    let rows: Vec<Vec<String>> = ms
        .iter()
        .map(
            |ListedMachine {
                 machine: m,
                 address,
             }| {
                let mut state = m.state().to_string();
                if let Some(r) = &m.lifecycle.reason {
                    state.push_str(&format!(" ({r})"));
                }
                vec![
                    m.mac.to_string(),
                    or_dash(m.spec.hostname.as_ref()),
                    or_dash(m.spec.profile.as_ref()),
                    or_dash(address.or(m.spec.ip)),
                    state,
                    m.lifecycle.since.to_string(),
                ]
            },
        )
        .collect();
    table(
        &["MAC", "HOSTNAME", "PROFILE", "ADDRESS", "STATE", "SINCE"],
        &rows,
    );
}

pub fn machine(m: &Machine) {
    println!("mac:        {}", m.mac);
    println!("state:      {} since {}", m.state(), m.lifecycle.since);
    if let Some(r) = &m.lifecycle.reason {
        println!("reason:     {r}");
    }
    for (k, v) in [
        ("hostname", m.spec.hostname.clone()),
        ("profile", m.spec.profile.clone()),
        ("ip", m.spec.ip.map(|i| i.to_string())),
        ("uuid", m.spec.uuid.clone()),
        ("serial", m.spec.serial.clone()),
        ("site", m.spec.site.clone()),
        ("loader", m.spec.boot.loader.clone()),
        ("cmdline+", m.spec.boot.extra_cmdline.clone()),
        ("arch", m.arch.map(|a| a.to_string())),
        ("first seen", m.first_seen.map(|t| t.to_string())),
        ("last seen", m.last_seen.map(|t| t.to_string())),
    ] {
        if let Some(v) = v {
            println!("{:<11} {v}", format!("{k}:"));
        }
    }
    for (k, v) in &m.spec.labels {
        println!("label:      {k}={v}");
    }
    println!("created:    {}", m.created);
}

pub fn profiles(ps: &[Profile]) {
    let rows: Vec<Vec<String>> = ps
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                or_dash(
                    p.uki
                        .as_ref()
                        .map(|u| u.chars().take(19).collect::<String>()),
                ),
                or_dash(p.install_disk.as_ref()),
                p.description.clone(),
            ]
        })
        .collect();
    table(&["NAME", "UKI", "DISK", "DESCRIPTION"], &rows);
}

pub fn event_line(e: &Event) -> String {
    let mac = e
        .mac
        .map(|m| m.to_string())
        .unwrap_or_else(|| "-".repeat(17));
    format!("{:>7}  {}  {}  {}", e.seq, e.at, mac, e.kind)
}
