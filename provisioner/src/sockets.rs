//! Socket quirks, all in one place (the DHCP server will use the same helpers).
//!
//! - `IP_PKTINFO` / `IPV6_RECVPKTINFO`: a server bound to `0.0.0.0` or `[::]` must learn which
//!   local address a datagram was sent to, so that its answer (TFTP: a new per-transfer socket)
//!   comes from that address. Linux reports it in a control message on `recvmsg`. A socket bound
//!   to `[::]` is dual-stack: its IPv4 peers are reported as plain IPv4 addresses.
//! - Per-transfer sockets are bound to that local address on an ephemeral port and `connect`ed to
//!   the client, so the kernel filters other sources (RFC 1350 transfer IDs) for us.
//! - `TCP_RTO_MAX_MS` on the HTTP listener (see [`HTTP_RTO_MAX_MS`]): firmware gives up on a
//!   download after a few seconds without data, sooner than Linux's retransmission backoff.
//! - DHCPv6 ([`bind_dhcp6`]): `SO_BINDTODEVICE` and a join of `ff02::1:2` on the
//!   one interface served; replies to link-local clients carry the scope the request had.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Where a datagram arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub peer: SocketAddr,
    /// The local address to answer from: the destination address of the datagram, or, for a
    /// broadcast, the address of the interface it came in on. `None` if the kernel did not say.
    pub local: Option<IpAddr>,
    /// Interface index it arrived on (0 if unknown).
    pub ifindex: u32,
    /// Sent to the limited broadcast address (DHCP: a REBINDING client broadcasts, a RENEWING
    /// one unicasts; RFC 2131 §4.4.5).
    pub broadcast: bool,
}

/// Binds a UDP socket that reports the local address of each datagram. An IPv6 address binds a
/// dual-stack socket (`[::]:69` serves IPv4 clients too, as v4-mapped addresses, which
/// [`recv_with_arrival`] reports as plain IPv4); `IPV6_RECVPKTINFO` then reports the local
/// address of both kinds.
pub async fn bind_udp_with_pktinfo(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr).await?;
    if addr.is_ipv4() {
        setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    } else {
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
    }
    Ok(sock)
}

/// `peer` as `sock` can address it: an IPv4 peer (from [`recv_with_arrival`]) of a dual-stack
/// IPv6 socket becomes its v4-mapped address.
pub fn peer_for(sock: &UdpSocket, peer: SocketAddr) -> SocketAddr {
    match (sock.local_addr(), peer) {
        (Ok(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => peer,
    }
}

/// Receives one datagram with its arrival details.
pub async fn recv_with_arrival(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Arrival)> {
    let bound = sock.local_addr()?;
    sock.async_io(Interest::READABLE, || {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
        let msg = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let peer = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                    .or_else(|| {
                        // A v4-mapped peer of a dual-stack socket is an IPv4 client.
                        a.as_sockaddr_in6()
                            .map(|v6| match v6.ip().to_ipv4_mapped() {
                                Some(v4) => SocketAddr::from((v4, v6.port())),
                                None => SocketAddr::V6(std::net::SocketAddrV6::new(
                                    v6.ip(),
                                    v6.port(),
                                    0,
                                    v6.scope_id(),
                                )),
                            })
                    })
            })
            .ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
        let mut arrival = Arrival {
            peer,
            local: (!bound.ip().is_unspecified()).then_some(bound.ip()),
            ifindex: 0,
            broadcast: false,
        };
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::Ipv4PacketInfo(pi) = c {
                    let dst = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                    let spec = Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr));
                    let local = if dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified()
                    {
                        spec
                    } else {
                        dst
                    };
                    arrival.local = Some(IpAddr::V4(local));
                    arrival.broadcast = dst.is_broadcast();
                    arrival.ifindex = pi.ipi_ifindex as u32;
                }
                if let ControlMessageOwned::Ipv6PacketInfo(pi) = c {
                    let dst = std::net::Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                    // Multicast has no address to answer from: routing chooses.
                    if !dst.is_multicast() && !dst.is_unspecified() {
                        arrival.local = Some(IpAddr::V6(dst).to_canonical());
                    }
                    arrival.ifindex = pi.ipi6_ifindex;
                }
            }
        }
        Ok((msg.bytes, arrival))
    })
    .await
}

