//! Property tests of the cores through their public API: any sequence of packets and timeouts
//! never panics, and the DHCP core never binds one address to two clients at once.

#![allow(clippy::disallowed_methods)] // one Instant::now() as the origin of simulated time

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use inventory::{Mac, Timestamp};
use netboot_proto::boot_decision::UnknownPolicy;
use netboot_proto::dhcp::core::{Core, Input, Mode, Settings, SubnetOptions};
use netboot_proto::dhcp::pool::{Pool, PoolTimes};
use netboot_proto::dhcp::reply::{Arrived, BootUrls, Loaders};
use netboot_proto::tftp::transfer::{self, negotiate, Limits, Next, Transfer};
use proptest::prelude::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn core() -> Core {
    let host = |n: u8| Ipv4Addr::new(198, 18, 0, n);
    Core {
        settings: Settings {
            server_ip: SERVER,
            mode: Mode::Full,
            unknown: UnknownPolicy::Ignore,
            match_client_id: true,
            loaders: Loaders::default(),
            urls: BootUrls {
                ipxe_script: "http://198.18.0.1:8080/boot/ipxe".into(),
                http_boot: "http://198.18.0.1:8080/boot/efi".into(),
            },
        },
        subnets: vec![(
            SubnetOptions {
                network: host(0),
                prefix: 24,
                router: None,
                dns: vec![],
                domain: None,
                lease_time: Duration::from_secs(60),
            },
            Pool::new(
                host(0),
                24,
                host(10),
                host(13),
                PoolTimes {
                    lease: Duration::from_secs(60),
                    offer: Duration::from_secs(10),
                    quarantine: Duration::from_secs(30),
                },
            )
            .with_stranger_share(100),
        )],
        observations: Default::default(),
        pool_warned: None,
    }
}

/// One step of a client population: who sends what, and how much time passes first.
#[derive(Clone, Debug)]
struct Step {
    client: u8,
    client_id: Option<u8>,
    kind: u8,
    addr: u8,
    server: bool,
    ciaddr: bool,
    advance_ms: u32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..6,
        prop::option::of(0u8..3),
        0u8..6,
        8u8..16,
        any::<bool>(),
        any::<bool>(),
        0u32..40_000,
    )
        .prop_map(
            |(client, client_id, kind, addr, server, ciaddr, advance_ms)| Step {
                client,
                client_id,
                kind,
                addr,
                server,
                ciaddr,
                advance_ms,
            },
        )
}

fn packet(s: &Step) -> Message {
    let kind = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Request,
        MessageType::Decline,
        MessageType::Release,
        MessageType::Inform,
    ][s.kind as usize];
    let ip = Ipv4Addr::new(198, 18, 0, s.addr);
    let z = Ipv4Addr::UNSPECIFIED;
    let mac = [0x52, 0x54, 0, 0, 0, s.client];
    let mut m = Message::new_with_id(u32::from(s.client), z, z, z, z, &mac);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    if s.ciaddr {
        m.set_ciaddr(ip);
    } else {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
    }
    if s.server {
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    }
    if let Some(id) = s.client_id {
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(vec![0, s.client, id]));
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dhcp_never_binds_one_address_to_two_clients(steps in prop::collection::vec(step(), 1..120)) {
        let mut c = core();
        let reservations: HashMap<Ipv4Addr, Mac> = HashMap::new();
        let mut now = Timestamp(1_000_000);
        // address → (client, expiry) of every binding the core committed and did not remove.
        let mut bound: HashMap<Ipv4Addr, ((u8, Option<u8>), Timestamp)> = HashMap::new();
        for s in &steps {
            now = Timestamp(now.0 + u64::from(s.advance_ms));
            let msg = packet(s);
            let arrived = Arrived {
                src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                local_port: 67,
                giaddr: Ipv4Addr::UNSPECIFIED,
                ciaddr: msg.ciaddr(),
                broadcast_flag: true,
                to_broadcast: s.kind % 2 == 0,
            };
            let d = c.handle(Input {
                msg: &msg,
                arrived,
                link: SERVER,
                machine: None,
                reservations: &reservations,
                relay_info: None,
                now,
                admitting: None,
            });
            if let Some(ip) = d.remove {
                bound.remove(&ip);
            }
            if let Some(lease) = d.commit {
                let who = (s.client, s.client_id);
                if let Some((holder, until)) = bound.get(&lease.ip) {
                    prop_assert!(
                        *holder == who || *until <= now,
                        "{} bound to {:?} while {:?} holds it until {:?} (now {:?})",
                        lease.ip, who, holder, until, now
                    );
                }
                bound.insert(lease.ip, (who, lease.expires));
            }
            // Replies are always encodable.
            if let Some((reply, _)) = &d.reply {
                prop_assert!(netboot_proto::dhcp::reply::encode(reply).is_ok());
                prop_assert!(reply.opts().get(OptionCode::MessageType).is_some());
            }
        }
    }

    #[test]
    fn dhcp_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        use dhcproto::{Decodable, Decoder};
        let mut c = core();
        let reservations: HashMap<Ipv4Addr, Mac> = HashMap::new();
        // Whatever decodes is handled; the core never panics.
        if let Ok(msg) = Message::decode(&mut Decoder::new(&bytes)) {
            let _ = c.handle(Input {
                msg: &msg,
                arrived: Arrived {
                    src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                    local_port: 67,
                    giaddr: msg.giaddr(),
                    ciaddr: msg.ciaddr(),
                    broadcast_flag: false,
                    to_broadcast: true,
                },
                link: SERVER,
                machine: None,
                reservations: &reservations,
                relay_info: netboot_proto::dhcp::reply::raw_option(&bytes, 82),
                now: Timestamp(5),
                admitting: None,
            });
        }
    }

    #[test]
    fn tftp_transfers_never_panic_and_always_end(
        size in 0u64..20_000,
        options in prop::collection::vec((0usize..4, 0u32..70_000), 0..4),
        events in prop::collection::vec((any::<bool>(), any::<u16>(), 0u16..6, 0u64..3_000), 0..200),
    ) {
        let names = ["blksize", "windowsize", "tsize", "timeout"];
        let opts: Vec<(String, String)> = options
            .iter()
            .map(|(k, v)| (names[*k].to_string(), v.to_string()))
            .collect();
        let limits = Limits::default();
        let n = negotiate(&opts, size, &limits);
        let origin = std::time::Instant::now();
        let (mut t, mut step) = Transfer::start(n, size, &limits, origin);
        let mut now = origin;
        let mut ended = false;
        for (timeout, block, opcode, advance) in events {
            if let Next::Done(_) = step.next {
                ended = true;
                break;
            }
            now += Duration::from_millis(advance);
            step = if timeout {
                t.handle(transfer::Input::Timeout, now)
            } else {
                let mut d = opcode.to_be_bytes().to_vec();
                d.extend_from_slice(&block.to_be_bytes());
                t.handle(transfer::Input::Datagram(&d), now)
            };
        }
        // With nothing but timeouts from here, every transfer ends (bounded retries).
        for _ in 0..10_000 {
            if ended {
                break;
            }
            match step.next {
                Next::Done(_) => ended = true,
                Next::WaitUntil(at) => {
                    now = now.max(at);
                    step = t.handle(transfer::Input::Timeout, now);
                }
            }
        }
        prop_assert!(ended, "a transfer that never ends");
    }
}
