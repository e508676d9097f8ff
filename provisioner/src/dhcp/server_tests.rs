//! Two DHCP shells sharing one store (issue 11): each has its own pool in memory, so both offer
//! the same addresses; the store's atomic claim decides, and no address is ever ACKed to two
//! MACs. The test is the relay (giaddr set), on loopback.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use inventory::{Mac, MemoryStore, Store};
use tokio::net::UdpSocket;

use super::*;
use crate::app::{App, BootContext};
use crate::boot_decision::UnknownPolicy;
use crate::dhcp::core::{Mode, Settings, SubnetOptions};
use crate::dhcp::pool::{Pool, PoolTimes};
use crate::dhcp::reply::{BootUrls, Loaders};

fn app(store: Arc<dyn Store>, assets: &std::path::Path) -> App {
    App::new(
        store,
        Default::default(),
        BootContext {
            assets: boot_assets::AssetStore::open(assets).unwrap(),
            peer_assets: None,
            keys: crate::machine_keys::MachineKeys::new([1; 32]),
            public_url: None,
            machine_url: None,
            unknown: UnknownPolicy::Ignore,
            admission: crate::admission::Admission::new(Default::default()),
            transfer_events: std::sync::Mutex::new(crate::dhcp::seen_limit::SeenLimiter::new(
                60_000, 1000, None,
            )),
            progress_events: Default::default(),
            poll: Duration::from_secs(10),
            syslog_port: None,
            signatures: Default::default(),
            secure_cookies: false,
        },
    )
    .unwrap()
}

fn core(server_ip: Ipv4Addr) -> Arc<Mutex<Core>> {
    let first = Ipv4Addr::new(127, 77, 0, 1);
    let last = Ipv4Addr::new(127, 77, 7, 208); // 2,000 addresses
    Arc::new(Mutex::new(Core {
        settings: Settings {
            server_ip,
            mode: Mode::Full,
            unknown: UnknownPolicy::Ignore,
            match_client_id: true,
            loaders: Loaders::default(),
            urls: BootUrls {
                ipxe_script: "http://127.0.0.1:1/boot/ipxe".into(),
                http_boot: "http://127.0.0.1:1/boot/efi".into(),
            },
        },
        subnets: vec![(
            SubnetOptions {
                network: Ipv4Addr::new(127, 0, 0, 0),
                prefix: 8,
                router: None,
                dns: vec![],
                domain: None,
                lease_time: Duration::from_secs(3600),
            },
            Pool::new(
                Ipv4Addr::new(127, 0, 0, 0),
                8,
                first,
                last,
                PoolTimes::default(),
            ),
        )],
        observations: Default::default(),
        pool_warned: None,
    }))
}

fn packet(
    kind: MessageType,
    xid: u32,
    mac: [u8; 6],
    relay: Ipv4Addr,
    opts: Vec<DhcpOption>,
) -> Vec<u8> {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, z, z, z, relay, &mac);
    m.set_hops(1);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

fn kind(m: &Message) -> Option<MessageType> {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(k)) => Some(*k),
        _ => None,
    }
}

