//! Configuration in two layers: [`wire::ConfigFile`] is exactly what the TOML file may say
//! (unknown keys are errors), [`Config`] is the validated form the server runs with. Errors name
//! the key and the value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inventory::Deadlines;

use crate::http_server::HttpLimits;
use crate::tftp::settings::TftpSettings;
use crate::tftp::transfer::Limits;

/// The TOML file, as written.
pub mod wire {
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ConfigFile {
        pub data_dir: Option<String>,
        #[serde(default)]
        pub http: Http,
        #[serde(default)]
        pub lifecycle: Lifecycle,
        #[serde(default)]
        pub log: Log,
        #[serde(default)]
        pub tftp: Tftp,
        #[serde(default)]
        pub dhcp: crate::dhcp::config::WireDhcp,
        #[serde(default)]
        pub dhcp6: crate::dhcp6::config::WireDhcp6,
        #[serde(default)]
        pub boot: Boot,
        #[serde(default)]
        pub syslog: Syslog,
        #[serde(default)]
        pub store: crate::store_config::WireStore,
        #[serde(default)]
        pub tls: crate::tls_config::WireTls,
        #[serde(default)]
        pub boot_tls: crate::boot_tls::WireBootTls,
        #[serde(default)]
        pub secure_boot: SecureBoot,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SecureBoot {
        pub db_certs: Option<Vec<String>>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Boot {
        pub poll_interval: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Syslog {
        pub listen: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tftp {
        pub enabled: Option<bool>,
        pub listen: Option<String>,
        pub root: Option<String>,
        pub loaders_dir: Option<String>,
        pub grub_dir: Option<String>,
        pub max_blksize: Option<u64>,
        pub no_blksize: Option<bool>,
        pub max_windowsize: Option<u64>,
        pub timeout: Option<String>,
        pub min_timeout: Option<String>,
        pub retries: Option<u64>,
        pub max_transfers: Option<u64>,
        pub max_per_client: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Http {
        pub listen: Option<String>,
        pub public_url: Option<String>,
        pub header_timeout: Option<String>,
        pub body_stall_timeout: Option<String>,
        pub max_connections: Option<u64>,
        pub max_connections_per_client: Option<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Lifecycle {
        pub booting_timeout: Option<String>,
        pub installing_timeout: Option<String>,
        pub uki_start_timeout: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Log {
        pub format: Option<String>,
        pub level: Option<String>,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub deadlines: Deadlines,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `None` when `tftp.enabled = false`.
    pub tftp: Option<TftpConfig>,
    /// `None` unless `dhcp.mode` is "full" or "proxy".
    pub dhcp: Option<crate::dhcp::config::DhcpConfig>,
    /// `None` unless `dhcp6.mode` is "stateful" or "stateless".
    pub dhcp6: Option<crate::dhcp6::config::Dhcp6Config>,
    /// `http.public_url` without a trailing slash.
    pub public_url: Option<String>,
    /// `boot.poll_interval`: how often a held machine asks again.
    pub poll_interval: Duration,
    /// `syslog.listen`: the remote syslog receiver (off unless set).
    pub syslog_listen: Option<SocketAddr>,
    /// `http.header_timeout`, `http.body_stall_timeout`, `http.max_connections`.
    pub http_limits: HttpLimits,
    /// `[store]`: redb in the data directory (default) or an etcd cluster.
    pub store: crate::store_config::StoreBackend,
    /// `store.asset_peers`: provisioners a missing asset is fetched from by digest (etcd only).
    pub asset_peers: Vec<reqwest::Url>,
    /// `[boot_tls]`: the OpenSSL listener for UEFI HTTPS boot (off unless `boot_tls.listen`).
    pub boot_tls: Option<crate::boot_tls::BootTlsConfig>,
    /// `[tls]`: the HTTPS listener (off unless `tls.listen`), its certificate, and whether
    /// secrets are refused over plain HTTP.
    pub tls: crate::tls_config::TlsConfig,
    /// `secure_boot.db_certs`: the certificates the machines' UEFI `db` holds, read at start;
    /// UKI signatures are checked against them (`assets inspect`, profiles with `secure_boot`).
    pub db_certs: boot_assets::TrustStore,
}

/// The validated `[tftp]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct TftpConfig {
    pub listen: SocketAddr,
    /// Operator-provided files, searched first.
    pub root: Option<PathBuf>,
    /// iPXE loaders (Debian's `ipxe` package installs them in /usr/lib/ipxe).
    pub loaders_dir: PathBuf,
    /// GRUB's x86-64 EFI directory (Debian's `grub-efi-amd64-bin`): `grubnetx64.efi` from its
    /// `monolithic/` and the modules GRUB loads from `grub/x86_64-efi/` (see `tftp::grub_files`).
    pub grub_dir: PathBuf,
    pub settings: TftpSettings,
}

pub use crate::config_error::ConfigError;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_TFTP_LISTEN: &str = "0.0.0.0:69";
pub const DEFAULT_LOADERS_DIR: &str = "/usr/lib/ipxe";
pub const DEFAULT_GRUB_DIR: &str = "/usr/lib/grub/x86_64-efi";

impl Default for Config {
    fn default() -> Self {
        Config::try_from(wire::ConfigFile::default()).expect("defaults are valid")
    }
}

impl TryFrom<wire::ConfigFile> for Config {
    type Error = ConfigError;

    fn try_from(w: wire::ConfigFile) -> Result<Self, ConfigError> {
        let http_limits = http_limits(&w.http)?;
        let listen = w.http.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let http_listen =
            listen
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Value {
                    key: "http.listen",
                    value: listen.clone(),
                    why: format!("{e} (expected IP:PORT, e.g. 0.0.0.0:8080)"),
                })?;
        let defaults = Deadlines::default();
        let deadlines = Deadlines {
            booting: duration(
                "lifecycle.booting_timeout",
                w.lifecycle.booting_timeout,
                defaults.booting,
            )?,
            installing: duration(
                "lifecycle.installing_timeout",
                w.lifecycle.installing_timeout,
                defaults.installing,
            )?,
            uki_start: duration(
                "lifecycle.uki_start_timeout",
                w.lifecycle.uki_start_timeout,
                defaults.uki_start,
            )?,
        };
        let log_format = match w.log.format.as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Value {
                    key: "log.format",
                    value: other.into(),
                    why: "must be \"human\" or \"json\"".into(),
                })
            }
        };
        let log_level = w.log.level.unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(ConfigError::Value {
                key: "log.level",
                value: log_level,
                why: e.to_string(),
            });
        }
        let public_url = match w.http.public_url {
            None => None,
            Some(u) => Some(public_url(u)?),
        };
        let poll_interval = duration(
            "boot.poll_interval",
            w.boot.poll_interval,
            Duration::from_secs(10),
        )?;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&poll_interval) {
            return Err(ConfigError::Value {
                key: "boot.poll_interval",
                value: format!("{poll_interval:?}"),
                why: "must be between 1s and 1h".into(),
            });
        }
        let syslog_listen = w
            .syslog
            .listen
            .map(|v| socket_addr("syslog.listen", v))
            .transpose()?;
        let tftp = tftp_config(w.tftp)?;
        let dhcp = crate::dhcp::config::validate(w.dhcp)?;
        let dhcp6 = crate::dhcp6::config::validate(w.dhcp6)?;
        let asset_peers = crate::store_config::asset_peers(w.store.asset_peers.as_deref())?;
        let boot_tls = crate::boot_tls::validate(w.boot_tls)?;
        let tls = crate::tls_config::TlsConfig::try_from(w.tls)?;
        let store = crate::store_config::StoreBackend::try_from(w.store)?;
        let db_certs = db_certs(w.secure_boot.db_certs.unwrap_or_default())?;
        let data_dir = PathBuf::from(w.data_dir.unwrap_or_else(|| "./data".into()));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Value {
                key: "data_dir",
                value: String::new(),
                why: "must not be empty".into(),
            });
        }
        Ok(Config {
            data_dir,
            http_listen,
            deadlines,
            log_format,
            log_level,
            tftp,
            dhcp,
            dhcp6,
            public_url,
            poll_interval,
            syslog_listen,
            http_limits,
            store,
            asset_peers,
            boot_tls,
            tls,
            db_certs,
        })
    }
}

