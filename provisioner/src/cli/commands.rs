//! What each client subcommand does.

use anyhow::{bail, Context};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;

use super::client::Client;
use super::output;
use super::{
    EventsArgs, Global, MachineAddArgs, MachinesCmd, PinPcr11Args, ProfileAddArgs, ProfilesCmd,
};
use inventory::{Event, Mac, Machine, Profile};

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Canonical MAC for URLs; a bad one is refused before anything is sent.
fn mac(s: &str) -> anyhow::Result<Mac> {
    Ok(s.parse::<Mac>()?)
}

pub async fn machines(global: &Global, cmd: MachinesCmd) -> anyhow::Result<()> {
    let c = Client::new(global)?;
    match cmd {
        MachinesCmd::Add(a) => {
            let body = add_body(a)?;
            let m: Machine = c.send_json(Method::POST, "/machines", &body).await?;
            if global.json {
                return print_json(&m);
            }
            println!("registered {} ({})", m.mac, m.state());
        }
        MachinesCmd::List { state, profile } => {
            let mut q = Vec::new();
            if let Some(s) = state {
                q.push(format!("state={s}"));
            }
            if let Some(p) = profile {
                q.push(format!("profile={p}"));
            }
            let path = if q.is_empty() {
                "/machines".to_string()
            } else {
                format!("/machines?{}", q.join("&"))
            };
            let ms: Vec<output::ListedMachine> = c.get(&path).await?;
            if global.json {
                return print_json(&ms);
            }
            output::machines(&ms);
        }
        MachinesCmd::Show { mac: m } => {
            let m = mac(&m)?;
            let machine: Machine = c.get(&format!("/machines/{m}")).await?;
            let events: Vec<Event> = c.get(&format!("/events?machine={m}&limit=100000")).await?;
            if global.json {
                return print_json(&json!({"machine": machine, "events": events}));
            }
            output::machine(&machine);
            println!("\nevents:");
            let skip = events.len().saturating_sub(20);
            for e in &events[skip..] {
                println!("{}", output::event_line(e));
            }
        }
        MachinesCmd::Rm { mac: m } => {
            let m = mac(&m)?;
            c.delete(&format!("/machines/{m}")).await?;
            println!("removed {m}");
        }
        MachinesCmd::Import { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading CSV from stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let r: serde_json::Value = c
                .post_text("/machines/import", text, "text/csv")
                .await
                .with_context(|| format!("importing {}", file.display()))?;
            if global.json {
                return print_json(&r);
            }
            println!(
                "imported {} machines from {}",
                r["imported"],
                file.display()
            );
        }
        MachinesCmd::Logs { mac: m, follow } => super::assets::logs(global, &m, follow).await?,
        MachinesCmd::Token { mac: m, rotate } => super::assets::token(global, &m, rotate).await?,
        MachinesCmd::Reprovision { mac: m } => {
            let m = mac(&m)?;
            let machine: Machine = c
                .send_json(
                    Method::POST,
                    &format!("/machines/{m}/reprovision"),
                    &json!({}),
                )
                .await?;
            if global.json {
                return print_json(&machine);
            }
            println!(
                "{m} will reinstall on its next netboot (state {})",
                machine.state()
            );
        }
        MachinesCmd::Approve { mac: m, profile } => {
            let m = mac(&m)?;
            let body = json!({ "profile": profile });
            let machine: Machine = c
                .send_json(Method::POST, &format!("/machines/{m}/approve"), &body)
                .await?;
            if global.json {
                return print_json(&machine);
            }
            println!("approved {m} (state {})", machine.state());
        }
    }
    Ok(())
}

fn add_body(a: MachineAddArgs) -> anyhow::Result<serde_json::Value> {
    let mut labels = serde_json::Map::new();
    for l in &a.labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--label {l:?} must be KEY=VALUE");
        };
        labels.insert(k.into(), v.into());
    }
    let mut body = json!({
        "mac": a.mac, "hostname": a.hostname, "profile": a.profile, "ip": a.ip, "uuid": a.uuid,
        "serial": a.serial, "site": a.site, "labels": labels,
        "boot": { "loader": a.loader, "extra_cmdline": a.extra_cmdline },
    });
    strip_nulls(&mut body);
    Ok(body)
}

fn strip_nulls(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, v| !v.is_null());
        o.values_mut().for_each(strip_nulls);
    }
}

