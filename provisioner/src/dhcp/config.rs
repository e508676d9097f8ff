//! The `[dhcp]` configuration: wire form (what the TOML says) and validation into what the DHCP
//! core runs with. DHCP is **off** unless configured: an accidental second DHCP server breaks a
//! site's network, so nobody gets one by running `provisioner serve` without saying so.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

use super::core::{Mode, SubnetOptions};
use super::pool::PoolTimes;
use super::reply::Loaders;
use crate::admission::Limits;
use crate::boot_decision::UnknownPolicy;
use crate::config_error::ConfigError;

/// Default of `dhcp.subnet.unknown_share`: a fifth of each range stays for registered machines.
pub const DEFAULT_UNKNOWN_SHARE: u8 = 80;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireDhcp {
    pub mode: Option<String>,
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub interface: Option<String>,
    pub server_ip: Option<String>,
    pub http_url: Option<String>,
    pub unknown_machines: Option<UnknownPolicy>,
    /// Unclaimed records of unknown machines at most (`discover`/`auto`).
    pub max_discovered: Option<u64>,
    /// New records of unknown machines per minute at most.
    pub discover_rate: Option<u64>,
    /// Identify clients not in the inventory by their client identifier (option 61) when they
    /// send one (RFC 2131 §4.2); `false`: by MAC only.
    pub match_client_id: Option<bool>,
    #[serde(default)]
    pub loaders: WireLoaders,
    #[serde(default)]
    pub subnet: Vec<WireSubnet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLoaders {
    pub bios: Option<String>,
    pub efi_x64: Option<String>,
    pub efi_ia32: Option<String>,
    pub efi_arm64: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSubnet {
    pub network: String,
    pub range: Option<String>,
    pub router: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub lease_time: Option<String>,
    /// Percent of the range that machines not registered may hold at once.
    pub unknown_share: Option<u64>,
}

/// A validated subnet with its dynamic range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetConfig {
    pub options: SubnetOptions,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub times: PoolTimes,
    /// Percent (0–100) of the range unregistered clients may hold at once; the rest is kept for
    /// registered machines (see [`super::pool::Pool::with_stranger_share`]).
    pub unknown_share: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpConfig {
    pub mode: Mode,
    pub listen: Ipv4Addr,
    pub port: u16,
    pub interface: Option<String>,
    pub server_ip: Ipv4Addr,
    /// Base of the boot URLs handed to iPXE and HTTP-boot clients; `None`: derived from
    /// `server_ip` and the HTTP listener's port at start-up.
    pub http_url: Option<String>,
    pub unknown: UnknownPolicy,
    /// Cap and rate of recording unknown machines (`dhcp.max_discovered`, `dhcp.discover_rate`);
    /// HTTP boot applies the same limits.
    pub admission: Limits,
    /// Clients outside the inventory are identified by option 61 when they send it
    /// (`dhcp.match_client_id`, default `true`); machines of the inventory always by MAC.
    pub match_client_id: bool,
    pub loaders: Loaders,
    pub subnets: Vec<SubnetConfig>,
}

fn bad(key: &'static str, value: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key,
        value: value.into(),
        why: why.into(),
    }
}

fn ipv4(key: &'static str, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| bad(key, v, "not an IPv4 address"))
}

/// `a.b.c.d/len` → (network, prefix), refusing host bits.
fn cidr(key: &'static str, v: &str) -> Result<(Ipv4Addr, u8), ConfigError> {
    let (a, l) = v
        .split_once('/')
        .ok_or_else(|| bad(key, v, "expected CIDR, e.g. \"198.18.0.0/24\""))?;
    let ip = ipv4(key, a)?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| bad(key, v, "prefix length must be 0-32"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if u32::from(ip) & !mask != 0 {
        return Err(bad(
            key,
            v,
            format!(
                "host bits set; did you mean {}/{len}?",
                Ipv4Addr::from(u32::from(ip) & mask)
            ),
        ));
    }
    Ok((ip, len))
}

fn in_net(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net)
}

fn duration(
    key: &'static str,
    v: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s)
            .ok()
            .filter(|d| *d >= Duration::from_secs(60))
            .ok_or_else(|| bad(key, s, "a duration of at least 60s, e.g. \"1h\"")),
    }
}