/// `secure_boot.db_certs`: every file read now, so a bad one stops the start naming it.
fn db_certs(paths: Vec<String>) -> Result<boot_assets::TrustStore, ConfigError> {
    let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
    boot_assets::TrustStore::load(&paths).map_err(|e| ConfigError::Value {
        key: "secure_boot.db_certs",
        value: match &e {
            boot_assets::Error::Io { path, .. } | boot_assets::Error::Certificates { path, .. } => {
                path.display().to_string()
            }
            _ => format!("{paths:?}"),
        },
        why: e.to_string(),
    })
}

/// `[http]` limits; timeouts within 1s–1h, the connection cap within 16–1,000,000.
fn http_limits(w: &wire::Http) -> Result<HttpLimits, ConfigError> {
    let d = HttpLimits::default();
    let bounded = |key: &'static str, v: &Option<String>, default: Duration| {
        let t = duration(key, v.clone(), default)?;
        if t > Duration::from_secs(3600) {
            return Err(ConfigError::Value {
                key,
                value: format!("{t:?}"),
                why: "must be at most 1h".into(),
            });
        }
        Ok(t)
    };
    Ok(HttpLimits {
        header_timeout: bounded("http.header_timeout", &w.header_timeout, d.header_timeout)?,
        body_stall_timeout: bounded(
            "http.body_stall_timeout",
            &w.body_stall_timeout,
            d.body_stall_timeout,
        )?,
        max_connections: in_range(
            "http.max_connections",
            w.max_connections,
            d.max_connections as u64,
            16..=1_000_000,
        )? as usize,
        max_connections_per_client: in_range(
            "http.max_connections_per_client",
            w.max_connections_per_client,
            d.max_connections_per_client as u64,
            1..=1_000_000,
        )? as usize,
    })
}

