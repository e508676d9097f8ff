//! TFTP (RFC 1350; options RFC 2347, 2348, 2349, 7440), sans-IO.
//!
//! # Layout
//! - [`packet`]: wire format of requests, data, acknowledgements, errors and option ACKs.
//! - [`path`]: the one audited normalization of requested file names.
//! - [`transfer`]: one read transfer as a state machine over packets and time.

pub mod packet;
pub mod path;
pub mod transfer;
