//! [`EtcdStore`]'s DHCPv6 leases (`P/l6/…`, indexed by client under `P/l6c/…`): written and
//! claimed as the IPv4 leases are (`store_feeds.rs`), each claim decided and written in one
//! optimistic transaction, so two servers never bind one address to two clients.

use std::net::Ipv6Addr;

use etcd_client::{Txn, TxnOp};
use inventory::lease6::claim_outcome6;
use inventory::{Claim6, Lease6, Result, Timestamp};

use crate::store::{decode, encode, EtcdStore};
use crate::store_feeds::CLAIMS_PER_TXN;

impl EtcdStore {
    /// The index entry to write with a lease: quarantines index nothing.
    fn client_index(&self, l: &Lease6) -> Option<(Vec<u8>, Vec<u8>)> {
        (!l.declined).then(|| {
            (
                self.keys.lease6_of_client(&l.duid, l.iaid),
                l.ip.to_string().into_bytes(),
            )
        })
    }

    pub(crate) fn put_leases6_chunked(&self, leases: &[Lease6]) -> Result<()> {
        for chunk in leases.chunks(CLAIMS_PER_TXN) {
            let mut ops = Vec::with_capacity(2 * chunk.len());
            for l in chunk {
                ops.push(TxnOp::put(self.keys.lease6(l.ip), encode(l), None));
                if let Some((k, v)) = self.client_index(l) {
                    ops.push(TxnOp::put(k, v, None));
                }
            }
            self.conn.block(move |mut c| {
                let ops = ops.clone();
                async move {
                    c.txn(Txn::new().and_then(ops)).await?;
                    Ok(())
                }
            })?;
        }
        Ok(())
    }

    pub(crate) fn claim_leases6_chunked(
        &self,
        leases: &[Lease6],
        now: Timestamp,
    ) -> Result<Vec<Claim6>> {
        let mut out = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(CLAIMS_PER_TXN) {
            let claims = self.conn.transact(|tx| {
                tx.prefetch(chunk.iter().map(|w| self.keys.lease6(w.ip)).collect())?;
                let mut claims = Vec::with_capacity(chunk.len());
                for want in chunk {
                    let key = self.keys.lease6(want.ip);
                    let held: Option<Lease6> = match tx.get(&key)? {
                        Some(v) => Some(decode("leases6", &v)?),
                        None => None,
                    };
                    let claim = claim_outcome6(want, held.as_ref(), now);
                    if claim == Claim6::Granted {
                        tx.put(key, encode(want));
                        if let Some((k, v)) = self.client_index(want) {
                            tx.put(k, v);
                        }
                    }
                    claims.push(claim);
                }
                Ok(claims)
            })?;
            out.extend(claims);
        }
        Ok(out)
    }

    pub(crate) fn remove_lease6_key(&self, ip: Ipv6Addr) -> Result<()> {
        let key = self.keys.lease6(ip);
        self.conn.block(move |mut c| {
            let key = key.clone();
            async move {
                c.delete(key, None).await?;
                Ok(())
            }
        })
    }

    pub(crate) fn lease6_at(&self, ip: Ipv6Addr) -> Result<Option<Lease6>> {
        let (v, _) = self.conn.get(self.keys.lease6(ip))?;
        v.map(|v| decode("leases6", &v)).transpose()
    }

    pub(crate) fn lease6_of(
        &self,
        duid: &str,
        iaid: u32,
        now: Timestamp,
    ) -> Result<Option<Lease6>> {
        let (v, _) = self.conn.get(self.keys.lease6_of_client(duid, iaid))?;
        let Some(ip) = v.and_then(|v| String::from_utf8(v).ok()?.parse::<Ipv6Addr>().ok()) else {
            return Ok(None);
        };
        Ok(self
            .lease6_at(ip)?
            .filter(|l| l.duid == duid && l.iaid == iaid && !l.declined && l.is_active(now)))
    }
}
