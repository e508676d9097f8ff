//! The inventory: every machine the provisioner knows, what it should boot, where it is in its
//! life and what happened to it — durable on disk before anyone is told "done".
//!
//! The core types are plain data with no I/O and no clock: callers pass `now`. Storage sits
//! behind the [`Store`] trait; [`RedbStore`] is the implementation.
//!
//! # Layout
//! - [`mac`]: MAC address parsing (`:`, `-`, `.`, bare hex) into one canonical form.
//! - [`time`]: `Timestamp`, milliseconds since the epoch, passed in by callers.
//! - [`lifecycle`]: the machine state machine (`discovered → … → ready`, `failed`, `reprovision`).
//! - [`machine`]: machine records, the operator-editable spec and its validation.
//! - [`profile`]: profiles (UKI digest, cloud-config template, cmdline, install disk).
//! - [`event`]: the append-only, globally numbered event history.
//! - [`lease`]: DHCP leases.
//! - [`log`]: per-machine log lines (syslog, installer), bounded per machine.
//! - [`token`]: API tokens, stored as SHA-256 hashes.
//! - [`store`]: the `Store` trait and its durability contract.
//! - `redb_store`: `Store` on redb, with the schema version and migration hook (feature `redb`,
//!   on by default).
//! - [`error`]: the crate's one error enum.

#![warn(missing_docs)]

pub mod error;
pub mod event;
pub mod lease;
pub mod lifecycle;
pub mod log;
pub mod mac;
pub mod machine;
pub mod profile;
// The store trait and its redb backend are being reworked (issue 11 item 3: atomic claims,
// event watch, indexes); their docstrings come with that work.
#[cfg(feature = "redb")]
#[allow(missing_docs)]
pub mod redb_store;
#[allow(missing_docs)]
pub mod store;
pub mod time;
pub mod token;

pub use error::{excerpt, Error, Result};
pub use event::{Event, EventKind, EventQuery, NewEvent};
pub use lease::Lease;
pub use lifecycle::{Deadlines, Lifecycle, State, Transition};
pub use log::{LogLine, NewLogLine};
pub use mac::Mac;
pub use machine::{BootOverrides, Machine, MachineSpec, NetworkLocation, Registration};
pub use profile::Profile;
#[cfg(feature = "redb")]
pub use redb_store::RedbStore;
pub use store::Store;
pub use time::Timestamp;
pub use token::{hash_token, TokenRecord, TokenRole};
