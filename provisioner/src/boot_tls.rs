//! The boot TLS listener: UEFI HTTPS boot for firmware whose TLS rustls cannot serve (issue 14,
//! item 5). `[boot_tls]` in the config; off unless `boot_tls.listen` is set.
//!
//! OVMF (EDK2's TlsLib, OpenSSL 1.1 built without elliptic curves) offers only DHE-RSA and
//! static-RSA key exchange with AES-GCM and AES-CBC-SHA256; rustls serves TLS 1.2 only with
//! ECDHE. So this listener uses OpenSSL (the `openssl` crate over the system's libssl, and
//! `tokio-openssl`) with exactly the suites in [`CIPHERS`], TLS 1.2 only, and otherwise the
//! very same HTTP driver ([`crate::http_server::run_with`], [`Transport::OpenSsl`]), router and
//! limits as the plain listener; a handshake not done within `boot_tls.handshake_timeout` is
//! dropped.
//!
//! The certificate is the server's TLS material ([`crate::tls_material::TlsMaterial`]: the
//! self-issued RSA-2048 one in `<data_dir>/tls`, or `tls.cert`/`tls.key`), or the operator's
//! `boot_tls.cert`/`boot_tls.key` (an RSA key: OVMF cannot verify ECDSA); the firmware
//! trusts the CA that signed them through fw_cfg `etc/edk2/https/cacerts` (an EFI signature
//! list, `cert-to-efi-sig-list` from efitools) and checks that the certificate names the host
//! of the boot URL, so the certificate needs a SAN for the address in that URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::{SslContext, SslMethod, SslOptions, SslVersion};
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::config_error::ConfigError;
use crate::http_io::SendStall;
use crate::http_server::Transport;

/// The TLS 1.2 suites served, in the server's order of preference (OpenSSL names; IANA names
/// in the comment). Forward-secret suites first: ECDHE for clients that have it (curl,
/// browsers), then DHE-RSA (what OVMF picks when offered), then static RSA
/// (`TLS_RSA_WITH_AES_{256,128}_{GCM,CBC}_SHA{384,256}`), which OVMF also offers and which
/// is what other UEFI TLS stacks may be limited to. No NULL, EXPORT, RC4, 3DES, SHA-1 MACs or
/// CAMELLIA/ARIA.
pub const CIPHERS: &str = concat!(
    // TLS_ECDHE_RSA_WITH_AES_{256_GCM_SHA384,128_GCM_SHA256}
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:",
    // TLS_DHE_RSA_WITH_AES_{256_GCM_SHA384,128_GCM_SHA256,256_CBC_SHA256,128_CBC_SHA256}
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:",
    "DHE-RSA-AES256-SHA256:DHE-RSA-AES128-SHA256:",
    // TLS_RSA_WITH_AES_{256_GCM_SHA384,128_GCM_SHA256,256_CBC_SHA256,128_CBC_SHA256}
    "AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-SHA256:AES128-SHA256",
);

/// The finite-field group of the DHE suites: RFC 7919 `ffdhe2048` (as `openssl genpkey
/// -genparam -algorithm DH -pkeyopt group:ffdhe2048` prints it).
const FFDHE2048: &[u8] = b"-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// Default of `boot_tls.handshake_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the boot TLS listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootTlsError {
    /// The material holds no usable PEM of that kind (`what`: "certificate chain" or
    /// "private key").
    #[error("boot TLS: not a PEM {what}: {why}")]
    Pem { what: &'static str, why: String },
    /// The key is not the one of the first certificate of the chain.
    #[error("boot TLS: the private key does not belong to the server certificate")]
    KeyMismatch,
    /// OpenSSL refused a setting (the cipher list, the protocol version).
    #[error("setting up OpenSSL: {0}")]
    Setup(String),
    /// The listen address could not be bound.
    #[error("binding the boot TLS listener to {addr} (boot_tls.listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What a boot TLS handshake agreed on; in the extensions of every request that came over
/// it, so handlers can say how a file was served (a `seen` event names the suite, a `transfer`
/// event says protocol `https`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsSession {
    /// e.g. `TLSv1.2` (OpenSSL's name).
    pub version: &'static str,
    /// e.g. `AES256-SHA256` (OpenSSL's name).
    pub cipher: &'static str,
}

/// `[boot_tls]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireBootTls {
    /// `IP:PORT` of the boot TLS listener; unset: no listener, HTTP boot stays on http://.
    pub listen: Option<String>,
    /// PEM certificate chain, the server's certificate first (default: the `[tls]` material).
    pub cert: Option<String>,
    /// PEM private key (RSA) of that certificate.
    pub key: Option<String>,
    /// Base URL handed to UEFI HTTP-boot firmware, `https://HOST[:PORT]`.
    pub public_url: Option<String>,
    /// Longest a connection may take to finish its TLS handshake.
    pub handshake_timeout: Option<String>,
}

