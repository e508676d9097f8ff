//! The impaired link of `lab run --impair`: a userspace Ethernet forwarder between the lab's
//! server bridge (`br0`: the provisioner, dnsmasq, a site or HA server) and the VMs' bridge
//! (`brvm`: the taps), since this kernel has no netem (see [`crate::impair`]).
//!
//! ```text
//!   br0 ── imp0 ═veth═ eth0 ┐  namespace labimp-…  ┌ eth1 ═veth═ imp1 ── brvm ── tapN
//!                           └─ [Shaper] ⇄ [Shaper] ─┘
//! ```
//! Each side is read with a packet socket (`AF_PACKET`, `SOCK_RAW`, all protocols, promiscuous,
//! our own sends ignored) and written with another; every frame read on one side goes through
//! that direction's [`Shaper`] (loss, delay, bounded queue) and out of the other side when due.
//! One reader and one sender thread per direction; they stop when the [`Link`] is dropped (the
//! namespace itself goes with the [`Topology`]).
//!
//! Offloads are switched off on the four veth ends (legacy `SIOCETHTOOL` set commands,
//! `linux/ethtool.h`), so the kernel hands us wire-sized frames with their checksums filled in
//! instead of 64 KiB TSO/GSO aggregates with `CHECKSUM_PARTIAL`: one frame here is one frame on
//! a real wire, and each is lost or delayed on its own.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::impair::{Admit, DirectionStats, Impairment, Shaper};
use crate::netns::{Topology, IMPAIR_LAB_PORTS, IMPAIR_SIDES};

/// What the link did, per direction, at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStats {
    pub spec: Impairment,
    /// Frames from the servers' bridge to the VMs.
    pub to_vms: DirectionStats,
    /// Frames from the VMs to the servers' bridge.
    pub to_servers: DirectionStats,
}

impl LinkStats {
    /// One line per direction, for the run's progress output.
    pub fn summary(&self) -> String {
        let line = |name: &str, s: &DirectionStats| {
            format!(
                "{name}: {} frames in, {} lost ({:.1} %), {} queue-full, {} forwarded \
                 ({} reordered), held {:.1}/{:.1}/{:.1} ms min/mean/max, {} send errors, {} kernel drops",
                s.frames_in,
                s.lost,
                100.0 * s.lost as f64 / s.frames_in.max(1) as f64,
                s.overflow,
                s.forwarded,
                s.reordered,
                if s.forwarded == 0 { 0.0 } else { s.held_min_ms },
                s.held_mean_ms,
                s.held_max_ms,
                s.send_errors,
                s.kernel_drops
            )
        };
        format!(
            "{}\n{}",
            line("to the VMs", &self.to_vms),
            line("to the servers", &self.to_servers)
        )
    }
}

/// One direction: its shaper, and the sender's wake-up when an earlier frame is queued.
struct Direction {
    shaper: Mutex<Shaper>,
    wake: Condvar,
    /// The input socket, kept to read `PACKET_STATISTICS` at the end.
    input: Arc<socket2::Socket>,
}

/// A running impaired link; stops its threads when dropped.
pub struct Link {
    spec: Impairment,
    stop: Arc<AtomicBool>,
    dirs: [Arc<Direction>; 2],
    threads: Vec<JoinHandle<()>>,
}

