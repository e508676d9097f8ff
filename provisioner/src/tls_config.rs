//! The `[tls]` section: an HTTPS listener beside the plain one (issue 14, item 4). Off unless
//! `tls.listen` (or `serve --tls-listen`) is set: turning it on creates a CA in the data
//! directory and opens a port, which an operator should decide, and firmware that cannot speak
//! TLS (Debian 12's iPXE, GRUB) keeps using the plain listener either way.
//!
//! ```toml
//! [tls]
//! listen = "0.0.0.0:8443"
//! # cert = "/etc/provisioner/server.pem"   # chain, server certificate first
//! # key = "/etc/provisioner/server.key"    # both or neither; else a self-issued CA in <data_dir>/tls
//! # names = ["boot.example", "198.18.0.1"] # subjectAltNames of the self-issued certificate
//! # public_url = "https://boot.example:8443" # machine endpoints (config, register, progress, logs)
//! # require_for_secrets = true             # refuse the API and configs over plain HTTP
//! # handshake_timeout = "10s"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config_error::ConfigError;

/// `[tls]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTls {
    pub listen: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub names: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub require_for_secrets: Option<bool>,
    pub handshake_timeout: Option<String>,
}

/// Where the served certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// `tls.cert` and `tls.key`: the operator's PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and server certificate issued on first start into `<data_dir>/tls`; `names` from
    /// `tls.names`, or empty for the defaults worked out at start ([`default_names`]).
    SelfIssued { names: Vec<String> },
}

/// The validated `[tls]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `tls.listen`: the HTTPS listener; `None`: no TLS listener.
    pub listen: Option<SocketAddr>,
    pub source: CertSource,
    /// `tls.public_url`: the https:// base put into machines' configs and command lines for the
    /// endpoints that carry secrets (`/config`, `/api/v1/nodes/*`); firmware downloads keep
    /// `http.public_url`.
    pub public_url: Option<String>,
    /// `tls.require_for_secrets`: over plain HTTP, answer the operator API, the machines' API
    /// and `/config` with 403 naming the HTTPS URL instead.
    pub require_for_secrets: bool,
    /// `tls.handshake_timeout` (default 10 s, 1 s–1 min): a client that has not finished its
    /// handshake by then is closed.
    pub handshake_timeout: Duration,
}

impl TryFrom<WireTls> for TlsConfig {
    type Error = ConfigError;

    fn try_from(w: WireTls) -> Result<Self, ConfigError> {
        let value = |key: &'static str, value: String, why: &str| ConfigError::Value {
            key,
            value,
            why: why.into(),
        };
        let listen = w
            .listen
            .map(|v| {
                v.parse().map_err(|e: std::net::AddrParseError| {
                    value("tls.listen", v.clone(), &format!("{e} (expected IP:PORT)"))
                })
            })
            .transpose()?;
        let source = match (w.cert, w.key) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.into(),
                key: key.into(),
            },
            (None, None) => CertSource::SelfIssued {
                names: w.names.clone().unwrap_or_default(),
            },
            (Some(c), None) => return Err(value("tls.cert", c, "tls.key must be set with it")),
            (None, Some(k)) => return Err(value("tls.key", k, "tls.cert must be set with it")),
        };
        if let (CertSource::Files { .. }, Some(n)) = (&source, &w.names) {
            return Err(value(
                "tls.names",
                n.join(","),
                "only for the self-issued certificate; the operator's certificate names itself",
            ));
        }
        for n in w.names.iter().flatten() {
            if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                return Err(value(
                    "tls.names",
                    n.clone(),
                    "not a DNS name or IP address",
                ));
            }
        }
        let public_url = w.public_url.map(https_url).transpose()?;
        let require_for_secrets = w.require_for_secrets.unwrap_or(false);
        if require_for_secrets && public_url.is_none() {
            // Machines would be handed http:// config and API URLs that are then refused.
            return Err(value(
                "tls.require_for_secrets",
                "true".to_string(),
                "needs tls.public_url (the https:// base machines are given for their config \
                 and API); without it every install is refused at its config fetch",
            ));
        }
        let handshake_timeout = match w.handshake_timeout {
            None => Duration::from_secs(10),
            Some(v) => {
                let d = humantime::parse_duration(&v)
                    .map_err(|e| value("tls.handshake_timeout", v.clone(), &e.to_string()))?;
                if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&d) {
                    return Err(value(
                        "tls.handshake_timeout",
                        v,
                        "must be between 1s and 1m",
                    ));
                }
                d
            }
        };
        Ok(TlsConfig {
            listen,
            source,
            public_url,
            require_for_secrets,
            handshake_timeout,
        })
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::try_from(WireTls::default()).expect("defaults are valid")
    }
}

