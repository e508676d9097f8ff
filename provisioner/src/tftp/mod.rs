//! TFTP (RFC 1350, 2347, 2348, 2349, 7440), read-only, for PXE loaders and boot storms.

pub mod packet;
pub mod transfer;
