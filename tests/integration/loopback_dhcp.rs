//! DHCP on loopback with the test as the relay agent: wire helpers (a BOOTREQUEST with giaddr
//! set, the fields of a reply) and [`LeaseServer`], a full-mode server whose leases give tests
//! addresses on 127.0.0.0/8 that the server's own evidence ties to a MAC. HTTP requests bound to
//! such an address are "from the machine", exactly as a netbooting machine's are: the server
//! granted the lease itself (RFC 2131 DORA through a relay, answered to giaddr:67).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Api, Server};

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const RELEASE: u8 = 7;

/// A relayed BOOTREQUEST of message type `kind` from `mac` (hops 1, giaddr set).
pub fn packet(
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    giaddr: Ipv4Addr,
    extra: &[(u8, Vec<u8>)],
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[3] = 1; // hops: relayed
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[24..28].copy_from_slice(&giaddr.octets());
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, kind]);
    for (code, v) in extra {
        p.push(*code);
        p.push(v.len() as u8);
        p.extend_from_slice(v);
    }
    p.push(255);
    p
}

/// (message type, xid, yiaddr, server id) of a reply.
pub fn parse(b: &[u8]) -> Option<(u8, u32, Ipv4Addr, Option<Ipv4Addr>)> {
    if b.len() < 240 || b[0] != 2 || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let xid = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let (mut kind, mut sid, mut i) = (0, None, 240);
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (b[i], b[i + 1] as usize);
        let v = b.get(i + 2..i + 2 + len)?;
        match code {
            53 => kind = v[0],
            54 if len == 4 => sid = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            _ => {}
        }
        i += 2 + len;
    }
    Some((kind, xid, yiaddr, sid))
}

/// Sends `msg` and waits (800 ms at most) for a reply of type `want` with `xid`.
pub fn exchange(
    sock: &UdpSocket,
    server: SocketAddrV4,
    msg: &[u8],
    want: u8,
    xid: u32,
) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
    sock.send_to(msg, server).ok()?;
    let deadline = Instant::now() + Duration::from_millis(800);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        if let Some((kind, x, ip, sid)) = parse(&buf[..n]) {
            if x == xid && kind == want {
                return Some((ip, sid));
            }
        }
    }
    None
}

/// A config file for a full-mode server on loopback port `port` handing out 127.`net`.0.0/16
/// for `lease_time` (e.g. `"1h"`); `dhcp_keys` are more keys of `[dhcp]` (TOML lines, e.g.
/// `unknown_machines = "discover"`).
pub fn config(dir: &Path, port: u16, net: u8, lease_time: &str, dhcp_keys: &str) -> PathBuf {
    let cfg = dir.join("lease-server.toml");
    std::fs::write(
        &cfg,
        format!(
            "[dhcp]\nmode = \"full\"\nlisten = \"127.0.0.1\"\nport = {port}\nserver_ip = \"127.0.0.1\"\n{dhcp_keys}\n\
             [[dhcp.subnet]]\nnetwork = \"127.0.0.0/8\"\nrange = \"127.{net}.0.1-127.{net}.255.254\"\nlease_time = \"{lease_time}\"\n"
        ),
    )
    .unwrap();
    cfg
}

/// A free UDP port on loopback.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random relay address 127.66.x.y (its own :67 socket, so parallel tests do not collide).
pub fn relay_socket() -> (Ipv4Addr, UdpSocket) {
    for _ in 0..64 {
        let r = rand_u16();
        let ip = Ipv4Addr::new(127, 66, (r >> 8) as u8, (r as u8).max(1));
        if let Ok(s) = UdpSocket::bind(SocketAddrV4::new(ip, 67)) {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            return (ip, s);
        }
    }
    panic!("no free relay address 127.66.x.y:67 (is the test running as root?)");
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("/dev/urandom");
    u16::from_be_bytes(b)
}

/// A full-mode DHCP server on loopback: it leases 127.`net`.x.y addresses to MACs for tests.
pub struct LeaseServer {
    pub server: Server,
    pub dhcp_port: u16,
}

impl LeaseServer {
    /// Starts `provisioner serve` with `--config` (DHCP full mode on a free loopback port, more
    /// `[dhcp]` keys in `dhcp_keys`) and `extra` arguments, on `data_dir`.
    pub fn start(dir: &Path, data_dir: &Path, dhcp_keys: &str, extra: &[&str]) -> LeaseServer {
        Self::start_with_lease_time(dir, data_dir, "1h", dhcp_keys, extra)
    }