/// `None` when DHCP is off.
pub fn validate(w: WireDhcp) -> Result<Option<DhcpConfig>, ConfigError> {
    let mode = match w.mode.as_deref().unwrap_or("off") {
        "off" => return Ok(None),
        "full" => Mode::Full,
        "proxy" => Mode::Proxy,
        other => {
            return Err(bad(
                "dhcp.mode",
                other,
                "must be \"off\", \"full\" or \"proxy\"",
            ))
        }
    };
    let server_ip = match &w.server_ip {
        Some(s) => ipv4("dhcp.server_ip", s)?,
        None => {
            return Err(bad(
                "dhcp.server_ip",
                "",
                "required when DHCP is on: this server's address as its clients reach it",
            ))
        }
    };
    let mut subnets = Vec::new();
    for s in &w.subnet {
        let (network, prefix) = cidr("dhcp.subnet.network", &s.network)?;
        let range = s.range.as_deref().ok_or_else(|| {
            bad(
                "dhcp.subnet.range",
                "",
                format!("required for subnet {}", s.network),
            )
        })?;
        let (a, b) = range
            .split_once('-')
            .ok_or_else(|| bad("dhcp.subnet.range", range, "expected FIRST-LAST"))?;
        let (first, last) = (ipv4("dhcp.subnet.range", a)?, ipv4("dhcp.subnet.range", b)?);
        if !in_net(first, network, prefix) || !in_net(last, network, prefix) || first > last {
            return Err(bad(
                "dhcp.subnet.range",
                range,
                format!("must be an ascending range inside {}", s.network),
            ));
        }
        let router = s
            .router
            .as_deref()
            .map(|r| ipv4("dhcp.subnet.router", r))
            .transpose()?;
        let dns = s
            .dns
            .iter()
            .map(|d| ipv4("dhcp.subnet.dns", d))
            .collect::<Result<Vec<_>, _>>()?;
        let lease = duration(
            "dhcp.subnet.lease_time",
            s.lease_time.as_deref(),
            Duration::from_secs(3600),
        )?;
        let unknown_share = match s.unknown_share {
            None => DEFAULT_UNKNOWN_SHARE,
            Some(p) if p <= 100 => p as u8,
            Some(p) => {
                return Err(bad(
                    "dhcp.subnet.unknown_share",
                    p.to_string(),
                    "a percentage, 0-100",
                ))
            }
        };
        subnets.push(SubnetConfig {
            options: SubnetOptions {
                network,
                prefix,
                router,
                dns,
                domain: s.domain.clone(),
                lease_time: lease,
            },
            first,
            last,
            times: PoolTimes {
                lease,
                ..PoolTimes::default()
            },
            unknown_share,
        });
    }
    if mode == Mode::Full && subnets.is_empty() {
        return Err(bad(
            "dhcp.subnet",
            "",
            "full mode needs at least one [[dhcp.subnet]] with a range",
        ));
    }
    let d = Loaders::default();
    let loaders = Loaders {
        bios: w.loaders.bios.unwrap_or(d.bios),
        efi_x64: w.loaders.efi_x64.unwrap_or(d.efi_x64),
        efi_ia32: w.loaders.efi_ia32,
        efi_arm64: w.loaders.efi_arm64,
    };
    if let Some(u) = &w.http_url {
        if !u.starts_with("http://") || u.len() > 100 {
            return Err(bad(
                "dhcp.http_url",
                u.as_str(),
                "must be an http:// URL of at most 100 characters (iPXE has no HTTPS here)",
            ));
        }
    }
    let d = Limits::default();
    let max_waiting = match w.max_discovered {
        None => d.max_waiting,
        Some(n) if n <= 1_000_000 => n as usize,
        Some(n) => {
            return Err(bad(
                "dhcp.max_discovered",
                n.to_string(),
                "at most 1000000 (0: never record unknown machines)",
            ))
        }
    };
    let per_minute = match w.discover_rate {
        None => d.per_minute,
        Some(n) if (1..=100_000).contains(&n) => n as u32,
        Some(n) => {
            return Err(bad(
                "dhcp.discover_rate",
                n.to_string(),
                "new records per minute, 1-100000",
            ))
        }
    };
    Ok(Some(DhcpConfig {
        mode,
        listen: w
            .listen
            .as_deref()
            .map(|l| ipv4("dhcp.listen", l))
            .transpose()?
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
        port: w.port.unwrap_or(67),
        interface: w.interface,
        server_ip,
        http_url: w.http_url.map(|u| u.trim_end_matches('/').to_string()),
        unknown: w.unknown_machines.unwrap_or(UnknownPolicy::Ignore),
        match_client_id: w.match_client_id.unwrap_or(true),
        admission: Limits {
            max_waiting,
            per_minute,
        },
        loaders,
        subnets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Option<DhcpConfig>, ConfigError> {
        #[derive(Deserialize)]
        struct W {
            dhcp: WireDhcp,
        }
        let w: W = toml::from_str(toml_text).map_err(|e| ConfigError::Parse {
            path: "x".into(),
            message: e.to_string(),
        })?;
        validate(w.dhcp)
    }

    const FULL: &str = r#"
[dhcp]
mode = "full"
server_ip = "198.18.0.1"
unknown_machines = "discover"
[[dhcp.subnet]]
network = "198.18.0.0/24"
range = "198.18.0.100-198.18.0.199"
router = "198.18.0.1"
dns = ["198.18.0.1"]
domain = "lab"
lease_time = "2h"
"#;

    #[test]
    fn off_by_default_and_full_config_validates() {
        assert_eq!(parse("[dhcp]").unwrap(), None);
        let c = parse(FULL).unwrap().unwrap();
        assert_eq!(
            (c.mode, c.port, c.unknown),
            (Mode::Full, 67, UnknownPolicy::Discover)
        );
        let s = &c.subnets[0];
        assert_eq!(
            (s.first, s.last, s.options.prefix),
            (
                "198.18.0.100".parse().unwrap(),
                "198.18.0.199".parse().unwrap(),
                24
            )
        );
        assert_eq!(s.times.lease, Duration::from_secs(7200));
        assert_eq!(c.loaders.efi_x64, "snponly.efi");
        assert_eq!(
            (c.admission, s.unknown_share),
            (Limits::default(), DEFAULT_UNKNOWN_SHARE)
        );
        let tuned = FULL
            .replace(
                "unknown_machines = \"discover\"",
                "unknown_machines = \"discover\"\nmax_discovered = 50\ndiscover_rate = 10",
            )
            .replace(
                "lease_time = \"2h\"",
                "lease_time = \"2h\"\nunknown_share = 0",
            );
        let c = parse(&tuned).unwrap().unwrap();
        assert_eq!((c.admission.max_waiting, c.admission.per_minute), (50, 10));
        assert_eq!(c.subnets[0].unknown_share, 0);
    }

    #[test]
    fn the_example_configs_full_mode_block_shows_the_defaults() {
        // The shipped example keeps DHCP off and shows full mode in comments: uncommented, those
        // lines must parse and say the defaults.
        let text = include_str!("../../provisioner.example.toml");
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# Example for full mode:"))
            .skip(1)
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim_start())
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .collect();
        let c = parse(&format!("[dhcp]\n{}", block.join("\n")))
            .unwrap()
            .unwrap();
        assert_eq!(c.admission, Limits::default());
        assert_eq!(c.subnets[0].unknown_share, DEFAULT_UNKNOWN_SHARE);
        assert_eq!(c.unknown, UnknownPolicy::Ignore);
        assert!(c.match_client_id);
    }

    #[test]
    fn errors_name_key_and_value() {
        let cases = [
            ("[dhcp]\nmode = \"on\"", "dhcp.mode = \"on\""),
            ("[dhcp]\nmode = \"full\"", "dhcp.server_ip"),
            (
                "[dhcp]\nmode = \"full\"\nserver_ip = \"198.18.0.1\"",
                "at least one [[dhcp.subnet]]",
            ),
            (
                &FULL.replace("198.18.0.0/24", "198.18.0.5/24"),
                "did you mean 198.18.0.0/24",
            ),
            (
                &FULL.replace("198.18.0.100-198.18.0.199", "198.18.0.100-198.18.1.10"),
                "dhcp.subnet.range",
            ),
            (
                &FULL.replace("198.18.0.100-198.18.0.199", "198.18.0.199-198.18.0.100"),
                "ascending",
            ),
            (
                &FULL.replace("router = \"198.18.0.1\"", "router = \"gateway\""),
                "dhcp.subnet.router = \"gateway\"",
            ),
            (
                &FULL.replace("lease_time = \"2h\"", "lease_time = \"5s\""),
                "dhcp.subnet.lease_time",
            ),
            (
                &FULL.replace("\"discover\"", "\"maybe\""),
                "unknown variant `maybe`",
            ),
            (
                &FULL.replace("domain", "dommain"),
                "unknown field `dommain`",
            ),
            (
                &FULL.replace("lease_time = \"2h\"", "unknown_share = 101"),
                "dhcp.subnet.unknown_share = \"101\"",
            ),
            (
                &FULL.replace("mode = \"full\"", "mode = \"full\"\ndiscover_rate = 0"),
                "dhcp.discover_rate = \"0\"",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err}");
        }
    }
}
