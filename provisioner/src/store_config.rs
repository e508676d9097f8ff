//! The `[store]` section: which [`inventory::Store`] backend the server runs on. `redb` (the
//! default) keeps the inventory in `<data_dir>/inventory.redb`; `etcd` keeps it on an etcd v3
//! cluster that several provisioners share (README "High availability (etcd)").

use std::path::PathBuf;
use std::time::Duration;

use inventory_etcd::{Credentials, EtcdSettings, TlsFiles};

use crate::config_error::ConfigError;

/// `[store]` as written in the TOML file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireStore {
    pub backend: Option<String>,
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub timeout: Option<String>,
    pub asset_peers: Option<Vec<String>>,
}

/// The validated `[store]` section.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum StoreBackend {
    /// The embedded redb files in the data directory (one server).
    #[default]
    Redb,
    /// An etcd v3 cluster (several servers).
    Etcd(EtcdSettings),
}

fn value(key: &'static str, value: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key,
        value: value.into(),
        why: why.into(),
    }
}

impl TryFrom<WireStore> for StoreBackend {
    type Error = ConfigError;

    fn try_from(w: WireStore) -> Result<Self, ConfigError> {
        match w.backend.as_deref() {
            None | Some("redb") => {
                let etcd_keys = [
                    ("store.endpoints", w.endpoints.is_some()),
                    ("store.prefix", w.prefix.is_some()),
                    ("store.username", w.username.is_some()),
                    ("store.password_file", w.password_file.is_some()),
                    ("store.ca_file", w.ca_file.is_some()),
                    ("store.cert_file", w.cert_file.is_some()),
                    ("store.key_file", w.key_file.is_some()),
                    ("store.timeout", w.timeout.is_some()),
                    ("store.asset_peers", w.asset_peers.is_some()),
                ];
                match etcd_keys.iter().find(|(_, set)| *set) {
                    Some((key, _)) => Err(value(
                        key,
                        "(set)",
                        if *key == "store.asset_peers" {
                            PEERS_NEED_ETCD
                        } else {
                            "only used with store.backend = \"etcd\"; set that, or remove this key"
                        },
                    )),
                    None => Ok(StoreBackend::Redb),
                }
            }
            Some("etcd") => Ok(StoreBackend::Etcd(etcd_settings(w)?)),
            Some(other) => Err(value(
                "store.backend",
                other,
                "must be \"redb\" (one server, the default) or \"etcd\" (several servers sharing one inventory)",
            )),
        }
    }
}

/// Why `store.asset_peers` is refused with redb.
pub const PEERS_NEED_ETCD: &str = "only used with store.backend = \"etcd\": peers fetch what the \
    shared asset catalogue in etcd lists; with redb import assets on this server";

/// `store.asset_peers` (or `--asset-peers`): base URLs of other provisioners whose public
/// `/assets/<sha256>/<name>` this server may fetch a missing asset from; absolute `http://` or
/// `https://` URLs with a host, no query, fragment or credentials. Empty when unset.
pub fn asset_peers(list: Option<&[String]>) -> Result<Vec<reqwest::Url>, ConfigError> {
    let mut out = Vec::new();
    for text in list.unwrap_or_default() {
        let bad = |why: &str| value("store.asset_peers", text.as_str(), why);
        let url = reqwest::Url::parse(text)
            .map_err(|e| bad(&format!("{e}; expected e.g. \"http://198.18.0.3:8080\"")))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(bad(
                "must be an absolute http:// or https:// URL of a provisioner",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a base URL has no query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("no credentials in the URL: /assets/ needs none"));
        }
        out.push(url);
    }
    Ok(out)
}

/// Every etcd endpoint is an `http://` or `https://` URL (`store.endpoints`, also what
/// `--etcd-endpoints` replaces them with).
pub fn check_endpoints(endpoints: &[String]) -> Result<(), ConfigError> {
    for e in endpoints {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            return Err(value(
                "store.endpoints",
                e,
                "an etcd client URL starts with http:// or https://",
            ));
        }
    }
    Ok(())
}

