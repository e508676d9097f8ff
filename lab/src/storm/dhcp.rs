//! The machines' DHCP, on shared sockets: in full mode one socket on `0.0.0.0:68` bound to the
//! client interface (every machine broadcasts and sets the BROADCAST flag, as PXE ROMs and iPXE
//! do), in relayed mode one socket per rack on `giaddr:67` (that rack's relay agent: hops 1,
//! giaddr set, replies come back to giaddr:67 per RFC 2131 §4.1). A receive task per socket
//! hands each reply to the machine its chaddr names.
//!
//! What each stage sends (RFC 2131 DORA; options as captured from OVMF's PXE and iPXE):
//! - PXE ROM: 53, 57 (1472), 93 (7: x64 UEFI, RFC 4578), 94 (UNDI 3.16), 97 (client GUID),
//!   60 `PXEClient:Arch:00007:UNDI:003016`, 55 (1 3 6 12 15 43 60 66 67 97 128–135).
//! - iPXE: the same plus 77 `iPXE` and 175 (iPXE's encapsulated options), 60 `…UNDI:003010`.
//!
//! Retransmission: 1 s, doubling to 8 s, for as long as the machine's deadline allows; a NAK
//! or four unanswered REQUESTs start again from DISCOVER.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dhcproto::v4::{
    Architecture, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Encodable};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::plan::Plan;

/// Which firmware stage is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    PxeRom,
    Ipxe,
}

/// What an ACK gave a machine.
#[derive(Clone, Debug)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// siaddr (next-server) of the ACK.
    pub next_server: Ipv4Addr,
    /// The server that ACKed (option 54 of the ACK, else of the offer it answered).
    pub server: Ipv4Addr,
    /// The boot file: a TFTP name for the PXE ROM, an `http://` URL for iPXE.
    pub file: String,
}

/// The shared DHCP sockets and the table routing replies to machines.
pub struct DhcpClients {
    plan: Plan,
    /// One socket (full mode) or one per rack (relayed).
    sockets: Vec<Arc<UdpSocket>>,
    /// Where a relay agent forwards to (`ip helper-address`; two with `--ha`).
    servers: Vec<Ipv4Addr>,
    /// Per machine: where its replies go while it waits for one.
    waiting: Arc<Vec<Mutex<Option<mpsc::UnboundedSender<Message>>>>>,
}

fn socket(bind: SocketAddrV4, device: Option<&str>) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    if let Some(d) = device {
        s.bind_device(Some(d.as_bytes()))?;
    }
    // A storm's replies arrive in bursts; the default 208 KiB would drop them here, not at the
    // server under test. SO_RCVBUFFORCE (root) passes net.core.rmem_max.
    let size: libc::c_int = 16 << 20;
    // SAFETY: setsockopt with a c_int on a socket we own.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s.set_nonblocking(true)?;
    s.bind(&bind.into())
        .with_context(|| format!("binding the DHCP client socket {bind}"))?;
    Ok(UdpSocket::from_std(s.into())?)
}

