//! Content-addressed boot assets: UKIs and iPXE loaders, UKI (PE) inspection, section extraction
//! for BIOS machines, and a UKI builder. Profiles reference UKIs by `sha256:` digest; the store
//! resolves them to files the HTTP and TFTP servers stream.
//!
//! # Layout
//! - [`error`]: the crate's error enum.
//! - [`pe`]: PE32+ headers and section table, read lazily with `object`.
//! - [`authenticode`]: the Authenticode SHA-256 of a PE image (what Secure Boot signs).
//! - [`uki`]: is this a UKI, and its os-release, uname, cmdline, sbat, sections, signature.
//! - [`store`]: the on-disk store (import, list, get, sections, remove, gc).
//! - [`pcr`]: the PCR 11 value systemd-stub leaves after booting a UKI, computed from the file.
//! - [`uki_builder`]: assembles a UKI from a systemd-stub and sections.
//! - [`loaders`]: finds iPXE loaders shipped by the distribution.

#![warn(missing_docs)]

pub mod authenticode;
pub mod error;
pub mod loaders;
pub mod pcr;
pub mod pe;
pub mod store;
pub mod uki;
pub mod uki_builder;

pub use error::{Error, Result};
pub use store::{parse_digest, AssetKind, AssetMeta, AssetStore, BootSection, GcReport};
pub use uki::{EfiInfo, UkiInfo};
pub use uki_builder::UkiBuilder;