/// Starts forwarding between the two sides of `topo`'s impairment namespace.
pub fn start(topo: &Topology, spec: Impairment) -> anyhow::Result<Link> {
    let imp_ns = topo
        .impair_ns
        .clone()
        .context("the topology has no impairment namespace")?;
    let lab_ns = topo.ns.clone();
    // A thread of its own enters the namespaces; the sockets keep theirs after it exits.
    let sockets = std::thread::spawn(move || -> anyhow::Result<Vec<socket2::Socket>> {
        crate::storm::net::enter(&lab_ns).context("entering the lab namespace")?;
        for port in IMPAIR_LAB_PORTS {
            offloads_off(port)?;
        }
        crate::storm::net::enter(&imp_ns).context("entering the impairment namespace")?;
        let mut v = Vec::new();
        for side in IMPAIR_SIDES {
            offloads_off(side)?;
            v.push(open(side, true)?);
            v.push(open(side, false)?);
        }
        Ok(v)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the impairment setup thread panicked"))??;
    let mut it = sockets.into_iter().map(Arc::new);
    let (in0, out0, in1, out1) = (
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
        it.next().unwrap(),
    );
    let mut seed = [0u8; 16];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    let seeds = [
        u64::from_le_bytes(seed[..8].try_into().unwrap()),
        u64::from_le_bytes(seed[8..].try_into().unwrap()),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let dir = |input: Arc<socket2::Socket>, seed| {
        Arc::new(Direction {
            shaper: Mutex::new(Shaper::new(spec, seed)),
            wake: Condvar::new(),
            input,
        })
    };
    let dirs = [dir(in0.clone(), seeds[0]), dir(in1.clone(), seeds[1])];
    let mut threads = Vec::new();
    for (d, input, output) in [(&dirs[0], in0, out1), (&dirs[1], in1, out0)] {
        let (d2, stop2) = (d.clone(), stop.clone());
        threads.push(std::thread::spawn(move || read_loop(&d2, &input, &stop2)));
        let (d2, stop2) = (d.clone(), stop.clone());
        threads.push(std::thread::spawn(move || send_loop(&d2, &output, &stop2)));
    }
    Ok(Link {
        spec,
        stop,
        dirs,
        threads,
    })
}

impl Link {
    /// The counters so far (kernel drops included).
    pub fn stats(&self) -> LinkStats {
        let get = |d: &Direction| {
            let mut s = d.shaper.lock().unwrap().stats().clone();
            s.kernel_drops = kernel_drops(&d.input);
            s
        };
        LinkStats {
            spec: self.spec,
            to_vms: get(&self.dirs[0]),
            to_servers: get(&self.dirs[1]),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for d in &self.dirs {
            d.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_loop(d: &Direction, sock: &socket2::Socket, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: zeroed sockaddr_ll the kernel fills in, passed with its size.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        // n ≤ 0: the read timeout, to look at `stop`. Our own sends (PACKET_IGNORE_OUTGOING
        // already hides them) and frames larger than the buffer are not forwarded.
        if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING || n as usize > buf.len() {
            continue;
        }
        let now = Instant::now();
        let mut sh = d.shaper.lock().unwrap();
        let earliest = sh.next_due();
        if let Admit::Queued(due) = sh.on_frame(buf[..n as usize].to_vec(), now) {
            if earliest.is_none_or(|e| due < e) {
                d.wake.notify_one();
            }
        }
    }
}

fn send_loop(d: &Direction, sock: &socket2::Socket, stop: &AtomicBool) {
    let mut sh = d.shaper.lock().unwrap();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = match sh.next_due() {
            Some(due) if due <= now => {
                let dep = sh.pop_due(now).expect("due");
                drop(sh);
                // SAFETY: sending a buffer we own, of its length, on a bound packet socket.
                let rc = unsafe {
                    libc::send(
                        sock.as_raw_fd(),
                        dep.frame.as_ptr().cast(),
                        dep.frame.len(),
                        0,
                    )
                };
                sh = d.shaper.lock().unwrap();
                if rc < 0 {
                    sh.stats_mut().send_errors += 1;
                }
                continue;
            }
            Some(due) => due - now,
            None => Duration::from_millis(100),
        };
        sh = d.wake.wait_timeout(sh, wait).unwrap().0;
    }
}

/// A packet socket on `iface` of the current namespace: `input` reads every frame arriving
/// there (promiscuous, 100 ms read timeout, our own sends ignored); otherwise it only sends
/// (protocol 0: it receives nothing).
fn open(iface: &str, input: bool) -> anyhow::Result<socket2::Socket> {
    let proto: u16 = if input { libc::ETH_P_ALL as u16 } else { 0 };
    let sock = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(i32::from(proto.to_be()))),
    )
    .context("a packet socket (needs root)")?;
    let ifindex = ifindex(iface)?;
    // SAFETY: zeroed sockaddr_ll filled in below, passed with its size.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: as above.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    anyhow::ensure!(
        rc == 0,
        "binding to {iface}: {}",
        std::io::Error::last_os_error()
    );
    if input {
        // SAFETY: zeroed packet_mreq filled in, passed with its size.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(&sock, libc::PACKET_ADD_MEMBERSHIP, &mr)
            .with_context(|| format!("promiscuous {iface}"))?;
        setsockopt(&sock, libc::PACKET_IGNORE_OUTGOING, &1i32)
            .with_context(|| format!("PACKET_IGNORE_OUTGOING on {iface}"))?;
        sock.set_recv_buffer_size(4 << 20)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    } else {
        sock.set_send_buffer_size(4 << 20)?;
    }
    Ok(sock)
}

fn ifindex(iface: &str) -> anyhow::Result<i32> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(i != 0, "no interface {iface}");
    Ok(i as i32)
}

fn setsockopt<T>(sock: &socket2::Socket, opt: libc::c_int, v: &T) -> anyhow::Result<()> {
    // SAFETY: a value of the option's type, passed with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    anyhow::ensure!(rc == 0, "{}", std::io::Error::last_os_error());
    Ok(())
}

/// Frames the kernel dropped on `sock` since the last call (`PACKET_STATISTICS` resets).
fn kernel_drops(sock: &socket2::Socket) -> u64 {
    // SAFETY: a tpacket_stats the kernel fills in, with its size.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        u64::from(st.tp_drops)
    } else {
        0
    }
}