/// The validated `[boot_tls]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootTlsConfig {
    /// Where the listener binds (`boot_tls.listen`).
    pub listen: SocketAddr,
    /// The operator's certificate chain and key PEM files (`boot_tls.cert`, `boot_tls.key`);
    /// `None`: the server's TLS material (`tls.cert`/`tls.key`, else the self-issued one).
    pub files: Option<(PathBuf, PathBuf)>,
    /// `boot_tls.public_url` without a trailing slash; `None`: `https://<dhcp.server_ip>:<port>`.
    pub public_url: Option<String>,
    /// `boot_tls.handshake_timeout`: a stalled handshake frees its connection slot after this.
    pub handshake_timeout: Duration,
}

impl BootTlsConfig {
    /// The base of the boot URL HTTP-boot firmware is given: `boot_tls.public_url`, else
    /// `https://<server_ip>:<port>` (the DHCP server's address and the bound port).
    pub fn base_url(&self, server_ip: &str, port: u16) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("https://{server_ip}:{port}"))
    }
}

/// Validates `[boot_tls]`: `None` when `listen` is unset (and then nothing else may be set).
pub fn validate(w: WireBootTls) -> Result<Option<BootTlsConfig>, ConfigError> {
    let bad = |key: &'static str, value: &str, why: &str| ConfigError::Value {
        key,
        value: value.into(),
        why: why.into(),
    };
    let Some(listen) = w.listen else {
        if w.cert.is_some()
            || w.key.is_some()
            || w.public_url.is_some()
            || w.handshake_timeout.is_some()
        {
            return Err(bad(
                "boot_tls.listen",
                "",
                "must be set for the other boot_tls keys to mean anything (e.g. \"0.0.0.0:8443\")",
            ));
        }
        return Ok(None);
    };
    let listen = listen.parse().map_err(|e: std::net::AddrParseError| {
        bad(
            "boot_tls.listen",
            &listen,
            &format!("{e} (expected IP:PORT)"),
        )
    })?;
    let path = |v: Option<String>| v.filter(|p| !p.is_empty()).map(PathBuf::from);
    let files = match (path(w.cert), path(w.key)) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (c, _) => {
            let (key, other) = match c {
                Some(_) => ("boot_tls.key", "boot_tls.cert"),
                None => ("boot_tls.cert", "boot_tls.key"),
            };
            return Err(bad(
                key,
                "",
                &format!("must be set with {other} (or neither: the [tls] material is used)"),
            ));
        }
    };
    let public_url = match w.public_url {
        None => None,
        Some(u) => {
            let rest = u.strip_prefix("https://").unwrap_or_default();
            let rest = rest.trim_end_matches('/');
            if rest.is_empty()
                || !rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
            {
                return Err(bad(
                    "boot_tls.public_url",
                    &u,
                    "must be https://HOST[:PORT] (letters, digits and - . _ : [ ] only, no path)",
                ));
            }
            Some(u.trim_end_matches('/').to_string())
        }
    };
    let handshake_timeout = match w.handshake_timeout {
        None => DEFAULT_HANDSHAKE_TIMEOUT,
        Some(v) => humantime::parse_duration(&v)
            .ok()
            .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(300)).contains(d))
            .ok_or_else(|| {
                bad(
                    "boot_tls.handshake_timeout",
                    &v,
                    "must be a duration between 1s and 5m",
                )
            })?,
    };
    Ok(Some(BootTlsConfig {
        listen,
        files,
        public_url,
        handshake_timeout,
    }))
}

/// The OpenSSL server context of the boot listener: TLS 1.2, [`CIPHERS`] in the server's
/// order, DHE over [`FFDHE2048`], no renegotiation or compression, from a PEM certificate chain
/// (the server's certificate first, then intermediates) and a PEM private key — the shape of
/// [`crate::tls_material::TlsMaterial`]'s `chain_pem` and `key_pem`.
pub fn context(chain: &str, key: &str) -> Result<SslContext, BootTlsError> {
    let pem = |what, e: &dyn std::fmt::Display| BootTlsError::Pem {
        what,
        why: e.to_string(),
    };
    let setup = |e: openssl::error::ErrorStack| BootTlsError::Setup(e.to_string());
    let mut certs = openssl::x509::X509::stack_from_pem(chain.as_bytes())
        .map_err(|e| pem("certificate chain", &e))?
        .into_iter();
    let leaf = certs
        .next()
        .ok_or_else(|| pem("certificate chain", &"no certificate in it"))?;
    let pkey = openssl::pkey::PKey::private_key_from_pem(key.as_bytes())
        .map_err(|e| pem("private key", &e))?;
    if !leaf.public_key().is_ok_and(|p| p.public_eq(&pkey)) {
        return Err(BootTlsError::KeyMismatch);
    }
    let dh = openssl::dh::Dh::params_from_pem(FFDHE2048).map_err(setup)?;
    let mut b = SslContext::builder(SslMethod::tls_server()).map_err(setup)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    b.set_max_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    b.set_cipher_list(CIPHERS).map_err(setup)?;
    b.set_options(
        SslOptions::CIPHER_SERVER_PREFERENCE
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_COMPRESSION,
    );
    b.set_tmp_dh(&dh).map_err(setup)?;
    b.set_certificate(&leaf).map_err(setup)?;
    for c in certs {
        b.add_extra_chain_cert(c).map_err(setup)?;
    }
    b.set_private_key(&pkey).map_err(setup)?;
    b.check_private_key()
        .map_err(|_| BootTlsError::KeyMismatch)?;
    Ok(b.build())
}

