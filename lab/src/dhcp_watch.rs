//! Watches the lab bridge for DHCP ACKs, to act at a point of a boot seen on the wire (the HA
//! run kills the server that ACKed a machine right after its ACK). A packet socket
//! (`AF_PACKET`, `SOCK_DGRAM`, IPv4) on the bridge, in promiscuous mode so that frames the bridge
//! forwards between ports (a server's veth to a VM's tap, unicast or broadcast) are seen too.
//! Read-only: nothing is sent. The socket is made on a thread that entered the namespace.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::Context;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::Decodable;

/// One DHCPACK seen on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The client's MAC (`chaddr`), lowercase `aa:bb:…`.
    pub mac: String,
    /// The server that sent it (option 54).
    pub server: Ipv4Addr,
    /// The address it binds (`yiaddr`).
    pub yiaddr: Ipv4Addr,
}

/// A running watcher; stops (and closes its socket) when dropped.
pub struct AckWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Every ACK, in the order seen.
    pub acks: mpsc::Receiver<Ack>,
}

const ETH_P_IP: u16 = 0x0800;

/// Starts watching `iface` in the namespace `ns`; returns once the socket is bound.
pub fn watch(ns: &str, iface: &str) -> anyhow::Result<AckWatch> {
    let (tx, acks) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let stop = Arc::new(AtomicBool::new(false));
    let (ns, iface, stop2) = (ns.to_string(), iface.to_string(), stop.clone());
    let thread = std::thread::spawn(move || {
        let sock = match crate::storm::net::enter(&ns)
            .context("entering the lab namespace")
            .and_then(|()| open(&iface))
        {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut buf = vec![0u8; 2048];
        while !stop2.load(Ordering::SeqCst) {
            // SAFETY: reading into a buffer we own, of its length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue; // the read timeout, to look at `stop`
            }
            if let Some(ack) = parse(&buf[..n as usize]) {
                let _ = tx.send(ack);
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the DHCP watcher did not start")??;
    Ok(AckWatch {
        stop,
        thread: Some(thread),
        acks,
    })
}

impl Drop for AckWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A packet socket bound to `iface`, promiscuous, with a 200 ms read timeout.
fn open(iface: &str) -> anyhow::Result<socket2::Socket> {
    let proto = socket2::Protocol::from(i32::from(ETH_P_IP.to_be()));
    let sock = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::DGRAM, Some(proto))
        .context("a packet socket (needs root)")?;
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(ifindex != 0, "no interface {iface}");
    // SAFETY: zeroed sockaddr_ll filled in below, passed with its size.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_IP.to_be();
    sll.sll_ifindex = ifindex as i32;
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
    // SAFETY: zeroed packet_mreq filled in, passed with its size.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = ifindex as i32;
    mr.mr_type = libc::PACKET_MR_PROMISC as u16;
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mr as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as u32,
        )
    };
    anyhow::ensure!(
        rc == 0,
        "promiscuous {iface}: {}",
        std::io::Error::last_os_error()
    );
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(sock)
}

/// An IPv4 datagram (no link header): a DHCPACK to port 68, or `None`.
fn parse(ip: &[u8]) -> Option<Ack> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 || ip.len() < ihl + 8 {
        return None;
    }
    let udp = &ip[ihl..];
    if u16::from_be_bytes([udp[2], udp[3]]) != 68 {
        return None;
    }
    let msg = Message::decode(&mut dhcproto::Decoder::new(&udp[8..])).ok()?;
    match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(MessageType::Ack)) => {}
        _ => return None,
    }
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => return None,
    };
    let mac = msg
        .chaddr()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Some(Ack {
        mac,
        server,
        yiaddr: msg.yiaddr(),
    })
}
