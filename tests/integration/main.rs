#![allow(clippy::disallowed_methods)] // tests measure wall time and set deadlines
//! Integration tests: the real `provisioner` binary, started on port 0, driven over HTTP and
//! through its own CLI.

mod api;
mod api_hardening;
mod asset_peers;
mod attestation;
mod boot;
mod boot_tls;
mod cli;
mod crash;
mod dhcp;
mod dhcp6;
mod dhcp_flood;
mod dhcp_ha;
mod dhcp_latency;
mod dhcp_leases;
mod dhcp_relay;
mod disk_full;
mod etcd;
mod grub;
mod harness;
mod http_limits;
mod ipv6_transport;
mod lab;
mod loopback_dhcp;
mod machine_params;
mod netns;
mod openapi;
mod package;
mod security;
mod serve;
mod store_faults;
mod storm;
mod templates;
mod tftp;
mod tftp_duplicates;
mod tftp_fifo;
mod tftp_loss;
mod tls;
mod trusted_boot;
mod ui;
mod ui_session;
mod uki;
mod webdriver;
