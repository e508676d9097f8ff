//! The two addresses of the connection a request came on, put into every request by the
//! listener ([`crate::http_server::run`]) as `ConnectInfo<Peer>`.

use std::net::SocketAddr;

/// Both ends of a connection: the remote address attributes requests to machines, the local
/// one is the address machines reach us at (used in URLs when `http.public_url` is unset).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Our end: the address and port the client connected to.
    pub local: SocketAddr,
    /// The client's end, as the kernel saw it (IPv4 clients of a `[::]` listener appear as
    /// `::ffff:a.b.c.d`; [`crate::identity::ipv4`] unmaps them).
    pub remote: SocketAddr,
}
