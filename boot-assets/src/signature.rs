//! Authenticode signature verification: does the image carry a signature that a UEFI `db`
//! holding the operator's certificates would accept?
//!
//! A signed PE image ends with an attribute certificate table (PE/COFF spec, "The Attribute
//! Certificate Table"): `WIN_CERTIFICATE` entries, of which type 2 (`WIN_CERT_TYPE_PKCS_SIGNED_DATA`)
//! holds a PKCS#7 `SignedData` (RFC 2315 / RFC 5652) whose content is an Authenticode
//! `SpcIndirectDataContent` carrying the image's Authenticode digest ([`crate::authenticode`]).
//! Checked, in the order UEFI's image verification (EDK2 `DxeImageVerificationLib` with
//! `Pkcs7Verify`) depends on them:
//! 1. the `SpcIndirectDataContent` digest (SHA-256) equals the digest we compute over the image
//!    → else [`Verdict::DigestMismatch`];
//! 2. the signer's `messageDigest` signed attribute equals the SHA-256 of that content, and the
//!    RSA PKCS#1 v1.5 signature over the signed attributes verifies with the key of the signer
//!    certificate (found in the `SignedData` by issuer and serial number)
//!    → else [`Verdict::BadSignature`];
//! 3. the signer certificate is one of the trusted (`db`) certificates, or is issued by one —
//!    directly or through intermediate certificates carried in the `SignedData`, each signature
//!    verified → [`Verdict::Trusted`], else [`Verdict::Untrusted`].
//!
//! Not checked, as UEFI does not either: certificate validity periods (firmware has no trusted
//! clock), key usage and extended key usage. Not checked although UEFI does: `dbx` (revoked
//! certificates and image hashes), `db` entries that are image hashes rather than certificates,
//! and timestamp countersignatures. Only SHA-256 image digests and RSA signer keys are supported
//! (what `sbsign` and the UEFI CA produce); anything else is a [`Verdict::BadSignature`] naming it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use crate::pe::PeImage;
pub use crate::trust::{TrustStore, TrustedCert};
use crate::{Error, Result};

/// The largest certificate table read (bytes); real ones are a few KiB.
pub const MAX_CERT_TABLE: u64 = 1 << 20;
/// The longest certificate chain followed from the signer to a trusted certificate.
const MAX_CHAIN: usize = 8;

const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_SPC_INDIRECT_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 2;

/// Authenticode's `SpcIndirectDataContent` (only the digest is used).
#[derive(Sequence)]
struct SpcIndirectDataContent {
    data: Any,
    message_digest: DigestInfo,
}

/// `DigestInfo` (RFC 8017 §9.2).
#[derive(Sequence)]
struct DigestInfo {
    algorithm: AlgorithmIdentifierOwned,
    digest: OctetString,
}

/// What an image's signature is worth against a [`TrustStore`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// No certificate table: firmware enforcing Secure Boot refuses it.
    Unsigned,
    /// Signed, intact, and the signer chains to a trusted certificate.
    Trusted {
        /// The signer certificate's subject.
        signer: String,
        /// The signer certificate's issuer.
        issuer: String,
        /// The subject of the trusted certificate it chains to.
        by: String,
        /// The file that certificate came from.
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        by_file: PathBuf,
    },
    /// Signed and intact, but no trusted certificate is the signer or issued it.
    Untrusted {
        /// The signer certificate's subject.
        signer: String,
        /// The signer certificate's issuer.
        issuer: String,
        /// Why not (no trusted certificate matches, none configured).
        reason: String,
    },
    /// The signature cannot be verified: malformed, unsupported algorithm, or it does not
    /// verify with the signer's key.
    BadSignature {
        /// What is wrong.
        reason: String,
    },
    /// The signature is over another image: the file changed after it was signed.
    DigestMismatch {
        /// The Authenticode SHA-256 the signature covers (hex).
        signed: String,
        /// The Authenticode SHA-256 of the image as it is (hex).
        actual: String,
    },
}