impl DhcpClients {
    /// Binds the sockets (inside the client namespace; full mode on `device`) and starts
    /// their receive tasks. A relay agent forwards each request to every one of `servers`.
    pub fn start(plan: Plan, device: &str, servers: Vec<Ipv4Addr>) -> anyhow::Result<DhcpClients> {
        let sockets: Vec<Arc<UdpSocket>> = if plan.relayed {
            (0..plan.racks())
                .map(|r| socket(SocketAddrV4::new(plan.rack(r).giaddr, 67), None).map(Arc::new))
                .collect::<anyhow::Result<_>>()?
        } else {
            vec![Arc::new(socket(
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                Some(device),
            )?)]
        };
        let waiting: Arc<Vec<Mutex<Option<mpsc::UnboundedSender<Message>>>>> =
            Arc::new((0..plan.machines).map(|_| Mutex::new(None)).collect());
        for s in &sockets {
            let (s, waiting) = (s.clone(), waiting.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, _)) = s.recv_from(&mut buf).await {
                    let Ok(msg) = Message::decode(&mut dhcproto::Decoder::new(&buf[..n])) else {
                        continue;
                    };
                    if msg.opcode() != Opcode::BootReply {
                        continue;
                    }
                    let Some(i) = Plan::index_of(msg.chaddr()) else {
                        continue;
                    };
                    if let Some(tx) = waiting.get(i).and_then(|w| w.lock().unwrap().clone()) {
                        let _ = tx.send(msg);
                    }
                }
            });
        }
        Ok(DhcpClients {
            plan,
            sockets,
            servers,
            waiting,
        })
    }

    /// One DORA for machine `i` at `stage`; retries until `until`.
    pub async fn dora(
        &self,
        i: usize,
        stage: Stage,
        until: tokio::time::Instant,
    ) -> Result<Lease, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        *self.waiting[i].lock().unwrap() = Some(tx);
        let r = self.dora_inner(i, stage, until, &mut rx).await;
        *self.waiting[i].lock().unwrap() = None;
        r
    }

    async fn dora_inner(
        &self,
        i: usize,
        stage: Stage,
        until: tokio::time::Instant,
        rx: &mut mpsc::UnboundedReceiver<Message>,
    ) -> Result<Lease, String> {
        let mut wait = Duration::from_secs(1);
        'discover: loop {
            let xid = random_u32();
            let discover = self.message(i, stage, xid, MessageType::Discover, None);
            let offer = loop {
                self.send(i, &discover).await?;
                match self.recv(rx, xid, wait, until).await? {
                    Some(m) if kind(&m) == Some(MessageType::Offer) => break m,
                    _ => wait = (wait * 2).min(Duration::from_secs(8)),
                }
            };
            let sid = match offer.opts().get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(s)) => *s,
                _ => return Err("OFFER without a server identifier".into()),
            };
            let request = self.message(
                i,
                stage,
                xid,
                MessageType::Request,
                Some((offer.yiaddr(), sid)),
            );
            let mut wait = Duration::from_secs(1);
            for _ in 0..4 {
                self.send(i, &request).await?;
                match self.recv(rx, xid, wait, until).await? {
                    Some(m) if kind(&m) == Some(MessageType::Ack) => {
                        let file = m
                            .fname()
                            .map(|f| {
                                let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
                                String::from_utf8_lossy(&f[..end]).into_owned()
                            })
                            .filter(|f| !f.is_empty())
                            .or_else(|| match m.opts().get(OptionCode::BootfileName) {
                                Some(DhcpOption::BootfileName(b)) => Some(
                                    String::from_utf8_lossy(b)
                                        .trim_end_matches('\0')
                                        .to_string(),
                                ),
                                _ => None,
                            })
                            .unwrap_or_default();
                        let server = match m.opts().get(OptionCode::ServerIdentifier) {
                            Some(DhcpOption::ServerIdentifier(s)) => *s,
                            _ => sid,
                        };
                        return Ok(Lease {
                            ip: m.yiaddr(),
                            next_server: m.siaddr(),
                            server,
                            file,
                        });
                    }
                    Some(m) if kind(&m) == Some(MessageType::Nak) => continue 'discover,
                    _ => wait = (wait * 2).min(Duration::from_secs(8)),
                }
            }
        }
    }

    async fn send(&self, i: usize, msg: &[u8]) -> Result<(), String> {
        if !self.plan.relayed {
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
            return self.sockets[0]
                .send_to(msg, to)
                .await
                .map(|_| ())
                .map_err(|e| format!("send: {e}"));
        }
        let sock = &self.sockets[self.plan.rack_of(i)];
        let mut sent = 0;
        let mut last = String::new();
        for s in &self.servers {
            // A dead server's ICMP error must not stop the relay forwarding to the others.
            match sock.send_to(msg, SocketAddrV4::new(*s, 67)).await {
                Ok(_) => sent += 1,
                Err(e) => last = format!("send to {s}: {e}"),
            }
        }
        if sent == 0 {
            return Err(last);
        }
        Ok(())
    }

    /// The next reply with `xid` within `wait` (None: time to retransmit); Err past `until`.
    async fn recv(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        xid: u32,
        wait: Duration,
        until: tokio::time::Instant,
    ) -> Result<Option<Message>, String> {
        let now = tokio::time::Instant::now();
        if now >= until {
            return Err("deadline".into());
        }
        let end = (now + wait).min(until);
        loop {
            match tokio::time::timeout_at(end, rx.recv()).await {
                Ok(Some(m)) if m.xid() == xid => return Ok(Some(m)),
                Ok(Some(_)) => continue,
                Ok(None) => return Err("DHCP receiver closed".into()),
                Err(_) => return Ok(None),
            }
        }
    }

    fn message(
        &self,
        i: usize,
        stage: Stage,
        xid: u32,
        kind: MessageType,
        selected: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(xid)
            .set_flags(Flags::default().set_broadcast())
            .set_chaddr(&Plan::mac(i));
        if self.plan.relayed {
            m.set_hops(1)
                .set_giaddr(self.plan.rack(self.plan.rack_of(i)).giaddr);
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::MaxMessageSize(1472));
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(
            7u16,
        )));
        o.insert(DhcpOption::ClientNetworkInterface(1, 3, 16));
        let mut guid = vec![0u8];
        guid.extend_from_slice(&Plan::uuid(i));
        o.insert(DhcpOption::ClientMachineIdentifier(guid));
        let mut prl: Vec<u8> = vec![1, 3, 6, 12, 15, 43, 60, 66, 67, 97];
        prl.extend(128..=135);
        match stage {
            Stage::PxeRom => {
                o.insert(DhcpOption::ClassIdentifier(
                    b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
                ));
            }
            Stage::Ipxe => {
                o.insert(DhcpOption::ClassIdentifier(
                    b"PXEClient:Arch:00007:UNDI:003010".to_vec(),
                ));
                o.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
                // iPXE's feature flags: 19 (HTTP) and 24 (EFI), 1 each; 235 (version 1.0.0).
                o.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::Unknown(175),
                    vec![19, 1, 1, 24, 1, 1, 235, 3, 1, 0, 0],
                )));
                prl.push(175);
            }
        }
        o.insert(DhcpOption::ParameterRequestList(
            prl.into_iter().map(OptionCode::from).collect(),
        ));
        if let Some((ip, sid)) = selected {
            o.insert(DhcpOption::RequestedIpAddress(ip));
            o.insert(DhcpOption::ServerIdentifier(sid));
        }
        m.to_vec().expect("a DHCP message we built encodes")
    }
}

fn kind(m: &Message) -> Option<MessageType> {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b)
}