fn etcd_settings(w: WireStore) -> Result<EtcdSettings, ConfigError> {
    let endpoints = w.endpoints.unwrap_or_default();
    if endpoints.is_empty() {
        return Err(value(
            "store.endpoints",
            "[]",
            "list the client URLs of the etcd members, e.g. [\"http://127.0.0.1:2379\"]",
        ));
    }
    check_endpoints(&endpoints)?;
    let tls_endpoints = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    let mut s = EtcdSettings::new(endpoints);
    if let Some(p) = w.prefix {
        if !p.starts_with('/') || p.len() < 2 {
            return Err(value(
                "store.prefix",
                p,
                "a key prefix starting with /, e.g. \"/provisioner/v1/\"",
            ));
        }
        s.prefix = p;
    }
    s.credentials = match (w.username, w.password_file) {
        (Some(username), Some(f)) => Some(Credentials {
            username,
            password_file: PathBuf::from(f),
        }),
        (None, None) => None,
        (Some(u), None) => {
            return Err(value(
                "store.username",
                u,
                "needs store.password_file (a file holding the etcd password)",
            ))
        }
        (None, Some(f)) => {
            return Err(value("store.password_file", f, "needs store.username"));
        }
    };
    let client = match (w.cert_file, w.key_file) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(c), None) => return Err(value("store.cert_file", c, "needs store.key_file")),
        (None, Some(k)) => return Err(value("store.key_file", k, "needs store.cert_file")),
    };
    s.tls = match (w.ca_file, client) {
        (Some(ca), client) => Some(TlsFiles {
            ca_file: PathBuf::from(ca),
            client,
        }),
        (None, Some((c, _))) => {
            return Err(value(
                "store.cert_file",
                c.display().to_string(),
                "needs store.ca_file (the CA that signed the etcd members' certificates)",
            ))
        }
        (None, None) => None,
    };
    if s.tls.is_some() && tls_endpoints != s.endpoints.len() {
        return Err(value(
            "store.endpoints",
            s.endpoints.join(", "),
            "with store.ca_file set, every endpoint must be https://",
        ));
    }
    if s.tls.is_none() && tls_endpoints > 0 {
        return Err(value(
            "store.ca_file",
            "(unset)",
            "https:// endpoints need the CA that signed the members' certificates",
        ));
    }
    if let Some(t) = w.timeout {
        let d = humantime::parse_duration(&t)
            .map_err(|e| value("store.timeout", t.clone(), e.to_string()))?;
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&d) {
            return Err(value("store.timeout", t, "must be between 100ms and 60s"));
        }
        s.timeout = d;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<StoreBackend, ConfigError> {
        StoreBackend::try_from(toml::from_str::<WireStore>(toml_text).unwrap())
    }

    #[test]
    fn redb_is_the_default_and_etcd_is_validated() {
        assert_eq!(parse("").unwrap(), StoreBackend::Redb);
        let StoreBackend::Etcd(s) = parse(
            "backend = \"etcd\"\nendpoints = [\"https://198.18.0.11:2379\"]\nca_file = \"/ca.pem\"\n\
             username = \"prov\"\npassword_file = \"/pw\"\ntimeout = \"2s\"",
        )
        .unwrap() else {
            panic!("etcd")
        };
        assert_eq!(s.prefix, "/provisioner/v1/");
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.credentials.unwrap().username, "prov");
        assert_eq!(s.tls.unwrap().ca_file, PathBuf::from("/ca.pem"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("backend = \"postgres\"", "store.backend"),
            ("endpoints = [\"http://a:1\"]", "store.endpoints"),
            ("backend = \"etcd\"", "store.endpoints"),
            (
                "backend = \"etcd\"\nendpoints = [\"a:1\"]",
                "store.endpoints",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"https://a:1\"]",
                "store.ca_file",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\nusername = \"u\"",
                "store.username",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\ntimeout = \"1h\"",
                "store.timeout",
            ),
            (
                "backend = \"etcd\"\nendpoints = [\"http://a:1\"]\nprefix = \"x\"",
                "store.prefix",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        assert!(
            toml::from_str::<WireStore>("endpoint = []").is_err(),
            "unknown keys refused"
        );
        let e = parse("asset_peers = [\"http://198.18.0.3:8080\"]").unwrap_err();
        assert!(e.to_string().contains("store.asset_peers"), "{e}");
        assert!(e.to_string().contains("etcd"), "{e}");
    }

    #[test]
    fn asset_peers_are_absolute_http_urls() {
        let ok = asset_peers(Some(&[
            "http://198.18.0.3:8080".into(),
            "https://prov-b.example/base/".into(),
        ]))
        .unwrap();
        assert_eq!(ok[0].as_str(), "http://198.18.0.3:8080/");
        assert_eq!(ok.len(), 2);
        for bad in [
            "198.18.0.3:8080",
            "/assets",
            "ftp://198.18.0.3/",
            "http://198.18.0.3/?x=1",
            "http://u:p@198.18.0.3/",
        ] {
            let e = asset_peers(Some(&[bad.into()])).unwrap_err().to_string();
            assert!(
                e.contains("store.asset_peers") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        assert!(asset_peers(None).unwrap().is_empty());
    }
}
