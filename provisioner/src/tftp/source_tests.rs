//! Directory sources on a temp dir: files, symlinks inside and out, FIFOs, sockets, directories,
//! names too long; and the chain.

use std::os::unix::fs::symlink;

use super::*;

fn client() -> SocketAddr {
    "127.0.0.1:1000".parse().unwrap()
}

/// Opens `name` on another thread and fails the test (instead of hanging) if that blocks.
fn open_within_deadline(src: Arc<DirSource>, name: &str) -> Result<Option<u64>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = name.to_string();
    std::thread::spawn(move || {
        let r = src
            .open(&name, client())
            .map(|f| f.map(|f| f.size()))
            .map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("open() blocked for 5 s")
}

#[test]
fn dir_source_serves_files_and_symlinks_that_stay_inside() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::write(root.path().join("sub/a.efi"), b"hello").unwrap();
    symlink("sub/a.efi", root.path().join("alias.efi")).unwrap();
    // Absolute links that stay inside the root work too.
    symlink(root.path().join("sub/a.efi"), root.path().join("abs.efi")).unwrap();
    symlink(root.path().join("sub"), root.path().join("dirlink")).unwrap();
    let src = DirSource::confined(root.path()).unwrap();
    let f = src.open("sub/a.efi", client()).unwrap().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!((f.size(), f.read_at(&mut buf, 1).unwrap()), (5, 4));
    assert_eq!(&buf[..4], b"ello");
    for name in ["alias.efi", "abs.efi", "dirlink/a.efi"] {
        assert_eq!(
            src.open(name, client()).unwrap().map(|f| f.size()),
            Some(5),
            "{name}: a symlink inside the root is fine"
        );
    }
}

#[test]
fn anything_but_a_regular_file_inside_the_root_is_not_found() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s3cret").unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir(r.join("sub")).unwrap();
    std::fs::write(r.join("sub/a.efi"), b"hello").unwrap();
    nix::unistd::mkfifo(&r.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
    symlink(outside.path().join("secret"), r.join("leak")).unwrap();
    symlink("../../../../../../../../etc/passwd", r.join("climb")).unwrap();
    symlink(outside.path(), r.join("outdir")).unwrap();
    symlink("fifo", r.join("fifolink")).unwrap();
    symlink("loop1", r.join("loop2")).unwrap();
    symlink("loop2", r.join("loop1")).unwrap();
    symlink("/dev/zero", r.join("dev")).unwrap();
    let src = Arc::new(DirSource::confined(r).unwrap());
    let long_component = "x".repeat(300);
    let long_path = ["y"; 2500].join("/"); // 4999 bytes, past PATH_MAX
    for name in [
        "fifo",
        "fifolink",
        "sock",
        "sub",
        "leak",
        "climb",
        "outdir/secret",
        "loop1",
        "dev",
        "sub/a.efi/x",
        "missing",
        &"z".repeat(5000),
        &long_component,
        &long_path,
    ] {
        let shown = &name[..name.len().min(40)];
        assert_eq!(
            open_within_deadline(src.clone(), name),
            Ok(None),
            "{shown}: the same \"not here\" as a missing name"
        );
    }
    // A FIFO costs nothing: many opens in a row, none waits for a writer.
    for _ in 0..100 {
        assert_eq!(open_within_deadline(src.clone(), "fifo"), Ok(None));
    }
}

#[test]
fn trusted_dir_follows_links_anywhere_but_still_only_serves_regular_files() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("ipxe.efi"), b"ipxe!!").unwrap();
    nix::unistd::mkfifo(
        &outside.path().join("fifo"),
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    // Debian: /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi.
    symlink(
        outside.path().join("ipxe.efi"),
        root.path().join("ipxe.efi"),
    )
    .unwrap();
    symlink(outside.path().join("fifo"), root.path().join("fifo")).unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    let trusted = Arc::new(DirSource::trusted(root.path()).unwrap());
    assert_eq!(
        open_within_deadline(trusted.clone(), "ipxe.efi"),
        Ok(Some(6))
    );
    for name in ["fifo", "sub", "missing", &"z".repeat(5000)] {
        assert_eq!(
            open_within_deadline(trusted.clone(), name),
            Ok(None),
            "{name}"
        );
    }
    // Even there a name cannot climb out: `..` never reaches a source (see path.rs).
    assert!(crate::tftp::path::normalize("../leak").is_err());
}

#[test]
fn chain_asks_in_order() {
    let a = MemSource([("x".to_string(), Arc::from(&b"first"[..]))].into());
    let b = MemSource(
        [
            ("x".to_string(), Arc::from(&b"second"[..])),
            ("y".to_string(), Arc::from(&b"y"[..])),
        ]
        .into(),
    );
    let c = Chain(vec![Arc::new(a), Arc::new(b)]);
    assert_eq!(c.open("x", client()).unwrap().unwrap().size(), 5);
    assert_eq!(c.open("y", client()).unwrap().unwrap().size(), 1);
    assert!(c.open("z", client()).unwrap().is_none());
}