impl Verdict {
    /// Whether firmware trusting these certificates would run the image.
    pub fn is_trusted(&self) -> bool {
        matches!(self, Verdict::Trusted { .. })
    }

    /// The verdict's name (`unsigned`, `trusted`, `untrusted`, `bad_signature`,
    /// `digest_mismatch`), as in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Unsigned => "unsigned",
            Verdict::Trusted { .. } => "trusted",
            Verdict::Untrusted { .. } => "untrusted",
            Verdict::BadSignature { .. } => "bad_signature",
            Verdict::DigestMismatch { .. } => "digest_mismatch",
        }
    }

    /// One line for people, completing "the image …" (e.g. "is signed by CN=x, trusted by
    /// CN=db (db.pem)").
    pub fn describe(&self) -> String {
        match self {
            Verdict::Unsigned => "is not signed".into(),
            Verdict::Trusted {
                signer,
                issuer,
                by,
                by_file,
            } => format!(
                "is signed by {signer} (issuer {issuer}), trusted by db certificate {by} ({})",
                by_file.display()
            ),
            Verdict::Untrusted { signer, reason, .. } => {
                format!("is signed by {signer}, which {reason}")
            }
            Verdict::BadSignature { reason } => format!("has a signature that does not verify: {reason}"),
            Verdict::DigestMismatch { signed, actual } => format!(
                "was changed after it was signed: the signature covers Authenticode digest sha256:{signed}, the image is sha256:{actual}"
            ),
        }
    }
}

/// Verifies the image at `path` (reads its headers and computes its Authenticode digest).
///
/// # Errors
/// As [`PeImage::read`] and [`crate::authenticode::sha256`]; a malformed signature is a
/// [`Verdict::BadSignature`], not an error.
pub fn verify(path: &Path, trust: &TrustStore) -> Result<Verdict> {
    let image = PeImage::read(path)?;
    let digest = crate::authenticode::sha256(path, &image)?;
    verify_image(path, &image, &digest, trust)
}

