//! Signature verdicts of stored UKIs against the configured `db` certificates
//! (`secure_boot.db_certs`), for the asset view, profile checks (`secure_boot = true`) and the
//! boot paths. A verdict is computed once per digest and kept: assets never change (they are
//! content-addressed) and the certificates are read once at start. Computing one reads the
//! certificate table and hashes the whole file (about a second for 300 MB), on a blocking thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use boot_assets::{AssetMeta, TrustStore, Verdict};
use tokio::sync::OnceCell;

use crate::app::BootContext;

/// The trusted certificates and the verdicts computed so far.
#[derive(Debug, Default)]
pub struct Signatures {
    /// What the machines' `db` holds, by the operator's configuration.
    pub trust: TrustStore,
    /// Verdicts by digest (`sha256:<hex>`); one computation per digest however many ask at
    /// once. Bounded by the number of imported assets.
    verdicts: Mutex<HashMap<String, Arc<OnceCell<Verdict>>>>,
}

impl Signatures {
    /// Verdicts against `trust`.
    pub fn new(trust: TrustStore) -> Self {
        Signatures {
            trust,
            verdicts: Mutex::default(),
        }
    }

    /// The configured certificate files, for messages ("none" when there are none).
    pub fn configured(&self) -> String {
        let files: Vec<String> = self
            .trust
            .files()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if files.is_empty() {
            "none".into()
        } else {
            files.join(", ")
        }
    }

    /// The verdict on asset `meta` (fetched from a peer first when another server imported it).
    ///
    /// # Errors
    /// Why the file could not be read or fetched.
    pub async fn verdict(&self, boot: &BootContext, meta: &AssetMeta) -> Result<Verdict, String> {
        let cell = self
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(meta.digest.clone())
            .or_default()
            .clone();
        let v = cell
            .get_or_try_init(|| async {
                let hex = boot_assets::parse_digest(&meta.digest).map_err(|e| e.to_string())?;
                if let Some(peers) = &boot.peer_assets {
                    peers.resolve(&hex).await.map_err(|e| e.to_string())?;
                }
                let (assets, digest, trust) =
                    (boot.assets.clone(), meta.digest.clone(), self.trust.clone());
                tokio::task::spawn_blocking(move || {
                    let (_, path) = assets.file(&digest)?;
                    boot_assets::signature::verify(&path, &trust)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            })
            .await?;
        Ok(v.clone())
    }

    /// Why no profile with `secure_boot` can be satisfied: no certificates are configured.
    pub fn not_configured(&self, profile: &str) -> Option<String> {
        self.trust.is_empty().then(|| {
            format!(
                "profile {profile}: secure_boot is on but no db certificates are configured \
                 (secure_boot.db_certs in the server's config): nothing can be trusted"
            )
        })
    }

    /// Why profile `profile` (which has `secure_boot` on) may not boot UKI `digest` with
    /// `verdict`; `None` when it may.
    pub fn refusal(&self, profile: &str, digest: &str, verdict: &Verdict) -> Option<String> {
        if let Some(why) = self.not_configured(profile) {
            return Some(why);
        }
        if verdict.is_trusted() {
            return None;
        }
        Some(format!(
            "profile {profile}: secure_boot is on but UKI {digest} {} (configured: {})",
            verdict.describe(),
            self.configured()
        ))
    }
}
