//! TFTP over a link that loses 10% of DATA and ACK datagrams (both directions), inside a test
//! namespace.

use std::process::Command;

use crate::harness::{binary, stderr, Server};
use crate::netns::Netns;
use crate::tftp::content;

#[test]
fn transfers_complete_with_ten_percent_loss() {
    let ns = Netns::new("tftploss");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let want = content(1024 * 1024 + 11, 99);
    std::fs::write(root.join("ipxe.efi"), &want).unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!("[tftp]\nroot = {:?}\n", root.display().to_string()),
    )
    .unwrap();
    let mut serve = ns.command(binary().to_str().unwrap());
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tftp-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let s = Server::spawn(serve, &dir.path().join("data"));
    let addr = s.tftp.unwrap();
    ns.drop_tftp_data_and_acks(10);
    let out = tempfile::tempdir().unwrap();
    let clients: Vec<(&str, Command)> = vec![
        ("atftp-w16", {
            let mut c = ns.command("atftp");
            c.args([
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 16",
                "-g",
                "-r",
                "ipxe.efi",
                "-l",
            ])
            .arg(out.path().join("atftp-w16"))
            .args([addr.ip().to_string(), addr.port().to_string()]);
            c
        }),
        ("curl", {
            let mut c = ns.command("curl");
            c.args(["-sS", "--max-time", "120", "--tftp-blksize", "1468", "-o"])
                .arg(out.path().join("curl"))
                .arg(format!("tftp://{addr}/ipxe.efi"));
            c
        }),
        ("tftp-hpa", {
            let mut c = ns.command("tftp");
            c.args([
                "-m",
                "binary",
                &addr.ip().to_string(),
                &addr.port().to_string(),
                "-c",
                "get",
                "ipxe.efi",
            ])
            .arg(out.path().join("tftp-hpa"));
            c
        }),
    ];
    for (name, mut c) in clients {
        let t = std::time::Instant::now();
        let o = c.output().unwrap();
        eprintln!("{name}: 1 MiB through 10% loss in {:?}", t.elapsed());
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let got = std::fs::read(out.path().join(name)).unwrap();
        assert!(
            got == want,
            "{name}: {} bytes, differs from the source",
            got.len()
        );
    }
    let log = s.log();
    drop(s);
    drop(ns);
    assert!(!log.contains("panicked"), "{log}");
}
