//! What the CLI trusts when `--url` is https:// (issue 14, item 4):
//!
//! 1. `--ca-fingerprint sha256:HEX` (`PROVISIONER_CA_FINGERPRINT`): the server's certificate,
//!    or a CA certificate it presents in its chain, must have that SHA-256 fingerprint (as
//!    `provisioner serve` logs it). A pinned server certificate is trusted as it is; a pinned CA
//!    must have issued the server certificate, for the host in the URL (webpki). Nothing else is
//!    trusted. A mismatch is an error naming the fingerprints the server presented.
//! 2. `--ca-file PATH` (`PROVISIONER_CA`): that CA (PEM) and no other.
//! 3. On the server's host, `<data-dir>/tls/ca.pem` when it exists (as the operator token is
//!    read from the data directory).
//! 4. Otherwise the system's roots (reqwest's platform verifier).
//!
//! Crypto is ring's (no aws-lc C build), installed as the process default by
//! [`crate::tls_material::install_crypto_provider`].

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::tls_material::fingerprint;

/// A rustls client configuration for `--ca-fingerprint` or a CA file, or `None` for the system
/// roots.
pub fn client_config(
    fingerprint_pin: Option<&str>,
    ca_file: Option<&Path>,
    data_dir_ca: &Path,
) -> anyhow::Result<Option<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    if let Some(pin) = fingerprint_pin {
        let pin = parse_pin(pin)?;
        let verifier = Arc::new(Pinned { pin, provider });
        return Ok(Some(
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
        ));
    }
    let ca = match ca_file {
        Some(path) => path,
        None if data_dir_ca.is_file() => data_dir_ca,
        None => return Ok(None),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("--ca-file {}: {e}", ca.display()))?;
    if certs.is_empty() {
        bail!("--ca-file {}: no PEM certificate in it", ca.display());
    }
    for c in certs {
        roots
            .add(c)
            .with_context(|| format!("--ca-file {}", ca.display()))?;
    }
    Ok(Some(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// `sha256:HEX` (or bare hex; colons allowed) → `sha256:` + lowercase hex.
fn parse_pin(pin: &str) -> anyhow::Result<String> {
    let hex: String = pin
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(pin.trim())
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--ca-fingerprint {pin:?}: expected sha256: and 64 hex digits");
    }
    Ok(format!("sha256:{hex}"))
}

/// Trusts exactly the certificate, or the CA, with the pinned fingerprint.
#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let leaf = fingerprint(end_entity);
        if leaf == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == self.pin) {
            // The CA's certificate is public: the server's own certificate must be one it
            // issued, for this host, or anyone could present it.
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone().into_owned())?;
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                self.provider.clone(),
            )
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
            return webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let chain: Vec<String> = intermediates.iter().map(|c| fingerprint(c)).collect();
        Err(rustls::Error::General(format!(
            "the server's certificate does not match --ca-fingerprint {}: the server presented \
             certificate {leaf}{}",
            self.pin,
            if chain.is_empty() {
                String::new()
            } else {
                format!(" issued with {}", chain.join(", "))
            }
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An error and its causes on one line (reqwest's own message hides the TLS reason).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::parse_pin;

    #[test]
    fn pins_are_normalised_and_checked() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_pin(&format!("sha256:{hex}")).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert!(parse_pin("sha256:abcd").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }
}
