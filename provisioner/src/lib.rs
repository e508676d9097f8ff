//! The provisioner daemon and its CLI: DHCP (full and proxy), TFTP, HTTP boot (iPXE scripts,
//! UEFI HTTP boot, assets, per-machine configs, the machines' API), remote syslog and the
//! operator API over the inventory.
//!
//! # Layout
//! - [`admission`]: the one rule (count cap and rate) for recording unknown machines.
//! - [`config`]: TOML wire structs and their validation into [`config::Config`].
//! - [`config_error`]: the configuration's error type (a leaf both `config` and `dhcp::config`
//!   use).
//! - [`app`]: shared server state (store, live event feed, metrics) and the clock read.
//! - [`boot`]: HTTP boot: iPXE scripts, UEFI HTTP boot, assets, configs, the machines' API.
//! - [`boot_tls`]: the OpenSSL listener for UEFI HTTPS boot (`[boot_tls]`), suites OVMF speaks.
//! - [`boot_decision`]: the one per-machine decision every boot path asks (re-exported from the
//!   runtime-free `netboot-proto` crate, with the DHCP and TFTP cores).
//! - [`dhcp`]: DHCP: classification, the sans-IO core, pools, replies, the tokio server.
//! - [`dhcp6`]: DHCPv6: the `[dhcp6]` config and the tokio shell around `netboot_proto::dhcp6`.
//! - [`api`]: the operator API under `/api/v1` (machines, profiles, events + SSE, assets, logs).
//! - [`ui`]: the operator dashboard at `/ui`: login, sessions with CSRF checks, built-in pages.
//! - [`http`]: what the API and boot endpoints share: JSON errors, extractors, the peer address.
//! - [`router`]: the one axum router: `/api/v1`, boot endpoints, `/ui`, `/healthz`, `/metrics`.
//! - [`import`]: CSV bulk-import parsing with per-line errors.
//! - [`metrics`]: what `/metrics` shows, in prometheus-client counters, gauges and a histogram.
//! - [`identity`]: who a request comes from, by the server's own evidence (leases, observed
//!   bindings); what address evidence may open.
//! - [`machine_keys`]: per-machine tokens derived with HMAC from one server key.
//! - [`syslog`]: the remote syslog receiver (RFC 3164 and 5424), lines kept per machine.
//! - [`signatures`]: UKI signature verdicts against the configured `db` certificates, cached.
//! - [`operator_token`]: first-start creation of the operator token.
//! - [`serve`]: runs the server on bound listeners until shutdown; the deadline sweeper.
//! - [`http_server`]: the HTTP listener's limits: header and body-stall timeouts, connection cap.
//! - [`http_io`]: below HTTP: a send-stall timeout per connection, connections per client.
//! - [`sockets`]: socket quirks in one place (IP_PKTINFO, per-transfer sockets).
//! - [`tftp`]: the TFTP server (sans-IO transfers, tokio shell, file sources).
//! - [`event_writer`]: observation events (seen, transfers, notes) written in batches.
//! - [`views`]: in-memory views of machines, reservations and UUIDs for the DHCP path, kept
//!   current by the store's event feed.
//! - [`store_health`]: the store's health gauges in `/metrics` (`provisioner_store_up`).
//! - [`asset_peers`]: assets across servers sharing one store: the shared catalogue, fetching a
//!   missing file from a peer by digest (verified), prefetching.
//! - [`store_config`]: the `[store]` section: redb (default) or etcd, validated.
//! - [`startup`]: `provisioner serve` from arguments to a running server.
//! - [`tls_config`]: the `[tls]` section: the HTTPS listener, its certificate, the policy.
//! - [`tls_material`]: the served certificate and key: the operator's, or a self-issued CA and
//!   server certificate (RSA-2048) kept in the data directory; shared with the boot listener.
//! - [`tls_policy`]: `tls.require_for_secrets`: the API and configs refused over plain HTTP.
//! - [`cli`]: clap definitions, the API client and the client subcommands.

pub mod admission;
pub mod api;
pub use netboot_proto::boot_decision;
pub mod app;
pub mod asset_peers;
pub mod boot;
pub mod boot_tls;
pub mod cli;
pub mod config;
pub mod config_error;
pub mod dhcp;
pub mod dhcp6;
pub mod event_writer;
pub mod http;
pub mod http_io;
pub mod http_server;
pub mod identity;
pub mod import;
pub mod machine_keys;
pub mod metrics;
pub mod operator_token;
pub mod router;
pub mod serve;
pub mod signatures;
pub mod sockets;
pub mod startup;
pub mod store_config;
pub mod store_health;
pub mod syslog;
pub mod tftp;
pub mod tls_config;
pub mod tls_material;
pub mod tls_policy;
pub mod ui;
pub mod views;
