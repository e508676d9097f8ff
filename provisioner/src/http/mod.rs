//! What the operator API ([`crate::api`]) and the machine-facing endpoints ([`crate::boot`])
//! share. Both depend on this module, never on each other's plumbing; it depends on neither
//! (the router that puts them on one listener is [`crate::router`], above all three).
//!
//! # Layout
//! - [`error`]: [`ApiError`], the JSON error answer of every endpoint.
//! - [`extract`]: extractors whose rejections are [`ApiError`]s, and the bearer token.
//! - [`peer`]: [`Peer`], both addresses of a request's connection.

pub mod error;
pub mod extract;
pub mod peer;

pub use error::{ApiError, MAX_DETAIL};
pub use extract::{ApiJson, ApiQuery};
pub use peer::Peer;