/// `http://host[:port][/path]`, rendered into iPXE scripts and configs: only characters that are
/// inert there.
fn public_url(u: String) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Value {
        key: "http.public_url",
        value: u.clone(),
        why: why.into(),
    };
    let rest = u.strip_prefix("http://").ok_or_else(|| {
        bad("must start with http:// (iPXE and UEFI HTTP boot fetch over plain HTTP)")
    })?;
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/[]".contains(&b))
    {
        return Err(bad(
            "must be http://HOST[:PORT][/PATH] with letters, digits and - . _ : / [ ] only",
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

fn socket_addr(key: &'static str, v: String) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Value {
            key,
            value: v.clone(),
            why: format!("{e} (expected IP:PORT)"),
        })
}

fn in_range(
    key: &'static str,
    v: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Value {
            key,
            value: v.to_string(),
            why: format!("must be between {} and {}", range.start(), range.end()),
        })
    }
}

fn tftp_config(w: wire::Tftp) -> Result<Option<TftpConfig>, ConfigError> {
    if w.enabled == Some(false) {
        return Ok(None);
    }
    let d = TftpSettings::default();
    let timeout = duration("tftp.timeout", w.timeout, d.limits.timeout)?;
    if timeout > Duration::from_secs(255) {
        return Err(ConfigError::Value {
            key: "tftp.timeout",
            value: format!("{timeout:?}"),
            why: "must be at most 255s (RFC 2349)".into(),
        });
    }
    let min_timeout = match w.min_timeout {
        None => d.limits.min_timeout,
        Some(v) => humantime::parse_duration(&v).map_err(|e| ConfigError::Value {
            key: "tftp.min_timeout",
            value: v.clone(),
            why: format!("{e} (e.g. \"50ms\")"),
        })?,
    };
    if min_timeout.is_zero() || min_timeout > timeout {
        return Err(ConfigError::Value {
            key: "tftp.min_timeout",
            value: format!("{min_timeout:?}"),
            why: format!("must be above zero and at most tftp.timeout ({timeout:?})"),
        });
    }
    let settings = TftpSettings {
        limits: Limits {
            max_blksize: in_range(
                "tftp.max_blksize",
                w.max_blksize,
                d.limits.max_blksize.into(),
                8..=65464,
            )? as u16,
            no_blksize: w.no_blksize.unwrap_or(false),
            max_windowsize: in_range(
                "tftp.max_windowsize",
                w.max_windowsize,
                d.limits.max_windowsize.into(),
                1..=1024,
            )? as u16,
            timeout,
            min_timeout,
            max_retries: in_range(
                "tftp.retries",
                w.retries,
                d.limits.max_retries.into(),
                1..=100,
            )? as u32,
        },
        max_transfers: in_range(
            "tftp.max_transfers",
            w.max_transfers,
            d.max_transfers as u64,
            1..=1_000_000,
        )? as usize,
        max_per_client: in_range(
            "tftp.max_per_client",
            w.max_per_client,
            d.max_per_client as u64,
            1..=100_000,
        )? as usize,
    };
    Ok(Some(TftpConfig {
        listen: socket_addr(
            "tftp.listen",
            w.listen.unwrap_or_else(|| DEFAULT_TFTP_LISTEN.into()),
        )?,
        root: w.root.map(PathBuf::from),
        loaders_dir: PathBuf::from(w.loaders_dir.unwrap_or_else(|| DEFAULT_LOADERS_DIR.into())),
        grub_dir: PathBuf::from(w.grub_dir.unwrap_or_else(|| DEFAULT_GRUB_DIR.into())),
        settings,
    }))
}

