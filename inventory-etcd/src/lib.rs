//! The inventory's [`inventory::Store`] on an etcd v3 cluster, so that several provisioners
//! share one inventory (README "High availability (etcd)"). It passes the same conformance
//! suite as the redb and in-memory stores (`tests/conformance.rs`, against a real etcd).
//!
//! How the contract maps onto etcd:
//! - every record is one key under a configurable prefix ([`keys`]);
//! - every method is one optimistic etcd transaction ([`txn`]): reads are remembered with their
//!   `mod_revision`, writes are buffered, and the commit is one `Txn` that compares every read
//!   key (and every scanned range) and applies the writes only if nothing changed meanwhile;
//!   on a conflict the method is run again. So a claim, the indexes a machine write keeps and
//!   the events it appends are all-or-nothing, and two servers never bind one address twice;
//! - events are numbered by a counter key read and written in the same transaction as the
//!   change: gap-free, one global order across every server;
//! - the watch follows that counter with etcd's watch ([`feed`]), so another process's writes
//!   wake a waiting follower at once.
//!
//! The `Store` trait is synchronous; the store runs its own small tokio runtime and every call
//! waits on a channel, bounded by the configured timeout ([`EtcdSettings::timeout`]). It can
//! be called from any thread, including a tokio worker (it then blocks that worker; the
//! provisioner calls it through `spawn_blocking`), without "cannot block inside a runtime".
//!
//! # Layout
//! - [`settings`]: what to connect to (endpoints, prefix, auth, TLS, timeout).
//! - [`keys`]: the key layout under the prefix.
//! - [`endpoints`]: one client per member and failover between them (a member down, or one
//!   without a leader, is skipped).
//! - [`txn`]: the connection, the blocking bridge and the optimistic transaction.
//! - [`feed`]: the event counter's watch and the in-process wake-up.
//! - `store.rs`, `store_feeds.rs`: [`EtcdStore`], the `Store` implementation.
//! - `leases6.rs`: DHCPv6 leases and their claims (inherent methods of [`EtcdStore`]).
//! - `assets.rs`: the shared boot-asset catalogue (inherent methods of [`EtcdStore`]).
//! - `test_server` (feature `test-server`): a throwaway etcd member for tests.
//! - [`error`]: the crate's one error enum (connecting); store calls return
//!   [`inventory::Error`].

#![warn(missing_docs)]

mod assets;
pub mod endpoints;
pub mod error;
pub mod feed;
pub mod keys;
mod leases6;
pub mod settings;
mod store;
mod store_feeds;
#[cfg(feature = "test-server")]
pub mod test_server;
pub mod txn;

pub use error::Error;
pub use settings::{Credentials, EtcdSettings, TlsFiles};
pub use store::EtcdStore;