/// `https://host[:port][/path]` with only characters inert in iPXE scripts, command lines and
/// YAML (the rule `http.public_url` follows).
fn https_url(u: String) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Value {
        key: "tls.public_url",
        value: u.clone(),
        why: why.into(),
    };
    let rest = u
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://"))?;
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/[]".contains(&b))
    {
        return Err(bad(
            "must be https://HOST[:PORT][/PATH] with letters, digits and - . _ : / [ ] only",
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// The host part of an http(s) URL (`[v6]` without brackets).
fn url_host(url: &str) -> Option<String> {
    reqwest::Url::parse(url).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
    })
}

/// Names for the self-issued server certificate when `tls.names` is not set: this host's name,
/// the hosts of `http.public_url` and `tls.public_url`, the listen addresses that are not
/// wildcards, `localhost`, `127.0.0.1` and `::1`. Duplicates removed, order kept.
pub fn default_names(
    hostname: Option<String>,
    urls: &[Option<&str>],
    listens: &[Option<SocketAddr>],
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let candidates = hostname
        .into_iter()
        .chain(urls.iter().flatten().filter_map(|u| url_host(u)))
        .chain(
            listens
                .iter()
                .flatten()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| a.ip().to_string()),
        )
        .chain(["localhost", "127.0.0.1", "::1"].map(String::from));
    for n in candidates {
        if !n.is_empty()
            && rustls::pki_types::ServerName::try_from(n.as_str()).is_ok()
            && !names.contains(&n)
        {
            names.push(n);
        }
    }
    names
}

/// This host's name (`gethostname`), if it has a usable one.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|h| !h.is_empty() && h != "(none)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<TlsConfig, ConfigError> {
        TlsConfig::try_from(toml::from_str::<WireTls>(toml_text).unwrap())
    }

    #[test]
    fn off_by_default_and_validated() {
        let d = TlsConfig::default();
        assert_eq!(d.listen, None);
        assert!(!d.require_for_secrets);
        assert_eq!(d.handshake_timeout, Duration::from_secs(10));
        let c = parse(
            "listen = \"127.0.0.1:0\"\npublic_url = \"https://boot.example:8443/\"\nrequire_for_secrets = true",
        )
        .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://boot.example:8443"));
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert!(err("cert = \"/a.pem\"").contains("tls.key must be set"));
        assert!(err("public_url = \"http://x\"").contains("must start with https://"));
        assert!(err("handshake_timeout = \"5m\"").contains("between 1s and 1m"));
        assert!(err("names = [\"a b\"]").contains("not a DNS name"));
        assert!(toml::from_str::<WireTls>("lisen = \"x\"").is_err());
    }

    #[test]
    fn default_names_skip_wildcards_and_duplicates() {
        let names = default_names(
            Some("rack-boot".into()),
            &[
                Some("http://198.18.0.1:8080"),
                Some("https://boot.example:8443"),
            ],
            &[
                Some("0.0.0.0:8080".parse().unwrap()),
                Some("198.18.0.1:8443".parse().unwrap()),
            ],
        );
        assert_eq!(
            names,
            [
                "rack-boot",
                "198.18.0.1",
                "boot.example",
                "localhost",
                "127.0.0.1",
                "::1"
            ]
        );
    }
}