/// Verifies the image at `path` whose headers are `image` and whose Authenticode SHA-256 is
/// `authenticode_hex`. With several PKCS#7 signatures, the first trusted one wins (as UEFI
/// accepts an image any `db` entry vouches for); otherwise the first one's verdict.
///
/// # Errors
/// [`Error::Io`] when the certificate table cannot be read.
pub fn verify_image(
    path: &Path,
    image: &PeImage,
    authenticode_hex: &str,
    trust: &TrustStore,
) -> Result<Verdict> {
    let Some((offset, len)) = image.cert_table else {
        return Ok(Verdict::Unsigned);
    };
    if len > MAX_CERT_TABLE {
        return Ok(bad(format!(
            "certificate table of {len} bytes, more than the {MAX_CERT_TABLE} accepted"
        )));
    }
    let mut table = vec![0u8; len as usize];
    let mut f = File::open(path).map_err(Error::io(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(Error::io(path))?;
    f.read_exact(&mut table).map_err(Error::io(path))?;
    let actual = hex::decode(authenticode_hex).unwrap_or_default();
    let entries = match pkcs7_entries(&table) {
        Ok(e) => e,
        Err(reason) => return Ok(bad(reason)),
    };
    let mut first = None;
    for der in entries {
        let v = verify_pkcs7(der, &actual, trust);
        if v.is_trusted() {
            return Ok(v);
        }
        first.get_or_insert(v);
    }
    Ok(first.unwrap_or_else(|| bad("no PKCS#7 signature in the certificate table".into())))
}

fn bad(reason: String) -> Verdict {
    Verdict::BadSignature { reason }
}

/// The PKCS#7 blobs of the `WIN_CERTIFICATE` entries (each 8-byte aligned).
fn pkcs7_entries(table: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= table.len() {
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let length = le32(&table[pos..]) as usize;
        let kind = u16::from_le_bytes([table[pos + 6], table[pos + 7]]);
        if length < 8 || pos + length > table.len() {
            return Err(format!(
                "WIN_CERTIFICATE at {pos} claims {length} bytes; the table has {}",
                table.len()
            ));
        }
        if kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA {
            out.push(&table[pos + 8..pos + length]);
        }
        pos += length.div_ceil(8) * 8;
    }
    Ok(out)
}

/// Verifies one PKCS#7 `SignedData` against the image digest `actual` and `trust`.
fn verify_pkcs7(der_bytes: &[u8], actual: &[u8], trust: &TrustStore) -> Verdict {
    match check_pkcs7(der_bytes, actual) {
        Ok((signer, certs)) => trust_verdict(&signer, &certs, trust),
        Err(v) => v,
    }
}

/// Steps 1 and 2: the signer certificate and the `SignedData`'s certificates, or the verdict.
fn check_pkcs7(
    der_bytes: &[u8],
    actual: &[u8],
) -> Result<(Certificate, Vec<Certificate>), Verdict> {
    let asn1 = |what: &str, e: der::Error| bad(format!("{what}: {e}"));
    // Padding may follow the DER value: decode one value, ignore the rest.
    let mut reader = der::SliceReader::new(der_bytes).map_err(|e| asn1("PKCS#7", e))?;
    let info = ContentInfo::decode(&mut reader).map_err(|e| asn1("PKCS#7 ContentInfo", e))?;
    if info.content_type != OID_SIGNED_DATA {
        return Err(bad(format!(
            "PKCS#7 content type {} is not signedData",
            info.content_type
        )));
    }
    let sd: SignedData = info
        .content
        .decode_as()
        .map_err(|e| asn1("PKCS#7 SignedData", e))?;
    if sd.encap_content_info.econtent_type != OID_SPC_INDIRECT_DATA {
        return Err(bad(format!(
            "signed content type {} is not Authenticode's SpcIndirectDataContent",
            sd.encap_content_info.econtent_type
        )));
    }
    let content = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| bad("the SignedData carries no content".into()))?;
    let spc: SpcIndirectDataContent = content
        .decode_as()
        .map_err(|e| asn1("SpcIndirectDataContent", e))?;
    let alg = &spc.message_digest.algorithm.oid;
    if *alg != OID_SHA256 {
        return Err(bad(format!("image digest algorithm {alg} is not SHA-256")));
    }
    let signed = spc.message_digest.digest.as_bytes();
    if signed != actual {
        return Err(Verdict::DigestMismatch {
            signed: hex::encode(signed),
            actual: hex::encode(actual),
        });
    }
    let certs: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let signer_info = match sd.signer_infos.0.as_slice() {
        [one] => one,
        [] => return Err(bad("no signer".into())),
        more => return Err(bad(format!("{} signers; Authenticode has one", more.len()))),
    };
    let signer = signer_cert(signer_info, &certs)?;
    // The signed attributes cover the content's value (the SEQUENCE's contents, without its
    // tag and length), by their messageDigest; the signature covers them (as a DER SET OF).
    let signed_bytes = match &signer_info.signed_attrs {
        Some(attrs) => {
            if signer_info.digest_alg.oid != OID_SHA256 {
                return Err(bad(format!(
                    "signer digest algorithm {} is not SHA-256",
                    signer_info.digest_alg.oid
                )));
            }
            let md = attrs
                .iter()
                .find(|a| a.oid == OID_MESSAGE_DIGEST)
                .and_then(|a| a.values.iter().next())
                .and_then(|v| v.decode_as::<OctetString>().ok())
                .ok_or_else(|| bad("no messageDigest signed attribute".into()))?;
            if md.as_bytes() != Sha256::digest(content.value()).as_slice() {
                return Err(bad(
                    "the messageDigest attribute does not match the signed content".into(),
                ));
            }
            attrs.to_der().map_err(|e| asn1("signed attributes", e))?
        }
        None => content.value().to_vec(),
    };
    let alg = &signer_info.signature_algorithm.oid;
    if *alg != OID_RSA && *alg != OID_SHA256_RSA {
        return Err(bad(format!(
            "signature algorithm {alg} is not RSA with SHA-256"
        )));
    }
    rsa_verify(
        &signer,
        &OID_SHA256_RSA,
        &signed_bytes,
        signer_info.signature.as_bytes(),
    )
    .map_err(|e| {
        bad(format!(
            "the signature does not verify with the key of the signer certificate {}: {e}",
            signer.tbs_certificate.subject
        ))
    })?;
    Ok((signer, certs))
}

/// The certificate the signer info names (by issuer and serial number).
fn signer_cert(si: &SignerInfo, certs: &[Certificate]) -> Result<Certificate, Verdict> {
    let SignerIdentifier::IssuerAndSerialNumber(id) = &si.sid else {
        return Err(bad(
            "signer named by subject key identifier; Authenticode names it by issuer and serial"
                .into(),
        ));
    };
    certs
        .iter()
        .find(|c| {
            c.tbs_certificate.issuer == id.issuer
                && c.tbs_certificate.serial_number == id.serial_number
        })
        .cloned()
        .ok_or_else(|| {
            bad(format!(
                "the signer certificate (issuer {}) is not in the signature",
                id.issuer
            ))
        })
}

/// Verifies RSA PKCS#1 v1.5 `sig` over `data` with `key_of`'s public key, the hash chosen by
/// `alg` (sha256/384/512WithRSAEncryption).
fn rsa_verify(
    key_of: &Certificate,
    alg: &ObjectIdentifier,
    data: &[u8],
    sig: &[u8],
) -> std::result::Result<(), String> {
    let spki = key_of
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = PublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA key ({e})"))?;
    let result = match *alg {
        OID_SHA256_RSA => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data), sig),
        OID_SHA384_RSA => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(data), sig),
        OID_SHA512_RSA => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(data), sig),
        other => return Err(format!("algorithm {other} is not RSA with SHA-2")),
    };
    result.map_err(|e| e.to_string())
}

