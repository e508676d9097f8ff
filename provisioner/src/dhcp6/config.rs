//! The `[dhcp6]` configuration: wire form and validation. Off unless `dhcp6.mode` says
//! `stateful` or `stateless` (a second DHCPv6 server on a site's network is as harmful as a
//! second DHCPv4 one).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use inventory::Mac;
use netboot_proto::boot_decision::UnknownPolicy;
use netboot_proto::dhcp6::core::Mode6;
use serde::Deserialize;

use crate::config_error::ConfigError;

/// `[dhcp6]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireDhcp6 {
    pub mode: Option<String>,
    pub interface: Option<String>,
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub server_address: Option<String>,
    pub http_url: Option<String>,
    pub range: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    pub preferred_lifetime: Option<String>,
    pub valid_lifetime: Option<String>,
    pub unknown_machines: Option<UnknownPolicy>,
    #[serde(default)]
    pub reservation: Vec<WireReservation6>,
}

/// `[[dhcp6.reservation]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReservation6 {
    pub mac: String,
    pub ip: String,
}

/// The validated `[dhcp6]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcp6Config {
    /// Stateful (addresses from `range`) or stateless (boot data only).
    pub mode: Mode6,
    /// The interface to join `ff02::1:2` on and bind to (required: multicast needs one).
    pub interface: String,
    /// Address to bind (default `::`).
    pub listen: Ipv6Addr,
    /// UDP port (default 547; tests use another only with a crafted client).
    pub port: u16,
    /// Our address on the link: the host of the boot URLs.
    pub server_address: Ipv6Addr,
    /// Base of the boot URLs; `None`: `http://[server_address]:<HTTP port>`.
    pub http_url: Option<String>,
    /// First and last address of the dynamic range (stateful only).
    pub range: Option<(Ipv6Addr, Ipv6Addr)>,
    /// DNS servers sent as option 23.
    pub dns: Vec<Ipv6Addr>,
    /// Preferred lifetime (default 30 min).
    pub preferred: Duration,
    /// Valid lifetime, the lease length (default 1 h).
    pub valid: Duration,
    /// Unknown netbooting machines (default `ignore`).
    pub unknown: UnknownPolicy,
    /// Fixed addresses by MAC.
    pub reservations: BTreeMap<Mac, Ipv6Addr>,
}

fn bad(key: &'static str, value: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key,
        value: value.into(),
        why: why.into(),
    }
}

fn ipv6(key: &'static str, v: &str) -> Result<Ipv6Addr, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| bad(key, v, "not an IPv6 address"))
}

fn lifetime(
    key: &'static str,
    v: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s)
            .ok()
            .filter(|d| *d >= Duration::from_secs(60) && d.as_secs() < u32::MAX as u64)
            .ok_or_else(|| bad(key, s, "a duration of at least 60s, e.g. \"1h\"")),
    }
}

