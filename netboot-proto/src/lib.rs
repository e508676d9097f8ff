//! Netboot protocol cores with no runtime: no tokio, no clock, no sockets, no store. Each core
//! takes what happened and the time as values and answers what to do (`handle(event, now) ->
//! actions`); the `provisioner` crate's tokio shells move the bytes, keep the clock and write
//! the store.
//!
//! # Layout
//! - [`admission`]: the rule (cap and rate) for recording machines the inventory does not know.
//! - [`boot_decision`]: the one per-machine decision every boot path asks (install, disk, hold).
//! - [`dhcp`]: DHCP (RFC 2131): client classification (PXE, iPXE, UEFI HTTP boot), the core
//!   (full and proxy mode), address pools, reply building, observation rate limits, proxy-mode
//!   observed bindings.
//! - [`dhcp6`]: DHCPv6 (RFC 8415): stateful, stateless and relayed; boot URLs over IPv6.
//! - [`tftp`]: TFTP (RFC 1350 and its option RFCs): packets, path normalization, transfers.
//! - [`rate`]: a token bucket over timestamps.

#![warn(missing_docs)]

pub mod admission;
pub mod boot_decision;
pub mod dhcp;
pub mod dhcp6;
pub mod rate;
pub mod tftp;
