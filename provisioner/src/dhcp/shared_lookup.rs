//! DHCP with a shared store (several servers on etcd): before a DISCOVER is answered, the
//! store is asked whether another server binds its client already, so the client is offered
//! its address back (see the README, "Several DHCP servers on one segment").

use std::sync::{Arc, Mutex};

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use inventory::Mac;

use super::core::Core;
use crate::app::App;

/// Most DISCOVERs waiting on the shared store at once.
pub const LOOKUPS_IN_FLIGHT: usize = 256;

pub fn is_discover(msg: &Message) -> bool {
    matches!(
        msg.opts().get(OptionCode::MessageType),
        Some(DhcpOption::MessageType(dhcproto::v4::MessageType::Discover))
    )
}

/// How long a DISCOVER waits for the shared store's answer about its client's binding before
/// the offer is made from memory alone.
const SHARED_LOOKUP: std::time::Duration = std::time::Duration::from_millis(250);

/// With a shared store (several servers on etcd): before answering a DISCOVER, asks the store
/// whether another server has bound this client ([`inventory::Store::lease_by_mac`]) and
/// teaches the pool that binding, so the client is offered its address back (as it would be
/// by the server that bound it) instead of a new one, which would leave two leases for one
/// client. Skipped while the store is down; at most [`SHARED_LOOKUP`] (then the offer comes
/// from memory, as without a shared store). One store read per DISCOVER, on etcd an index key
/// and the lease it names.
pub async fn learn_shared_binding(
    app: &App,
    core: &Arc<Mutex<Core>>,
    msg: &Message,
    t: inventory::Timestamp,
) {
    let discover = matches!(
        msg.opts().get(OptionCode::MessageType),
        Some(DhcpOption::MessageType(dhcproto::v4::MessageType::Discover))
    );
    if !discover || msg.hlen() != 6 || !app.store.is_shared() || !app.metrics.store.is_up() {
        return;
    }
    let c = msg.chaddr();
    let mac = Mac::new([c[0], c[1], c[2], c[3], c[4], c[5]]);
    let lookup = app.read(move |s| s.lease_by_mac(mac, t));
    if let Ok(Ok(Some(lease))) = tokio::time::timeout(SHARED_LOOKUP, lookup).await {
        core.lock()
            .unwrap_or_else(|p| p.into_inner())
            .foreign_binding(&lease);
    }
}