pub async fn profiles(global: &Global, cmd: ProfilesCmd) -> anyhow::Result<()> {
    let c = Client::new(global)?;
    match cmd {
        ProfilesCmd::Add(a) => {
            let replace = a.replace;
            let p = profile_from(a)?;
            let stored: Profile = if replace {
                c.send_json(Method::PUT, &format!("/profiles/{}", p.name), &p)
                    .await?
            } else {
                c.send_json(Method::POST, "/profiles", &p).await?
            };
            if global.json {
                return print_json(&stored);
            }
            println!("profile {} saved", stored.name);
        }
        ProfilesCmd::List => {
            let ps: Vec<Profile> = c.get("/profiles").await?;
            if global.json {
                return print_json(&ps);
            }
            output::profiles(&ps);
        }
        ProfilesCmd::Show { name } => {
            let p: Profile = c.get(&format!("/profiles/{name}")).await?;
            print_json(&p)?;
        }
        ProfilesCmd::Rm { name } => {
            c.delete(&format!("/profiles/{name}")).await?;
            println!("removed profile {name}");
        }
        ProfilesCmd::PinPcr11(a) => return pin_pcr11(global, &c, a).await,
    }
    Ok(())
}

async fn pin_pcr11(global: &Global, c: &Client, a: PinPcr11Args) -> anyhow::Result<()> {
    let body = if a.from_uki {
        serde_json::json!({"from": "uki"})
    } else if let Some(mac) = a.from_machine {
        serde_json::json!({"from": "machine", "mac": mac})
    } else if let Some(v) = a.value {
        serde_json::json!({ "value": v })
    } else {
        serde_json::json!({"from": "none"})
    };
    let r: serde_json::Value = c
        .send_json(Method::POST, &format!("/profiles/{}/pcr11", a.name), &body)
        .await?;
    if global.json {
        return print_json(&r);
    }
    match r["profile"]["expected_pcr11"].as_str() {
        Some(v) => println!(
            "profile {}: expected PCR 11 {v}\n  ({})",
            a.name,
            r["detail"].as_str().unwrap_or("")
        ),
        None => println!("profile {}: no PCR 11 pinned", a.name),
    }
    Ok(())
}

fn profile_from(a: ProfileAddArgs) -> anyhow::Result<Profile> {
    let cloud_config = match &a.cloud_config {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => String::new(),
    };
    Ok(Profile {
        name: a.name,
        uki: a.uki,
        cloud_config,
        cmdline: a.cmdline,
        install_disk: a.install_disk,
        description: a.description,
        expected_pcr11: a.expected_pcr11,
        secure_boot: a.secure_boot,
    })
}

/// `provisioner leases`: every stored DHCP binding, by address.
pub async fn leases(global: &Global) -> anyhow::Result<()> {
    let c = Client::new(global)?;
    let leases: Vec<serde_json::Value> = c.get("/leases").await?;
    if global.json {
        return print_json(&leases);
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            let expires = l["expires"].as_u64().unwrap_or(0);
            let left = if expires > now {
                format!("{} s", (expires - now) / 1000)
            } else {
                "expired".into()
            };
            let kind = if l["observed"].as_bool().unwrap_or(false) {
                "observed"
            } else {
                "granted"
            };
            vec![
                text(&l["ip"]),
                text(&l["mac"]),
                left,
                kind.into(),
                text(&l["hostname"]),
            ]
        })
        .collect();
    output::table(&["IP", "MAC", "LEFT", "KIND", "HOSTNAME"], &rows);
    Ok(())
}

pub async fn events(global: &Global, a: EventsArgs) -> anyhow::Result<()> {
    let c = Client::new(global)?;
    let machine = a.machine.as_deref().map(mac).transpose()?;
    if !a.follow {
        let mut path = format!("/events?after={}&limit={}", a.after, a.limit);
        if let Some(m) = machine {
            path.push_str(&format!("&machine={m}"));
        }
        let evs: Vec<Event> = c.get(&path).await?;
        if global.json {
            return print_json(&evs);
        }
        for e in &evs {
            println!("{}", output::event_line(e));
        }
        return Ok(());
    }
    follow(&c, global.json, a.after, machine).await
}

/// Prints events as they come; reconnects after a lag or a dropped connection, resuming from the
/// last sequence number seen, so nothing is skipped or repeated.
async fn follow(
    c: &Client,
    json: bool,
    mut after: u64,
    machine: Option<Mac>,
) -> anyhow::Result<()> {
    let mut failures = 0u32;
    loop {
        let mut q = vec![("after", after.to_string())];
        if let Some(m) = machine {
            q.push(("machine", m.to_string()));
        }
        let resp = match c.event_stream(&q).await {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e) if failures < 30 => {
                failures += 1;
                eprintln!("events: {e:#}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let msg: String = buf.drain(..end + 2).collect();
                let data: String = msg
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                if !msg.lines().any(|l| l == "event: event") || data.is_empty() {
                    continue;
                }
                let e: Event = serde_json::from_str(&data).context("decoding a streamed event")?;
                after = after.max(e.seq);
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!("{}", output::event_line(&e));
                }
            }
        }
    }
}
