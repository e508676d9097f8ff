//! The operator token: created on first start, stored only as a hash, and written once to
//! `<data-dir>/operator.token` (mode 0600) for the CLI on the same host.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use inventory::{hash_token, Store, Timestamp, TokenRecord, TokenRole};

pub const TOKEN_FILE: &str = "operator.token";

/// 256 random bits as hex.
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `bytes` to `<dir>/<name>` with mode 0600, through a temporary file, fsync and rename,
/// so the file is either absent or complete.
pub fn write_secret(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Makes sure an operator token exists; returns the file it was written to if one was created.
pub fn ensure(
    store: &dyn Store,
    data_dir: &Path,
    now: Timestamp,
) -> anyhow::Result<Option<PathBuf>> {
    if store.has_operator_token()? {
        return Ok(None);
    }
    let token = generate()?;
    let path = write_secret(data_dir, TOKEN_FILE, format!("{token}\n").as_bytes())?;
    // File first, hash second: a crash in between leaves no valid token, and the next start
    // simply writes a new one.
    store.put_token(
        &hash_token(&token),
        &TokenRecord {
            role: TokenRole::Operator,
            created: now,
            label: "operator (first start)".into(),
        },
    )?;
    Ok(Some(path))
}