    /// [`LeaseServer::start`] with leases of `lease_time`.
    pub fn start_with_lease_time(
        dir: &Path,
        data_dir: &Path,
        lease_time: &str,
        dhcp_keys: &str,
        extra: &[&str],
    ) -> LeaseServer {
        let dhcp_port = free_port();
        let cfg = config(dir, dhcp_port, 200, lease_time, dhcp_keys);
        let mut args = vec!["--config", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        LeaseServer {
            server: Server::start_in(data_dir, &args),
            dhcp_port,
        }
    }
}

/// One relayed DORA for `mac` from relay `relay` (bound at `sock`): the ACKed address, or
/// `None` when an OFFER or the ACK did not come.
pub fn dora(
    sock: &UdpSocket,
    server: SocketAddrV4,
    relay: Ipv4Addr,
    mac: [u8; 6],
    xid: u32,
) -> Option<Ipv4Addr> {
    let discover = packet(DISCOVER, xid, mac, relay, &[]);
    let (ip, sid) = exchange(sock, server, &discover, OFFER, xid)?;
    let opts = [
        (50, ip.octets().to_vec()),
        (54, sid.unwrap_or(Ipv4Addr::LOCALHOST).octets().to_vec()),
    ];
    let request = packet(REQUEST, xid, mac, relay, &opts);
    exchange(sock, server, &request, ACK, xid).map(|(got, _)| got)
}

/// DORA for `mac` against a full-mode server on `port`, relayed; the ACKed address.
pub fn lease(port: u16, mac: &str) -> Ipv4Addr {
    let m = parse_mac(mac);
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = relay_socket();
    for attempt in 0..5u32 {
        let xid = 0x5a00_0000 | attempt << 16 | rand_u16() as u32;
        if let Some(got) = dora(&sock, server, relay, m, xid) {
            return got;
        }
    }
    panic!("no lease for {mac} from the DHCP server on 127.0.0.1:{port}");
}

/// DHCPRELEASE of `ip` by `mac` (relayed, ciaddr set); waits until the server has acted on it
/// (a DISCOVER from `mac` afterwards is answered, so the RELEASE before it was handled).
pub fn release(port: u16, mac: &str, ip: Ipv4Addr) {
    let m = parse_mac(mac);
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = relay_socket();
    let mut p = packet(
        RELEASE,
        rand_u16() as u32,
        m,
        relay,
        &[(54, vec![127, 0, 0, 1])],
    );
    p[12..16].copy_from_slice(&ip.octets());
    sock.send_to(&p, server).unwrap();
    let xid = 0x7e00_0000 | rand_u16() as u32;
    exchange(
        &sock,
        server,
        &packet(DISCOVER, xid, m, relay, &[]),
        OFFER,
        xid,
    )
    .expect("the server answers after the RELEASE");
}

/// One relayed DISCOVER from `mac` with `options`; whether an OFFER came back.
pub fn discover(port: u16, mac: &str, options: &[(u8, Vec<u8>)]) -> bool {
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = relay_socket();
    let xid = 0x3d00_0000 | rand_u16() as u32;
    let p = packet(DISCOVER, xid, parse_mac(mac), relay, options);
    exchange(&sock, server, &p, OFFER, xid).is_some()
}

fn parse_mac(mac: &str) -> [u8; 6] {
    let m: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    m.try_into().expect("six octets")
}

/// `api` with every request sent from `ip` (a leased address), without the operator token.
pub fn from_address(api: &Api, ip: Ipv4Addr) -> Api {
    Api {
        base: api.base.clone(),
        token: None,
        client: crate::harness::client_builder()
            .local_address(Some(ip.into()))
            .build()
            .unwrap(),
    }
}

/// Sends `p` (xid `xid`) from a fresh relay address and returns the message type of the reply,
/// or `None` when nothing came within 800 ms. `build` gets the relay address (giaddr).
pub fn reply_kind(port: u16, xid: u32, build: impl Fn(Ipv4Addr) -> Vec<u8>) -> Option<u8> {
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let (relay, sock) = relay_socket();
    sock.send_to(&build(relay), server).ok()?;
    let deadline = Instant::now() + Duration::from_millis(800);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        if let Some((kind, x, _, _)) = parse(&buf[..n]) {
            if x == xid {
                return Some(kind);
            }
        }
    }
    None
}

/// A MAC written `aa:bb:..` as octets.
pub fn octets(mac: &str) -> [u8; 6] {
    parse_mac(mac)
}
