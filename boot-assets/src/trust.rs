//! The trusted certificates: what an operator enrolled in the machines' UEFI `db`, read from
//! PEM or DER files, against which [`crate::signature`] checks signatures.

use std::path::PathBuf;

use der::{Decode, Encode};
use x509_cert::Certificate;

use crate::{Error, Result};

/// One trusted certificate and the file it came from.
#[derive(Clone, Debug)]
pub struct TrustedCert {
    /// The certificate's subject (RFC 4514 string, e.g. `CN=Lab db`).
    pub subject: String,
    /// The file it was read from.
    pub source: PathBuf,
    pub(crate) cert: Certificate,
    pub(crate) der: Vec<u8>,
}

/// The certificates an operator enrolled in the machines' `db`: what signatures are checked
/// against. Empty: nothing is trusted.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    pub(crate) certs: Vec<TrustedCert>,
    pub(crate) files: Vec<PathBuf>,
}

impl PartialEq for TrustStore {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
            && self.certs.len() == other.certs.len()
            && self
                .certs
                .iter()
                .zip(&other.certs)
                .all(|(a, b)| a.der == b.der)
    }
}

impl TrustStore {
    /// Reads every file in `paths`: PEM (one or more `CERTIFICATE` blocks) or one DER
    /// certificate each.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read; [`Error::Certificates`] naming the file when it
    /// holds no certificate or one that does not parse.
    pub fn load(paths: &[PathBuf]) -> Result<TrustStore> {
        let mut store = TrustStore::default();
        for path in paths {
            let bytes = std::fs::read(path).map_err(Error::io(path))?;
            let bad = |reason: String| Error::Certificates {
                path: path.clone(),
                reason,
            };
            let certs = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                Certificate::load_pem_chain(&bytes)
                    .map_err(|e| bad(format!("not PEM certificates: {e}")))?
            } else {
                vec![Certificate::from_der(&bytes)
                    .map_err(|e| bad(format!("neither PEM nor one DER X.509 certificate: {e}")))?]
            };
            if certs.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
            for cert in certs {
                let der = cert.to_der().map_err(|e| bad(e.to_string()))?;
                store.certs.push(TrustedCert {
                    subject: cert.tbs_certificate.subject.to_string(),
                    source: path.clone(),
                    cert,
                    der,
                });
            }
            store.files.push(path.clone());
        }
        Ok(store)
    }

    /// Whether no certificate is trusted.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The trusted certificates, in file order.
    pub fn certs(&self) -> &[TrustedCert] {
        &self.certs
    }

    /// The files read, as given (for messages: "configured: …").
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}
