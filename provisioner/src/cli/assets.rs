//! `provisioner assets …` and `provisioner machines logs|token`: client commands of the boot side.

use std::path::{Path, PathBuf};

use anyhow::Context;
use boot_assets::{signature, AssetKind, AssetMeta, EfiInfo, GcReport, Verdict};
use futures_util::StreamExt;
use inventory::LogLine;
use reqwest::Method;

use super::client::Client;
use super::output;
use super::{AssetsCmd, Global};
use crate::api::assets::{AssetView, SignatureView};

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub async fn assets(global: &Global, cmd: AssetsCmd) -> anyhow::Result<()> {
    match cmd {
        AssetsCmd::Import { file, loader } => import(global, &file, loader).await,
        AssetsCmd::List => {
            let list: Vec<AssetMeta> = Client::new(global)?.get("/assets").await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    let os = a
                        .efi
                        .as_ref()
                        .and_then(|e| e.uki.as_ref())
                        .map(|u| u.os_name())
                        .unwrap_or_default();
                    vec![
                        a.digest[..19].to_string() + "…",
                        a.name.clone(),
                        format!("{:?}", a.kind).to_lowercase(),
                        human_size(a.size),
                        os,
                    ]
                })
                .collect();
            output::table(&["DIGEST", "NAME", "KIND", "SIZE", "OS"], &rows);
            Ok(())
        }
        AssetsCmd::Inspect { what, db_cert } => inspect(global, &what, db_cert).await,
        AssetsCmd::Rm { digest } => {
            let meta: AssetMeta = Client::new(global)?
                .send(Client::new(global)?.request(Method::DELETE, &format!("/assets/{digest}")))
                .await?
                .json()
                .await?;
            println!("removed {} ({})", meta.digest, meta.name);
            Ok(())
        }
        AssetsCmd::Gc { unreferenced } => {
            let c = Client::new(global)?;
            let r: GcReport = c
                .send(c.request(
                    Method::POST,
                    &format!("/assets/gc?unreferenced={unreferenced}"),
                ))
                .await?
                .json()
                .await?;
            if global.json {
                return print_json(&r);
            }
            println!(
                "removed {} leftover file(s) and {} unreferenced asset(s), freed {}",
                r.leftovers,
                r.unreferenced.len(),
                human_size(r.bytes_freed)
            );
            for d in r.unreferenced {
                println!("  {d}");
            }
            Ok(())
        }
    }
}

/// `assets inspect FILE|DIGEST [--db-cert PEM]…`: a local file is inspected and its signature
/// checked here (against `--db-cert`); a digest is the server's view (against its db certs).
async fn inspect(global: &Global, what: &str, db_cert: Vec<PathBuf>) -> anyhow::Result<()> {
    let p = Path::new(what);
    let (name, digest, size, info, signature) = if p.exists() {
        let path = p.to_path_buf();
        let (info, verdict) = tokio::task::spawn_blocking(move || {
            let trust = boot_assets::TrustStore::load(&db_cert)?;
            let (image, info) = boot_assets::uki::inspect_efi(&path)?;
            let v = signature::verify_image(&path, &image, &info.authenticode_sha256, &trust)?;
            anyhow::Ok((
                info,
                SignatureView {
                    verdict: v,
                    db_certs: trust.files().to_vec(),
                },
            ))
        })
        .await??;
        (
            what.to_string(),
            None,
            p.metadata()?.len(),
            info,
            Some(verdict),
        )
    } else {
        if !db_cert.is_empty() {
            anyhow::bail!("{what} is not a file here; --db-cert checks local files (a digest is checked against the server's secure_boot.db_certs)");
        }
        let view: AssetView = Client::new(global)?
            .get(&format!("/assets/{what}"))
            .await
            .with_context(|| format!("{what} is neither a file here nor an asset digest"))?;
        let meta = view.meta;
        let info = meta
            .efi
            .clone()
            .with_context(|| format!("{} is not an EFI image", meta.name))?;
        (
            meta.name,
            Some(meta.digest),
            meta.size,
            info,
            view.signature,
        )
    };
    if global.json {
        #[derive(serde::Serialize)]
        struct Inspection<'a> {
            #[serde(flatten)]
            info: &'a EfiInfo,
            #[serde(skip_serializing_if = "Option::is_none")]
            signature: Option<&'a SignatureView>,
        }
        return print_json(&Inspection {
            info: &info,
            signature: signature.as_ref(),
        });
    }
    print_inspection(&name, digest.as_deref(), size, &info);
    if let Some(s) = &signature {
        print_verdict(s);
    }
    Ok(())
}

/// The verdict lines of `assets inspect`.
fn print_verdict(s: &SignatureView) {
    let files: Vec<String> = s.db_certs.iter().map(|p| p.display().to_string()).collect();
    match (&s.verdict, files.is_empty()) {
        (Verdict::Untrusted { signer, issuer, .. }, true) => {
            println!("signer:       {signer} (issuer {issuer})");
            println!("verdict:      not checked: no db certificates (--db-cert PEM, or the server's secure_boot.db_certs)");
        }
        (v, _) => {
            if let Verdict::Trusted { signer, issuer, .. }
            | Verdict::Untrusted { signer, issuer, .. } = v
            {
                println!("signer:       {signer} (issuer {issuer})");
            }
            println!("verdict:      {}: the image {}", v.name(), v.describe());
        }
    }
    if !files.is_empty() {
        println!("db certs:     {}", files.join(", "));
    }
}

