//! IA_NA answers (RFC 8415 §18.3): which address each identity association of a Solicit,
//! Request, Renew or Rebind gets, with the status codes the RFC asks for when it gets none:
//!
//! - Request naming an address outside the range: the IA with NotOnLink (§18.3.2; the client
//!   asks again without addresses, §18.2.10.1);
//! - Renew of an IA without a binding here: the IA with NoBinding (§18.3.4), nothing bound;
//! - Rebind of an IA without a binding: each address it names gets lifetimes 0 unless it is in
//!   the range and free for this client, which then gets it back (§18.3.5: the binding may live
//!   on a server sharing the store, or before a restart); nothing to say at all: no reply;
//! - Renew and Rebind: addresses the IA names beside its binding get lifetimes 0.

use std::net::Ipv6Addr;

use dhcproto::v6::{DhcpOption, IAAddr, Message, MessageType, OptionCode, Status, IANA};
use dhcproto::{Decodable, Decoder};
use inventory::{Lease6, Mac, Timestamp};

use super::core::{secs, status, Core6, Decision6};

/// Which client message the IAs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ask {
    /// Solicit; `bind` with Rapid Commit (the answer is a Reply).
    Solicit { bind: bool },
    /// Request (§18.3.2).
    Request,
    /// Renew (§18.3.4).
    Renew,
    /// Rebind (§18.3.5).
    Rebind,
}

impl Ask {
    fn binds(self) -> bool {
        !matches!(self, Ask::Solicit { bind: false })
    }
}

/// The client's DUID (lowercase hex) and the IAIDs of its IA_NAs, for a Solicit, Request,
/// Renew or Rebind datagram (relayed or not); `None` for anything else. A server sharing its
/// store asks the store for these bindings before it answers (another server may hold them).
pub fn client_ias(datagram: &[u8]) -> Option<(String, Vec<u32>)> {
    let un = super::wire::unwrap(datagram).ok()?;
    let msg = Message::decode(&mut Decoder::new(un.inner)).ok()?;
    if !matches!(
        msg.msg_type(),
        MessageType::Solicit | MessageType::Request | MessageType::Renew | MessageType::Rebind
    ) {
        return None;
    }
    let Some(DhcpOption::ClientId(duid)) = msg.opts().get(OptionCode::ClientId) else {
        return None;
    };
    let iaids = msg
        .opts()
        .get_all(OptionCode::IANA)
        .unwrap_or(&[])
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia.id),
            _ => None,
        })
        .take(8)
        .collect();
    Some((super::wire::hex(duid), iaids))
}

/// The addresses one IA_NA names.
fn listed(ia: &IANA) -> Vec<Ipv6Addr> {
    ia.opts
        .get_all(OptionCode::IAAddr)
        .unwrap_or(&[])
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some(a.addr),
            _ => None,
        })
        .collect()
}

/// At most this many IA_NA options of one message get addresses; the rest get NoAddrsAvail.
pub const MAX_IAS: usize = 4;

fn addr(ip: Ipv6Addr, preferred: u32, valid: u32) -> DhcpOption {
    DhcpOption::IAAddr(IAAddr {
        addr: ip,
        preferred_life: preferred,
        valid_life: valid,
        opts: Default::default(),
    })
}

impl Core6 {
    /// The IA_NA options answering every IA_NA of `msg`; bindings made are recorded in the pool
    /// and pushed to `d.commit`. `None`: nothing to answer (a Rebind without bindings or
    /// addresses), so no reply.
    pub(super) fn ia_answers(
        &mut self,
        msg: &Message,
        duid: &str,
        mac: Option<Mac>,
        ask: Ask,
        now: Timestamp,
        d: &mut Decision6,
    ) -> Option<Vec<DhcpOption>> {
        let s = &self.settings;
        let Some(pool) = self.pool.as_mut() else {
            return Some(vec![status(
                Status::NoAddrsAvail,
                "stateless server: addresses by SLAAC",
            )]);
        };
        let reserved = mac.and_then(|m| s.reservations.get(&m).copied());
        let (pref, valid) = (secs(s.preferred), secs(s.valid));
        let expires = Timestamp(now.0 + s.valid.as_millis() as u64);
        let lease = |ip, iaid| Lease6 {
            ip,
            duid: duid.to_string(),
            iaid,
            mac,
            expires,
            declined: false,
        };
        let mut out = Vec::new();
        let ias = msg.opts().get_all(OptionCode::IANA).unwrap_or(&[]);
        for (n, ia) in ias.iter().enumerate() {
            let DhcpOption::IANA(ia) = ia else { continue };
            if n >= MAX_IAS {
                // Bounded work and range share per message: a stranger's Request with thousands
                // of IA_NAs must not bind the whole range (firmware and OSes send one).
                let mut refused = IANA {
                    id: ia.id,
                    t1: 0,
                    t2: 0,
                    opts: Default::default(),
                };
                refused.opts.insert(status(
                    Status::NoAddrsAvail,
                    "at most 4 IA_NA per message are answered",
                ));
                out.push(DhcpOption::IANA(refused));
                continue;
            }
            let named = listed(ia);
            let mut answer = IANA {
                id: ia.id,
                t1: pref / 2,
                t2: (pref as u64 * 4 / 5) as u32,
                opts: Default::default(),
            };
            let bound = pool.bound_to(duid, ia.id, now);
            let refuse = |mut a: IANA, code, text: &str| {
                a.t1 = 0;
                a.t2 = 0;
                a.opts.insert(status(code, text));
                DhcpOption::IANA(a)
            };
            match ask {
                Ask::Request if named.iter().any(|a| !pool.contains(*a)) => {
                    out.push(refuse(
                        answer,
                        Status::NotOnLink,
                        "address not on this link",
                    ));
                    continue;
                }
                Ask::Renew if bound.is_none() => {
                    out.push(refuse(answer, Status::NoBinding, "no binding for this IA"));
                    continue;
                }
                Ask::Rebind if bound.is_none() => {
                    for a in named {
                        let ok = pool.contains(a)
                            && pool.pick(duid, ia.id, mac, reserved, Some(a), now) == Some(a);
                        if ok {
                            let l = lease(a, ia.id);
                            pool.bind(l.clone());
                            d.commit.push(l);
                            answer.opts.insert(addr(a, pref, valid));
                        } else {
                            answer.opts.insert(addr(a, 0, 0));
                        }
                    }
                    if answer.opts.get(OptionCode::IAAddr).is_some() {
                        out.push(DhcpOption::IANA(answer));
                    }
                    continue;
                }
                _ => {}
            }
            let got = pool.pick(duid, ia.id, mac, reserved, named.first().copied(), now);
            match got {
                Some(ip) => {
                    answer.opts.insert(addr(ip, pref, valid));
                    if ask.binds() {
                        let l = lease(ip, ia.id);
                        pool.bind(l.clone());
                        d.commit.push(l);
                    }
                }
                None => {
                    answer.t1 = 0;
                    answer.t2 = 0;
                    let why = match reserved {
                        Some(_) => "the address reserved for this MAC is in use or declined",
                        None => "range full",
                    };
                    answer.opts.insert(status(Status::NoAddrsAvail, why));
                }
            }
            if matches!(ask, Ask::Renew | Ask::Rebind) {
                for a in named.into_iter().filter(|a| Some(*a) != got) {
                    answer.opts.insert(addr(a, 0, 0));
                }
            }
            out.push(DhcpOption::IANA(answer));
        }
        if ask == Ask::Rebind && out.is_empty() {
            return None;
        }
        Some(out)
    }
}
