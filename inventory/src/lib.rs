//! The inventory: every machine the provisioner knows, what it should boot, where it is in its
//! life and what happened to it — durable on disk before anyone is told "done".
//!
//! The core types are plain data with no I/O and no clock: callers pass `now`. Storage sits
//! behind the [`Store`] trait, a contract several servers can share (atomic lease claims,
//! store-numbered events with a watch, indexes kept in the writing transaction); [`RedbStore`]
//! keeps it on disk, [`MemoryStore`] in memory for tests, and both pass `conformance`.
//!
//! # Layout
//! - [`mac`]: MAC address parsing (`:`, `-`, `.`, bare hex) into one canonical form.
//! - [`time`]: `Timestamp`, milliseconds since the epoch, passed in by callers.
//! - [`lifecycle`]: the machine state machine (`discovered → … → ready`, `failed`, `reprovision`).
//! - [`machine`]: machine records, the operator-editable spec and its validation.
//! - [`profile`]: profiles (UKI digest, cloud-config template, cmdline, install disk).
//! - [`attestation`]: what a machine reported about its boot (Secure Boot, TPM PCRs) and the
//!   PCR 11 verdict against its profile.
//! - [`event`]: the append-only, globally numbered event history.
//! - [`lease`]: DHCP leases and the claim rule (`claim_outcome`) every store applies.
//! - [`lease6`]: DHCPv6 leases (IA_NA bindings), in their own table (`redb_leases6.rs`).
//! - [`log`]: per-machine log lines (syslog, installer), bounded per machine.
//! - [`token`]: API tokens, stored as SHA-256 hashes.
//! - [`store`]: the `Store` trait and its contract (durability, claims, events, indexes).
//! - [`watch`]: waiting for new events by sequence number (in-process signal, polling default).
//! - `redb_store`: `Store` on redb, with the schema version and migrations (`redb_indexes.rs`:
//!   the UUID and machine-id indexes; `redb_file.rs`: opening a file, verified whole, refused by
//!   name when damaged, empty, foreign or another user's; `redb_reopen.rs`: re-opening a file
//!   after an I/O error such as a full disk, which becomes `Error::DiskFull`; `redb_group.rs`:
//!   group commit); feature `redb`, on by default.
//! - [`memory_store`]: `Store` in memory (mutex over ordered maps), for unit tests.
//! - `conformance` (tests, or the `conformance` feature): the suite every backend must pass.
//! - [`error`]: the crate's one error enum.

#![warn(missing_docs)]

pub mod attestation;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod error;
pub mod event;
pub mod lease;
pub mod lease6;
pub mod lifecycle;
pub mod log;
pub mod mac;
pub mod machine;
pub mod memory_store;
pub mod profile;
#[cfg(feature = "redb")]
mod redb_group;
#[cfg(feature = "redb")]
pub mod redb_store;
pub mod store;
pub mod time;
pub mod token;
pub mod watch;

pub use attestation::{Attestation, Pcr11Verdict};
pub use error::{excerpt, Error, Result};
pub use event::{Event, EventKind, EventQuery, NewEvent};
pub use lease::{Claim, Lease};
pub use lease6::{Claim6, Lease6};
pub use lifecycle::{Deadlines, Lifecycle, State, Transition, UkiFetch};
pub use log::{LogLine, NewLogLine};
pub use mac::Mac;
pub use machine::{BootOverrides, Machine, MachineSpec, NetworkLocation, Registration};
pub use memory_store::MemoryStore;
pub use profile::Profile;
#[cfg(feature = "redb")]
pub use redb_store::{lease_path, RedbStore};
pub use store::Store;
pub use time::Timestamp;
pub use token::{hash_token, TokenRecord, TokenRole};
