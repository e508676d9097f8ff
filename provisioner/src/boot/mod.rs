//! The HTTP boot side, on the same listener as the API: per-machine iPXE scripts, UEFI HTTP
//! boot, GRUB configs, content-addressed asset downloads, per-machine Kairos configs and the
//! machine-facing API (progress, logs, Kairos-compatible registration).
//!
//! Every path that could start an installer asks [`crate::boot_decision::decide`] about the
//! machine first, so an installed machine is never handed the installer again (no boot loop).

pub mod attestation;
pub mod cloud_config;
pub mod config_render;
pub mod files;
pub mod grub;
pub mod handlers;
pub mod machine_query;
pub mod node_api;
pub mod plan;
pub mod script;

use axum::routing::{get, post};
use axum::Router;
use inventory::Mac;

use crate::app::App;
use crate::http::Peer;
use script::Url;

/// Routes served without the operator token.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/boot/ipxe", get(handlers::ipxe_script))
        .route("/boot/efi", get(handlers::http_boot))
        .route("/boot/grub", get(grub::config))
        .route("/assets/{digest}/{name}", get(handlers::asset))
        .route(
            "/assets/{digest}/sections/{section}",
            get(handlers::asset_section),
        )
        .route("/config", get(handlers::config_by_query))
        .route("/config/{mac}", get(handlers::config_by_mac))
        .route("/api/v1/nodes/register", post(node_api::register))
        .route("/api/v1/nodes/progress", post(node_api::progress))
        .route("/api/v1/nodes/logs", post(node_api::logs))
        .route("/api/v1/nodes/attestation", post(attestation::attestation))
}

/// The base URL machines use to reach us, and the URLs built on it. Only typed parts are added.
/// Firmware downloads (scripts, UKIs) use the plain base; the endpoints that carry secrets
/// (configs, the machines' API) use `tls.public_url` when set.
#[derive(Clone, Debug)]
pub struct Base {
    plain: String,
    machine: Option<String>,
}

impl Base {
    /// One base for everything (tests, samples).
    pub fn plain(url: &str) -> Base {
        Base {
            plain: url.to_string(),
            machine: None,
        }
    }

    pub fn new(app: &App, peer: &Peer) -> Base {
        let plain = match &app.boot.public_url {
            Some(u) => u.clone(),
            // A listener on [::] sees IPv4 clients at ::ffff:a.b.c.d; IPv4-only firmware needs
            // the plain IPv4 form in the URLs it is given.
            None => match crate::identity::ipv4(peer.local.ip()) {
                Some(v4) => format!(
                    "http://{}",
                    std::net::SocketAddr::from((v4, peer.local.port()))
                ),
                None => format!("http://{}", peer.local),
            },
        };
        Base {
            plain,
            machine: app.boot.machine_url.clone(),
        }
    }

    /// The plain base firmware downloads use.
    pub fn as_str(&self) -> &str {
        &self.plain
    }

    /// The base of the endpoints that carry secrets: `tls.public_url`, else the plain one.
    pub fn machine(&self) -> &str {
        self.machine.as_deref().unwrap_or(&self.plain)
    }

    /// For checking templates when a profile is saved.
    pub fn sample() -> Base {
        Base::plain("http://198.18.0.1:8080")
    }

    pub fn script(&self, mac: Mac, platform: Option<&script::Platform>) -> Url {
        match platform {
            None => Url(format!(
                "{}/boot/ipxe?mac={mac}&platform=${{platform}}",
                self.plain
            )),
            Some(p) => {
                let p = match p {
                    script::Platform::Efi => "efi",
                    script::Platform::Pcbios => "pcbios",
                };
                Url(format!("{}/boot/ipxe?mac={mac}&platform={p}", self.plain))
            }
        }
    }

    /// `hex` is a checked digest, `name` a store-cleaned file name.
    pub fn asset(&self, hex: &str, name: &str, mac: Mac) -> Url {
        Url(format!("{}/assets/{hex}/{name}?mac={mac}", self.plain))
    }

    pub fn section(&self, hex: &str, section: boot_assets::BootSection, mac: Mac) -> Url {
        Url(format!(
            "{}/assets/{hex}/sections/{}?mac={mac}",
            self.plain,
            section.file_name()
        ))
    }

    pub fn config(&self, mac: Mac) -> String {
        format!("{}/config/{mac}", self.machine())
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1/nodes/{path}", self.machine())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_use_the_tls_base_and_downloads_stay_plain() {
        let b = Base {
            plain: "http://198.18.0.1:8080".into(),
            machine: Some("https://boot.example:8443".into()),
        };
        let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
        assert_eq!(
            b.config(mac),
            "https://boot.example:8443/config/52:54:00:00:00:01"
        );
        assert_eq!(
            b.api("progress"),
            "https://boot.example:8443/api/v1/nodes/progress"
        );
        assert_eq!(b.as_str(), "http://198.18.0.1:8080");
        assert!(b
            .asset("ab", "x.efi", mac)
            .0
            .starts_with("http://198.18.0.1:8080/assets/ab/x.efi"));
        assert!(b
            .script(mac, None)
            .0
            .starts_with("http://198.18.0.1:8080/boot/ipxe"));
        let plain = Base::plain("http://198.18.0.1:8080");
        assert_eq!(
            plain.config(mac),
            "http://198.18.0.1:8080/config/52:54:00:00:00:01"
        );
    }
}