/// A socket for one exchange with `peer`, sending from `local` on a fresh port. A link-local
/// IPv6 `local` takes the scope (interface) of `peer`.
pub async fn connected_udp(local: IpAddr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let bind = match (local, peer) {
        (IpAddr::V6(l), SocketAddr::V6(p)) if l.is_unicast_link_local() => {
            SocketAddr::V6(std::net::SocketAddrV6::new(l, 0, 0, p.scope_id()))
        }
        _ => SocketAddr::new(local, 0),
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(peer).await?;
    Ok(sock)
}

/// Binds the DHCP server socket: IP_PKTINFO on receive, broadcast allowed, optionally tied to one
/// interface (SO_BINDTODEVICE) when the server serves one link of several.
/// Requested receive buffer of DHCP sockets.
pub const DHCP_RECEIVE_BUFFER: usize = 4 << 20;

pub async fn bind_dhcp(addr: SocketAddr, interface: Option<&str>) -> io::Result<UdpSocket> {
    let sock = bind_udp_with_pktinfo(addr).await?;
    sock.set_broadcast(true)?;
    // A boot storm arrives in bursts while lease writes wait for the disk: a deep receive queue
    // absorbs them instead of dropping (the kernel caps this at net.core.rmem_max).
    let _ = setsockopt(&sock, sockopt::RcvBuf, &DHCP_RECEIVE_BUFFER);
    if let Some(dev) = interface {
        setsockopt(&sock, sockopt::BindToDevice, &std::ffi::OsString::from(dev))
            .map_err(io::Error::from)?;
    }
    Ok(sock)
}

/// Binds the DHCPv6 server socket (`[addr]:547`) to `interface` and joins `group`
/// (All_DHCP_Relay_Agents_and_Servers) there: clients multicast their Solicits.
pub async fn bind_dhcp6(
    addr: std::net::SocketAddrV6,
    interface: &str,
    group: std::net::Ipv6Addr,
) -> io::Result<UdpSocket> {
    let index = nix::net::if_::if_nametoindex(interface).map_err(io::Error::from)?;
    let std_sock = std::net::UdpSocket::bind(addr)?;
    std_sock.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(std_sock)?;
    setsockopt(
        &sock,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(interface),
    )
    .map_err(io::Error::from)?;
    sock.join_multicast_v6(&group, index)?;
    Ok(sock)
}

/// Requested receive buffer of the syslog socket: a boot storm's installers log in bursts.
pub const SYSLOG_RECEIVE_BUFFER: usize = 4 << 20;

/// Binds the syslog receiver with a deep receive queue. As root the kernel's `rmem_max` cap is
/// bypassed (SO_RCVBUFFORCE); otherwise the buffer is what `net.core.rmem_max` allows.
pub async fn bind_syslog(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr).await?;
    if setsockopt(&sock, sockopt::RcvBufForce, &SYSLOG_RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &SYSLOG_RECEIVE_BUFFER);
    }
    Ok(sock)
}

/// Sends `buf` to `dest` out of interface `ifindex` (0: let routing choose). A limited broadcast
/// (255.255.255.255) has no route in a network without a default gateway, so DHCP replies name
/// the interface the request came in on.
pub async fn send_via(
    sock: &UdpSocket,
    buf: &[u8],
    dest: std::net::SocketAddrV4,
    ifindex: u32,
) -> io::Result<usize> {
    if ifindex == 0 {
        return sock.send_to(buf, dest).await;
    }
    sock.async_io(Interest::WRITABLE, || {
        let iov = [std::io::IoSlice::new(buf)];
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: ifindex as i32,
            ipi_spec_dst: nix::libc::in_addr { s_addr: 0 },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
        let to = SockaddrIn::from(dest);
        sendmsg(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&to))
            .map_err(io::Error::from)
    })
    .await
}

/// Accept backlog of the HTTP listener: connections the kernel completes while the server is at
/// its connection cap or busy. The kernel caps it at `net.core.somaxconn` (4096 by default).
/// tokio's `TcpListener::bind` asks for 1024; in a boot storm of thousands of machines a full
/// queue drops handshakes, and a client whose handshake was dropped after it sent its request
/// gets a reset.
pub const HTTP_BACKLOG: u32 = 65_535;

/// Longest retransmission timeout of an HTTP connection, milliseconds (Linux's default: 120 s).
/// UEFI HTTP boot (EDK2 `HttpBootDxe`, `PcdHttpIoTimeout` = 5000 ms) abandons a download when
/// no data came for 5 s; on a lossy link Linux doubles the timeout with each lost
/// retransmission (seen in the lab at 10 % loss, 50 ± 25 ms: 308 ms → 616 → 1232 → 2464 →
/// 4992), so four in a row ended OVMF's boot with "Server response timeout". Capped at 1 s, a
/// retransmission goes out at least every second.
pub const HTTP_RTO_MAX_MS: i32 = 1000;

/// `TCP_RTO_MAX_MS` of `linux/tcp.h` (Linux 6.15); not in the libc crate yet.
const TCP_RTO_MAX_MS: nix::libc::c_int = 44;

/// Binds the HTTP listener on `addr` with address reuse, [`HTTP_BACKLOG`] and
/// [`HTTP_RTO_MAX_MS`] (accepted connections inherit it; a kernel without the option keeps its
/// default backoff).
pub fn bind_http(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    // SAFETY: an int option, passed with its size, on a socket we own.
    let rc = unsafe {
        nix::libc::setsockopt(
            sock.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            TCP_RTO_MAX_MS,
            (&HTTP_RTO_MAX_MS as *const i32).cast(),
            std::mem::size_of::<i32>() as nix::libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            error = %io::Error::last_os_error(),
            "TCP_RTO_MAX_MS not supported by this kernel; HTTP keeps the default backoff"
        );
    }
    sock.bind(addr)?;
    sock.listen(HTTP_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener carries the cap, and a connection it accepts inherits it.
    #[tokio::test]
    async fn http_connections_cap_the_retransmission_backoff() {
        let rto_max = |fd: i32| {
            let mut v: i32 = 0;
            let mut len = std::mem::size_of::<i32>() as nix::libc::socklen_t;
            // SAFETY: an int option read into a local, with its size.
            let rc = unsafe {
                nix::libc::getsockopt(
                    fd,
                    nix::libc::IPPROTO_TCP,
                    TCP_RTO_MAX_MS,
                    (&mut v as *mut i32).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            v
        };
        let listener = bind_http("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(rto_max(listener.as_raw_fd()), HTTP_RTO_MAX_MS);
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        assert_eq!(rto_max(conn.as_raw_fd()), HTTP_RTO_MAX_MS);
    }
}