/// `None` when DHCPv6 is off (the default).
pub fn validate(w: WireDhcp6) -> Result<Option<Dhcp6Config>, ConfigError> {
    let mode = match w.mode.as_deref().unwrap_or("off") {
        "off" => return Ok(None),
        "stateful" => Mode6::Stateful,
        "stateless" => Mode6::Stateless,
        other => {
            return Err(bad(
                "dhcp6.mode",
                other,
                "expected \"off\", \"stateful\" or \"stateless\"",
            ))
        }
    };
    let interface = w.interface.filter(|i| !i.is_empty()).ok_or_else(|| {
        bad(
            "dhcp6.interface",
            "",
            "required: the link to serve (multicast ff02::1:2 is joined there)",
        )
    })?;
    let server_address = ipv6(
        "dhcp6.server_address",
        w.server_address.as_deref().ok_or_else(|| {
            bad(
                "dhcp6.server_address",
                "",
                "required: our address in the boot URLs",
            )
        })?,
    )?;
    if server_address.is_unspecified() || server_address.is_multicast() {
        return Err(bad(
            "dhcp6.server_address",
            server_address.to_string(),
            "must be a unicast address",
        ));
    }
    let listen = match w.listen.as_deref() {
        Some(v) => ipv6("dhcp6.listen", v)?,
        None => Ipv6Addr::UNSPECIFIED,
    };
    let range = match (&w.range, mode) {
        (None, Mode6::Stateful) => {
            return Err(bad(
                "dhcp6.range",
                "",
                "required in stateful mode, e.g. \"2001:2::1:0-2001:2::1:ff\"",
            ))
        }
        (Some(r), Mode6::Stateless) => {
            return Err(bad(
                "dhcp6.range",
                r,
                "stateless mode assigns no addresses; remove it",
            ))
        }
        (None, _) => None,
        (Some(r), _) => {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| bad("dhcp6.range", r, "expected FIRST-LAST"))?;
            let (a, b) = (ipv6("dhcp6.range", a)?, ipv6("dhcp6.range", b)?);
            if u128::from(a) > u128::from(b) {
                return Err(bad("dhcp6.range", r, "first address after the last"));
            }
            Some((a, b))
        }
    };
    let dns = w
        .dns
        .iter()
        .map(|d| ipv6("dhcp6.dns", d))
        .collect::<Result<Vec<_>, _>>()?;
    let preferred = lifetime(
        "dhcp6.preferred_lifetime",
        w.preferred_lifetime.as_deref(),
        Duration::from_secs(1800),
    )?;
    let valid = lifetime(
        "dhcp6.valid_lifetime",
        w.valid_lifetime.as_deref(),
        Duration::from_secs(3600),
    )?;
    if preferred > valid {
        return Err(bad(
            "dhcp6.preferred_lifetime",
            w.preferred_lifetime.unwrap_or_default(),
            "longer than dhcp6.valid_lifetime (RFC 8415 §21.6)",
        ));
    }
    let mut reservations = BTreeMap::new();
    for r in w.reservation {
        let mac: Mac = r
            .mac
            .parse()
            .map_err(|e: inventory::Error| bad("dhcp6.reservation.mac", &r.mac, e.to_string()))?;
        let ip = ipv6("dhcp6.reservation.ip", &r.ip)?;
        if ip == server_address {
            return Err(bad(
                "dhcp6.reservation.ip",
                &r.ip,
                "is dhcp6.server_address, the server's own address; reserve another one",
            ));
        }
        if reservations.values().any(|v| *v == ip) {
            return Err(bad("dhcp6.reservation.ip", &r.ip, "reserved twice"));
        }
        if reservations.insert(mac, ip).is_some() {
            return Err(bad("dhcp6.reservation.mac", &r.mac, "reserved twice"));
        }
    }
    if let Some(u) = &w.http_url {
        if !u.starts_with("http://") && !u.starts_with("https://") {
            return Err(bad("dhcp6.http_url", u, "expected http://[ADDR]:PORT"));
        }
        // An IPv6 literal must be in brackets (RFC 3986 §3.2.2): `http://2001:2::1:8080` would
        // reach every client as a URL no firmware can use.
        let host = u.split_once("://").map_or("", |(_, r)| r);
        let host = host.split(['/', '?', '#']).next().unwrap_or_default();
        if !host.starts_with('[') && host.matches(':').count() > 1 {
            return Err(bad(
                "dhcp6.http_url",
                u,
                "an IPv6 address in a URL goes in brackets: http://[2001:db8::1]:8080",
            ));
        }
    }
    Ok(Some(Dhcp6Config {
        mode,
        interface,
        listen,
        port: w.port.unwrap_or(547),
        server_address,
        http_url: w.http_url.map(|u| u.trim_end_matches('/').to_string()),
        range,
        dns,
        preferred,
        valid,
        unknown: w.unknown_machines.unwrap_or(UnknownPolicy::Ignore),
        reservations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Option<Dhcp6Config>, ConfigError> {
        validate(toml::from_str(toml_text).expect("wire form"))
    }

    #[test]
    fn off_by_default_and_a_stateful_example_validates() {
        assert_eq!(parse("").unwrap(), None);
        let c = parse(
            r#"
mode = "stateful"
interface = "br0"
server_address = "2001:2::1"
range = "2001:2::1:0-2001:2::1:ff"
dns = ["2001:2::1"]
valid_lifetime = "2h"
[[reservation]]
mac = "52:54:00:aa:00:02"
ip = "2001:2::1:50"
"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.mode, Mode6::Stateful);
        assert_eq!(c.port, 547);
        assert_eq!(c.valid, Duration::from_secs(7200));
        assert_eq!(c.reservations.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("mode = \"full\"", "dhcp6.mode"),
            ("mode = \"stateful\"\nserver_address = \"2001:2::1\"", "dhcp6.interface"),
            ("mode = \"stateful\"\ninterface = \"br0\"\nserver_address = \"2001:2::1\"", "dhcp6.range"),
            ("mode = \"stateless\"\ninterface = \"br0\"\nserver_address = \"198.18.0.1\"", "dhcp6.server_address"),
            ("mode = \"stateless\"\ninterface = \"br0\"\nserver_address = \"2001:2::1\"\nrange = \"2001:2::1-2001:2::9\"", "dhcp6.range"),
            ("mode = \"stateless\"\ninterface = \"br0\"\nserver_address = \"2001:2::1\"\nhttp_url = \"http://2001:2::1:8080\"", "brackets"),
            ("mode = \"stateful\"\ninterface = \"br0\"\nserver_address = \"2001:2::1\"\nrange = \"2001:2::0-2001:2::9\"\n[[reservation]]\nmac = \"52:54:00:aa:00:02\"\nip = \"2001:2::1\"", "server's own address"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(
            toml::from_str::<WireDhcp6>("bogus = 1").is_err(),
            "unknown keys refused"
        );
    }
}