fn duration(
    key: &'static str,
    v: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let d = humantime::parse_duration(&v).map_err(|e| ConfigError::Value {
        key,
        value: v.clone(),
        why: format!("{e} (e.g. \"90s\", \"30m\", \"2h\")"),
    })?;
    if d < Duration::from_secs(1) {
        return Err(ConfigError::Value {
            key,
            value: v,
            why: "must be at least 1s".into(),
        });
    }
    Ok(d)
}

impl Config {
    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let wire: wire::ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Config::try_from(wire)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        })?;
        Config::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses_to_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisioner.example.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
    }

    #[test]
    fn tftp_can_be_disabled() {
        assert_eq!(
            Config::parse("[tftp]\nenabled = false", Path::new("x"))
                .unwrap()
                .tftp,
            None
        );
        assert!(Config::default().tftp.is_some());
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(
            Config::parse("", Path::new("x")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn errors_name_key_and_value() {
        let cases = [
            (
                "[http]\nlisten = \"nonsense\"",
                "config key http.listen = \"nonsense\"",
            ),
            (
                "[lifecycle]\nbooting_timeout = \"soon\"",
                "config key lifecycle.booting_timeout = \"soon\"",
            ),
            (
                "[lifecycle]\ninstalling_timeout = \"0s\"",
                "must be at least 1s",
            ),
            ("[log]\nformat = \"xml\"", "config key log.format = \"xml\""),
            (
                "[tftp]\nmax_blksize = 70000",
                "config key tftp.max_blksize = \"70000\": must be between 8 and 65464",
            ),
            (
                "[tftp]\nlisten = \":69\"",
                "config key tftp.listen = \":69\"",
            ),
            ("[tftp]\ntimeout = \"5m\"", "tftp.timeout"),
            ("[tftp]\nmax_windowsize = 0", "tftp.max_windowsize"),
            ("[tftp]\nmin_timeout = \"2s\"", "tftp.min_timeout"),
            ("[tftp]\nwindowsize = 8", "unknown field `windowsize`"),
            ("[http]\nheader_timeout = \"0s\"", "http.header_timeout"),
            ("[http]\nbody_stall_timeout = \"2h\"", "must be at most 1h"),
            (
                "[http]\nmax_connections = 3",
                "config key http.max_connections = \"3\": must be between 16 and 1000000",
            ),
            ("[http]\nlisen = \"0.0.0.0:80\"", "unknown field `lisen`"),
            (
                "[lifecycle]\nuki_start_timeout = \"0s\"",
                "lifecycle.uki_start_timeout",
            ),
            (
                "[secure_boot]\ndb_certs = [\"/nonexistent/db.pem\"]",
                "config key secure_boot.db_certs = \"/nonexistent/db.pem\": /nonexistent/db.pem:",
            ),
            ("[secure_boot]\ndb = []", "unknown field `db`"),
            ("data_dir = ", "config file x:"),
            ("[http\nlisten=1", "config file x:"),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, Path::new("x")).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn garbage_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, [0xff, 0xfe, 0x00, 0x41]).unwrap();
        assert!(Config::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }
}
