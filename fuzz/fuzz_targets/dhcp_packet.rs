//! A DHCP datagram from anyone on the link → dhcproto decode → the DHCP core's decision, as the
//! server's receive loop does it (`provisioner/src/dhcp/server.rs`), then the reply's encoding.
//! The first byte picks the setting (mode, unknown-machine policy, a known machine and its
//! state, the arrival port); the rest is the datagram. Each datagram is handled twice, so the
//! second pass meets the state (offers, bindings, rate limits) the first one left.
#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder};
use inventory::{Lifecycle, Mac, Machine, State, Timestamp};
use libfuzzer_sys::fuzz_target;
use netboot_proto::admission::{Gate, Limits};
use netboot_proto::boot_decision::UnknownPolicy;
use netboot_proto::dhcp::core::{link_of, Admitting, Core, Input, Mode, Settings, SubnetOptions};
use netboot_proto::dhcp::pool::{Pool, PoolTimes};
use netboot_proto::dhcp::reply::{encode_with, raw_option, Arrived, BootUrls, Loaders};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn core(mode: Mode, unknown: UnknownPolicy) -> Core {
    let subnet = |third: u8| {
        let net = Ipv4Addr::new(198, 18, third, 0);
        (
            SubnetOptions {
                network: net,
                prefix: 24,
                router: Some(Ipv4Addr::new(198, 18, third, 1)),
                dns: vec![SERVER],
                domain: Some("lab".into()),
                lease_time: Duration::from_secs(3600),
            },
            Pool::new(
                net,
                24,
                Ipv4Addr::new(198, 18, third, 100),
                Ipv4Addr::new(198, 18, third, 103),
                PoolTimes::default(),
            ),
        )
    };
    Core {
        settings: Settings {
            server_ip: SERVER,
            mode,
            unknown,
            match_client_id: true,
            loaders: Loaders::default(),
            urls: BootUrls {
                ipxe_script: "http://198.18.0.1:8080/boot/ipxe".into(),
                http_boot: "http://198.18.0.1:8080/boot/efi".into(),
            },
        },
        subnets: vec![subnet(0), subnet(5)],
        observations: Default::default(),
        pool_warned: None,
    }
}

const STATES: [State; 8] = [
    State::Discovered,
    State::Registered,
    State::Booting,
    State::Installing,
    State::Installed,
    State::Ready,
    State::Reprovision,
    State::Failed,
];

fuzz_target!(|data: &[u8]| {
    let Some((&setting, datagram)) = data.split_first() else {
        return;
    };
    let Ok(msg) = Message::decode(&mut Decoder::new(datagram)) else {
        return;
    };
    let mode = if setting & 1 == 0 {
        Mode::Full
    } else {
        Mode::Proxy
    };
    let unknown = [
        UnknownPolicy::Ignore,
        UnknownPolicy::Discover,
        UnknownPolicy::Auto,
        UnknownPolicy::Discover,
    ][usize::from(setting >> 1 & 3)];
    let machine = (setting & 8 != 0 && msg.hlen() == 6).then(|| {
        let c = msg.chaddr();
        let mut m = Machine::registered(
            Mac::new([c[0], c[1], c[2], c[3], c[4], c[5]]),
            Default::default(),
            Timestamp(0),
        );
        m.lifecycle = Lifecycle::new(STATES[usize::from(setting >> 4 & 7)], Timestamp(0));
        m
    });
    let mut c = core(mode, unknown);
    let mut gate = Gate::new(Limits::default());
    let reservations: HashMap<Ipv4Addr, Mac> = [(
        Ipv4Addr::new(198, 18, 0, 101),
        Mac::new([0x52, 0x54, 0, 0, 0, 1]),
    )]
    .into();
    let relay_info = raw_option(datagram, 82);
    for pass in 0..2u64 {
        let arrived = Arrived {
            src: SocketAddrV4::new(msg.ciaddr(), 68),
            local_port: if setting & 0x80 != 0 { 4011 } else { 67 },
            giaddr: msg.giaddr(),
            ciaddr: msg.ciaddr(),
            broadcast_flag: msg.flags().broadcast(),
            to_broadcast: pass == 0,
        };
        let uuid_holder = |_: &str| None;
        let d = c.handle(Input {
            msg: &msg,
            arrived,
            link: link_of(&msg, Some(SERVER), SERVER),
            machine: machine.as_ref(),
            reservations: &reservations,
            relay_info,
            now: Timestamp(1_000_000 + pass * 1_000),
            admitting: Some(Admitting {
                gate: &mut gate,
                uuid_holder: &uuid_holder,
            }),
        });
        // Every reply the core decides on can be put on the wire (the server drops, silently,
        // one that cannot).
        if let Some((reply, _)) = &d.reply {
            encode_with(reply, d.relay_echo.as_deref()).expect("a decided reply encodes");
        }
        if let Some((nak, _)) = &d.nak_if_lost {
            encode_with(nak, d.relay_echo.as_deref()).expect("a decided NAK encodes");
        }
    }
});