fn sid(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shells_sharing_one_store_never_ack_one_address_to_two_macs() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let app = app(store.clone(), &dir.path().join("assets"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ids = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
    let mut servers = Vec::new();
    for id in ids {
        let sock = crate::sockets::bind_dhcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)
            .await
            .unwrap();
        let SocketAddr::V4(addr) = sock.local_addr().unwrap() else {
            unreachable!()
        };
        servers.push((id, addr));
        tokio::spawn(run(
            sock,
            core(id),
            app.clone(),
            Arc::new(DhcpMetrics::default()),
            shutdown.clone(),
        ));
    }
    // The relay: every client message goes to both servers, as a relay with two helpers does.
    let relay_ip = Ipv4Addr::new(127, 98, 0, 1);
    let relay = UdpSocket::bind(SocketAddrV4::new(relay_ip, 67))
        .await
        .expect("bind :67 (root)");
    // The shells' pools diverge, as two real servers' do: seven clients only B ever heard.
    for i in 0..7u8 {
        let p = packet(
            MessageType::Discover,
            0xdead_0000 | u32::from(i),
            [2, 0, 0, 0, 0, i],
            relay_ip,
            vec![],
        );
        relay.send_to(&p, servers[1].1).await.unwrap();
    }
    let mut acked: HashMap<Ipv4Addr, Mac> = HashMap::new();
    let (mut naks, mut done) = (0usize, 0usize);
    let mut buf = vec![0u8; 2048];
    // 1,000 clients in waves of 50; each retries after a NAK (bounded: 4 rounds, 60 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<[u8; 6]> = (0..1000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            [0x52, 0x54, 0x0b, b[1], b[2], b[3]]
        })
        .collect();
    for _round in 0..4 {
        let mut retry = Vec::new();
        for wave in pending.chunks(50) {
            assert!(tokio::time::Instant::now() < deadline, "out of time");
            // DISCOVER to both; client n takes server n % 2's offer (either, if only one came).
            for (n, mac) in wave.iter().enumerate() {
                let p = packet(MessageType::Discover, n as u32, *mac, relay_ip, vec![]);
                for (_, to) in &servers {
                    relay.send_to(&p, to).await.unwrap();
                }
            }
            let mut offers: HashMap<u32, (Ipv4Addr, Ipv4Addr)> = HashMap::new();
            let until = tokio::time::Instant::now() + Duration::from_millis(600);
            while let Ok(Ok((n, _))) =
                tokio::time::timeout_at(until, relay.recv_from(&mut buf)).await
            {
                let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                    continue;
                };
                if kind(&m) == Some(MessageType::Offer) {
                    offers
                        .entry(m.xid())
                        .or_insert((m.yiaddr(), sid(&m).unwrap()));
                }
            }
            // REQUEST (SELECTING) to both: the chosen server binds, the other withdraws.
            for (n, mac) in wave.iter().enumerate() {
                let Some((ip, server)) = offers.get(&(n as u32)) else {
                    retry.push(*mac);
                    continue;
                };
                let opts = vec![
                    DhcpOption::RequestedIpAddress(*ip),
                    DhcpOption::ServerIdentifier(*server),
                ];
                let p = packet(
                    MessageType::Request,
                    0x1000 + n as u32,
                    *mac,
                    relay_ip,
                    opts,
                );
                for (_, to) in &servers {
                    relay.send_to(&p, to).await.unwrap();
                }
            }
            let until = tokio::time::Instant::now() + Duration::from_millis(800);
            let mut answered = 0;
            while answered < wave.len() {
                let Ok(Ok((n, _))) =
                    tokio::time::timeout_at(until, relay.recv_from(&mut buf)).await
                else {
                    break;
                };
                let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                    continue;
                };
                let c = m.chaddr();
                let mac = Mac::new([c[0], c[1], c[2], c[3], c[4], c[5]]);
                match kind(&m) {
                    Some(MessageType::Ack) => {
                        answered += 1;
                        done += 1;
                        if let Some(prev) = acked.insert(m.yiaddr(), mac) {
                            assert_eq!(prev, mac, "{} ACKed to {prev} and to {mac}", m.yiaddr());
                        }
                    }
                    Some(MessageType::Nak) => {
                        answered += 1;
                        naks += 1;
                        retry.push(mac.octets());
                    }
                    _ => {}
                }
            }
        }
        pending = retry;
        if pending.is_empty() {
            break;
        }
    }
    shutdown.cancel();
    // Every ACK was unique; the store agrees, one lease per address, each the ACKed MAC's.
    let leases = store.leases().unwrap();
    for l in &leases {
        if let Some(m) = acked.get(&l.ip) {
            assert_eq!(*m, l.mac, "store and ACK disagree on {}", l.ip);
        }
    }
    assert!(
        done >= 950,
        "only {done} of 1,000 clients bound ({naks} NAKs)"
    );
    // Both pools start at the same address, so the shells collide and the store decides.
    assert!(
        naks > 0,
        "no claim was ever refused: the test did not exercise the race"
    );
    eprintln!(
        "1,000 clients, two shells: {done} bound, {naks} NAKs from refused claims, {} leases",
        leases.len()
    );
}