/// Whether `issuer`'s key made `cert`'s signature.
fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    cert.tbs_certificate.issuer == issuer.tbs_certificate.subject
        && cert.tbs_certificate.to_der().is_ok_and(|tbs| {
            rsa_verify(
                issuer,
                &cert.signature_algorithm.oid,
                &tbs,
                cert.signature.raw_bytes(),
            )
            .is_ok()
        })
}

/// Step 3: follows issuers from `signer` (through `chain`, the SignedData's certificates) to a
/// trusted certificate.
fn trust_verdict(signer: &Certificate, chain: &[Certificate], trust: &TrustStore) -> Verdict {
    let name = |c: &Certificate| c.tbs_certificate.subject.to_string();
    let (signer_name, issuer) = (name(signer), signer.tbs_certificate.issuer.to_string());
    let untrusted = |reason: String| Verdict::Untrusted {
        signer: signer_name.clone(),
        issuer: issuer.clone(),
        reason,
    };
    if trust.is_empty() {
        return untrusted("cannot be trusted: no db certificates are configured".into());
    }
    let mut cur = signer.clone();
    for _ in 0..MAX_CHAIN {
        let der = cur.to_der().unwrap_or_default();
        let anchor = trust
            .certs
            .iter()
            .find(|t| t.der == der || issued_by(&cur, &t.cert));
        if let Some(t) = anchor {
            return Verdict::Trusted {
                signer: signer_name,
                issuer,
                by: t.subject.clone(),
                by_file: t.source.clone(),
            };
        }
        match chain.iter().find(|c| **c != cur && issued_by(&cur, c)) {
            Some(next) => cur = next.clone(),
            None => break,
        }
    }
    untrusted("no db certificate trusts: none of them is it or issued it".into())
}
