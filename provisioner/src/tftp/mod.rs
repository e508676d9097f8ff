//! TFTP (RFC 1350, 2347, 2348, 2349, 7440), read-only, for PXE loaders and boot storms. The
//! wire format, path normalization and the transfer state machine live in the runtime-free
//! `netboot-proto` crate (re-exported here as [`packet`], [`path`], [`transfer`]).
//!
//! - [`source`]: where files come from (directories, memory, chains), behind a trait.
//! - [`clients`]: the per-client limit and duplicate (resent) read requests.
//! - [`server`]: the tokio shell: listener, per-transfer sockets, limits, reports.
//! - [`observer`]: turns finished transfers into inventory events.
//! - [`boot_sources`]: the installed-machine gate and loaders imported into the asset store.
//! - [`grub_files`]: GRUB netboot: `grubnetx64.efi`, its modules and our `grub/grub.cfg`.

pub mod boot_sources;
pub mod clients;
pub mod grub_files;
pub mod observer;
pub mod server;
pub mod settings;
pub mod source;

pub use netboot_proto::tftp::{packet, path, transfer};