/// The server side of one boot TLS handshake on an accepted connection: the stream HTTP is
/// then spoken on, and what was agreed.
pub async fn accept(
    context: &SslContext,
    tcp: SendStall<TcpStream>,
) -> std::io::Result<(tokio_openssl::SslStream<SendStall<TcpStream>>, TlsSession)> {
    let ssl = openssl::ssl::Ssl::new(context).map_err(std::io::Error::other)?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
    Pin::new(&mut stream)
        .accept()
        .await
        .map_err(std::io::Error::other)?;
    let ssl = stream.ssl();
    let session = TlsSession {
        version: ssl.version_str(),
        cipher: ssl.current_cipher().map_or("?", |c| c.name()),
    };
    Ok((stream, session))
}

/// Binds `cfg.listen` and serves `router` over OpenSSL ([`context`]) under `limits` until
/// `shutdown` is cancelled, in the background. Returns the bound address.
pub fn start(
    cfg: &BootTlsConfig,
    context: SslContext,
    router: axum::Router,
    limits: crate::http_server::HttpLimits,
    drain: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr, BootTlsError> {
    let bind = |source| BootTlsError::Bind {
        addr: cfg.listen,
        source,
    };
    // The same socket options as the plain listener (OVMF's 5 s I/O timeout: TCP_RTO_MAX).
    let listener = crate::sockets::bind_http(cfg.listen).map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let transport = Transport::OpenSsl {
        context,
        handshake_timeout: cfg.handshake_timeout,
    };
    tokio::spawn(async move {
        let stopped = shutdown.cancelled_owned();
        let served =
            crate::http_server::run_with(listener, transport, router, limits, drain, stopped);
        if let Err(e) = served.await {
            tracing::error!(error = %e, "boot TLS listener failed");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<BootTlsConfig>, ConfigError> {
        validate(toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "x".into(),
            message: e.to_string(),
        })?)
    }

    #[test]
    fn off_unless_listen_is_set() {
        assert_eq!(parse("").unwrap(), None);
        let err = parse("cert = \"a.pem\"").unwrap_err().to_string();
        assert!(err.contains("boot_tls.listen"), "{err}");
    }

    #[test]
    fn a_full_section_validates() {
        let c = parse(
            "listen = \"0.0.0.0:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             public_url = \"https://boot.example:8443/\"\nhandshake_timeout = \"5s\"",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.base_url("198.18.0.1", 8443), "https://boot.example:8443");
        let c = BootTlsConfig {
            public_url: None,
            ..c
        };
        assert_eq!(c.base_url("198.18.0.1", 9443), "https://198.18.0.1:9443");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("listen = \"x\"", "boot_tls.listen"),
            ("listen = \"127.0.0.1:0\"\nkey = \"k\"", "boot_tls.cert"),
            ("listen = \"127.0.0.1:0\"\ncert = \"c\"", "boot_tls.key"),
            ("handshake_timeout = \"5s\"", "boot_tls.listen"),
            (
                "listen = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\npublic_url = \"http://a\"",
                "boot_tls.public_url",
            ),
            (
                "listen = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\nhandshake_timeout = \"1h\"",
                "boot_tls.handshake_timeout",
            ),
            ("lisen = \"127.0.0.1:0\"", "unknown field"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn material_that_is_not_pem_is_refused() {
        let err = context("nope", "nope").err().unwrap().to_string();
        assert!(
            err.starts_with("boot TLS: not a PEM certificate chain"),
            "{err}"
        );
    }

    #[test]
    fn every_named_suite_exists_and_none_is_weak() {
        // OpenSSL skips unknown names in a list silently: set each one alone.
        let names: Vec<&str> = CIPHERS.split(':').collect();
        assert_eq!(names.len(), 10);
        for n in names {
            let mut ctx = SslContext::builder(SslMethod::tls_server()).unwrap();
            ctx.set_cipher_list(n)
                .unwrap_or_else(|e| panic!("{n} unknown to OpenSSL: {e}"));
            for weak in ["NULL", "EXP", "RC4", "DES", "MD5", "CAMELLIA", "ARIA"] {
                assert!(!n.contains(weak), "{n}");
            }
        }
    }
}
