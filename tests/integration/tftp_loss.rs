//! TFTP over a link that loses 10% of DATA and ACK datagrams (both directions), inside a test
//! namespace.

use crate::harness::{serve_cmd, stderr, Server};
use crate::netns::Netns;
use crate::tftp::{atftp, content, curl, tftp_config, tftp_hpa};

#[test]
fn transfers_complete_with_ten_percent_loss() {
    let ns = Netns::new("tftploss");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let want = content(1024 * 1024 + 11, 99);
    std::fs::write(root.join("ipxe.efi"), &want).unwrap();
    let cfg = tftp_config(dir.path(), "");
    let serve = ns.wrap(&serve_cmd(&cfg, &dir.path().join("data")));
    let s = Server::spawn(serve, &dir.path().join("data"));
    let addr = s.tftp.unwrap();
    ns.drop_tftp_data_and_acks(10);
    let out = tempfile::tempdir().unwrap();
    let o = |name: &str| out.path().join(name);
    let clients = [
        (
            "atftp-w16",
            ns.wrap(&atftp(addr, "ipxe.efi", 1468, 16, &o("atftp-w16"))),
        ),
        ("curl", ns.wrap(&curl(addr, "ipxe.efi", 1468, &o("curl")))),
        (
            "tftp-hpa",
            ns.wrap(&tftp_hpa(addr, "ipxe.efi", &o("tftp-hpa"))),
        ),
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