fn print_inspection(name: &str, digest: Option<&str>, size: u64, info: &EfiInfo) {
    println!("file:         {name}");
    if let Some(d) = digest {
        println!("digest:       {d}");
    }
    println!("size:         {} ({size} bytes)", human_size(size));
    println!("arch:         {}", info.arch);
    match &info.uki {
        Some(u) => {
            println!("kind:         UKI");
            println!("os:           {}", u.os_name());
            for k in ["NAME", "ID", "VERSION_ID", "PRETTY_NAME"] {
                if let Some(v) = u.os_release.get(k) {
                    println!("  {k:<11} {v}");
                }
            }
            println!(
                "uname:        {}",
                u.uname.as_deref().unwrap_or("(no .uname)")
            );
            println!(
                "cmdline:      {}",
                u.cmdline.as_deref().unwrap_or("(no .cmdline)")
            );
            if let Some(s) = &u.sbat {
                println!(
                    "sbat:         {}",
                    s.lines().collect::<Vec<_>>().join(" | ")
                );
            }
        }
        None => println!("kind:         EFI application (not a UKI)"),
    }
    println!(
        "signature:    {}",
        if info.signed {
            "Authenticode signed"
        } else {
            "not signed"
        }
    );
    println!("authenticode: sha256:{}", info.authenticode_sha256);
    println!("sections:");
    for s in &info.sections {
        println!("  {:<10} {:>12}  {}", s.name, s.size, human_size(s.size));
    }
}

async fn import(global: &Global, file: &Path, loader: bool) -> anyhow::Result<()> {
    let kind = if loader {
        AssetKind::Loader
    } else {
        AssetKind::Uki
    };
    // Check locally first: a wrong file fails in a second instead of after a 300 MB upload.
    if kind == AssetKind::Uki {
        let p = file.to_path_buf();
        tokio::task::spawn_blocking(move || boot_assets::uki::inspect_uki(&p)).await??;
    }
    let c = Client::new(global)?;
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let len = f.metadata().await?.len();
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "asset".into());
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {name}"));
    let progress = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).inspect(move |chunk| {
        if let Ok(c) = chunk {
            progress.inc(c.len() as u64);
        }
    });
    let kind_str = if loader { "loader" } else { "uki" };
    let req = c
        .request(Method::POST, "/assets")
        .query(&[("name", name.as_str()), ("kind", kind_str)])
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let meta: AssetMeta = c.send(req).await?.json().await?;
    bar.finish_and_clear();
    if global.json {
        return print_json(&meta);
    }
    println!(
        "imported {} as {} ({})",
        meta.name,
        meta.digest,
        human_size(meta.size)
    );
    if let Some(u) = meta.efi.as_ref().and_then(|e| e.uki.as_ref()) {
        println!(
            "  os: {}  uname: {}",
            u.os_name(),
            u.uname.as_deref().unwrap_or("-")
        );
        println!(
            "use it: provisioner profiles add NAME --uki {}",
            meta.digest
        );
    }
    Ok(())
}

fn log_line(l: &LogLine) -> String {
    let app = l
        .line
        .app
        .as_deref()
        .map(|a| format!("{a}: "))
        .unwrap_or_default();
    format!("{} [{}] {app}{}", l.at, l.line.source, l.line.text)
}

/// `machines logs MAC [--follow]`.
pub async fn logs(global: &Global, mac: &str, follow: bool) -> anyhow::Result<()> {
    let mac: inventory::Mac = mac.parse()?;
    let c = Client::new(global)?;
    let lines: Vec<LogLine> = c.get(&format!("/machines/{mac}/logs")).await?;
    let mut after = 0;
    for l in &lines {
        after = l.seq;
        if global.json {
            println!("{}", serde_json::to_string(l)?);
        } else {
            println!("{}", log_line(l));
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        let req = c
            .request(Method::GET, &format!("/machines/{mac}/logs/stream"))
            .query(&[("after", after.to_string())]);
        let resp = c.send(req).await?;
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let msg: String = buf.drain(..end + 2).collect();
                let Some(data) = msg.lines().find_map(|l| l.strip_prefix("data:")) else {
                    continue;
                };
                let l: LogLine = serde_json::from_str(data.trim_start())?;
                after = after.max(l.seq);
                if global.json {
                    println!("{}", serde_json::to_string(&l)?);
                } else {
                    println!("{}", log_line(&l));
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `machines token MAC`.
pub async fn token(global: &Global, mac: &str, rotate: bool) -> anyhow::Result<()> {
    let mac: inventory::Mac = mac.parse()?;
    let client = Client::new(global)?;
    let v: serde_json::Value = if rotate {
        client
            .send_json(
                reqwest::Method::POST,
                &format!("/machines/{mac}/token/rotate"),
                &serde_json::json!({}),
            )
            .await?
    } else {
        client.get(&format!("/machines/{mac}/token")).await?
    };
    println!("{}", v["token"].as_str().unwrap_or_default());
    Ok(())
}