/// `linux/ethtool.h` legacy set commands: TX checksumming, scatter-gather, TSO, GSO, GRO.
const ETHTOOL_SET_OFF: [u32; 5] = [0x17, 0x19, 0x1f, 0x24, 0x2c];

/// `struct ethtool_value` of `linux/ethtool.h`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Switches `iface`'s offloads off (see the module documentation), in the current namespace.
fn offloads_off(iface: &str) -> anyhow::Result<()> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    for cmd in ETHTOOL_SET_OFF {
        let mut v = EthtoolValue { cmd, data: 0 };
        // SAFETY: zeroed ifreq with the name copied in (shorter than IFNAMSIZ, checked), its
        // data pointing at `v`, which outlives the call.
        let rc = unsafe {
            let mut ifr: libc::ifreq = std::mem::zeroed();
            anyhow::ensure!(iface.len() < ifr.ifr_name.len(), "interface name {iface}");
            for (d, s) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
                *d = s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
            libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr)
        };
        anyhow::ensure!(
            rc == 0,
            "switching offload {cmd:#x} off on {iface}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// On real sockets (needs root, as the lab does): a stand-in VM namespace on `brvm` talks to the
/// lab namespace through the link.
#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;
    use crate::netns::{ip, suffix, SERVER_IP};

    const VM_IP: &str = "198.18.0.50";

    /// A namespace at [`VM_IP`] on the VMs' bridge; deleted on drop.
    struct Peer(String);

    impl Peer {
        fn new(topo: &Topology) -> Peer {
            let p = Peer(format!("labt-{}", suffix()));
            ip(&["netns", "add", &p.0]).unwrap();
            // Nothing of its own on the link (IPv6 router solicitations, MLD): only the test's.
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", &p.0, "sysctl", "-q", "-w"])
                .args([
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ])
                .status()
                .unwrap();
            assert!(ok.success());
            let n = topo.ns.as_str();
            ip(&[
                "-n", n, "link", "add", "vt0", "type", "veth", "peer", "name", "eth0", "netns",
                &p.0,
            ])
            .unwrap();
            ip(&["-n", n, "link", "set", "vt0", "master", "brvm"]).unwrap();
            ip(&["-n", n, "link", "set", "vt0", "up"]).unwrap();
            ip(&[
                "-n",
                &p.0,
                "addr",
                "add",
                &format!("{VM_IP}/24"),
                "dev",
                "eth0",
            ])
            .unwrap();
            ip(&["-n", &p.0, "link", "set", "eth0", "up"]).unwrap();
            // A permanent neighbour entry for the server: no ARP (which the link may lose,
            // making the kernel drop queued datagrams) in the middle of the count.
            let out = std::process::Command::new("ip")
                .args(["-n", n, "-br", "link", "show", "br0"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let mac = text
                .split_whitespace()
                .nth(2)
                .expect("br0's MAC")
                .to_string();
            ip(&[
                "-n",
                &p.0,
                "neigh",
                "replace",
                SERVER_IP,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .unwrap();
            p
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    /// `make` run on a thread inside namespace `ns` (the socket it returns stays there).
    fn in_ns<T: Send + 'static>(ns: &str, make: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = ns.to_string();
        std::thread::spawn(move || {
            crate::storm::net::enter(&ns).unwrap();
            make()
        })
        .join()
        .unwrap()
    }

    /// 2,000 datagrams from the stand-in VM, 0.5 ms apart, through loss 10 %, delay 50 ± 25 ms:
    /// about 10 % never arrive, none arrives in under 25 ms, the median is near 50 ms, many
    /// arrive out of order, and the link's own counters say the same. Then 2 MiB by TCP from
    /// the server's side arrive intact (whole frames, checksums right: offloads are off).
    #[test]
    fn frames_through_the_link_are_lost_delayed_and_reordered() {
        assert!(crate::setup::is_root(), "needs root (network namespaces)");
        let topo = Topology::new_impaired(0, false, false).unwrap();
        let peer = Peer::new(&topo);
        let link = start(&topo, "loss=10,delay=50ms,jitter=25ms".parse().unwrap()).unwrap();
        let rx = in_ns(&topo.ns, || UdpSocket::bind((SERVER_IP, 0)).unwrap());
        let to = rx.local_addr().unwrap();
        let tx = in_ns(&peer.0, || UdpSocket::bind((VM_IP, 0)).unwrap());
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // Until one datagram gets through (the forwarder is up).
        let mut buf = [0u8; 64];
        let warm = Instant::now();
        while rx.recv(&mut buf).is_err() {
            assert!(
                warm.elapsed() < Duration::from_secs(15),
                "nothing got through"
            );
            tx.send_to(b"warm-up", to).unwrap();
        }
        // Warm-up datagrams still queued leave within 75 ms.
        std::thread::sleep(Duration::from_millis(100));
        while rx.recv(&mut buf).is_ok() {}
        let before = link.stats().to_servers;
        let t0 = Instant::now();
        let n = 2000u64;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            let mut quiet = Instant::now();
            while quiet.elapsed() < Duration::from_millis(500) {
                if let Ok(len) = rx.recv(&mut buf) {
                    if len == 16 {
                        let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
                        let sent = u64::from_be_bytes(buf[8..16].try_into().unwrap());
                        let now = t0.elapsed().as_nanos() as u64;
                        got.push((seq, Duration::from_nanos(now - sent)));
                        quiet = Instant::now();
                    }
                }
            }
            got
        });
        for seq in 0..n {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&seq.to_be_bytes());
            d[8..].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_be_bytes());
            tx.send_to(&d, to).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
        let got = reader.join().unwrap();
        let st = link.stats().to_servers;
        let arrived = got.len() as f64 / n as f64;
        let mut lat: Vec<Duration> = got.iter().map(|g| g.1).collect();
        lat.sort();
        let median = lat[lat.len() / 2];
        let reordered = got.windows(2).filter(|w| w[1].0 < w[0].0).count();
        eprintln!(
            "arrived {:.1} %, latency min {:?} median {median:?} max {:?}, {reordered} out of \
             order; link: {st:?}",
            arrived * 100.0,
            lat[0],
            lat[lat.len() - 1]
        );
        assert!((0.86..0.94).contains(&arrived), "arrived {arrived}");
        assert!(lat[0] >= Duration::from_millis(25), "{:?}", lat[0]);
        assert!(
            (Duration::from_millis(45)..Duration::from_millis(70)).contains(&median),
            "{median:?}"
        );
        assert!(reordered > 200, "{reordered}");
        // Our datagrams, and a few frames of the kernels' own.
        let frames = st.frames_in - before.frames_in;
        assert!((n..n + 10).contains(&frames), "{frames}: {before:?} {st:?}");
        // Every frame lost or forwarded, but for one held across either snapshot (an ARP frame).
        let done = (st.lost - before.lost) + (st.forwarded - before.forwarded);
        assert!(
            frames.abs_diff(done) <= 2,
            "{frames} in, {done} lost or forwarded"
        );
        let forwarded = st.forwarded - before.forwarded;
        let arrived_n = got.len() as u64;
        assert!((arrived_n..arrived_n + 10).contains(&forwarded), "{st:?}");
        assert!(st.reordered > before.reordered + 200, "{st:?}");
        assert_eq!((st.overflow, st.send_errors), (0, 0));

        // TCP from the server's side, as a download: 2 MiB, byte for byte.
        let listener = in_ns(&peer.0, || TcpListener::bind((VM_IP, 0)).unwrap());
        let at = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let started = Instant::now();
        let sender = in_ns(&topo.ns, move || {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(10)).unwrap();
                s.write_all(&data).unwrap();
            })
        });
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        let secs = started.elapsed().as_secs_f64();
        let st = link.stats();
        eprintln!(
            "2 MiB by TCP in {secs:.1} s ({:.0} KiB/s)\n{}",
            2048.0 / secs,
            st.summary()
        );
        assert!(got == expect, "{} bytes, not the same", got.len());
        assert_eq!(st.to_vms.send_errors + st.to_servers.send_errors, 0);
        assert!(st.to_vms.lost > 0 && st.to_vms.reordered > 0, "{st:?}");
        drop(link);
        drop(peer);
    }
}
