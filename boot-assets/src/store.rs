//! The content-addressed asset store under `<data>/assets`:
//!
//! ```text
//! objects/<sha256 hex>          the file, named by the SHA-256 of its bytes
//! sections/<hex>/{linux,initrd,cmdline}   a UKI's sections, for BIOS (kernel/initrd/args)
//! meta/<hex>.json               what it is (written last: an asset exists once its meta does)
//! tmp/                          imports in progress (removed by `gc`)
//! ```
//! Every file is written to `tmp/`, fsynced and renamed into place, so a crash never leaves a
//! half-written asset under its digest. Importing the same bytes again is a no-op.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pe::PeImage;
use crate::uki::{self, EfiInfo};
use crate::{Error, Result};

/// What an asset is for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    /// A UKI: boots as one EFI image, or as kernel + initrd + args on BIOS.
    Uki,
    /// A network loader (ipxe.efi, snponly.efi, undionly.kpxe).
    Loader,
}

/// The UKI sections served separately to BIOS machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootSection {
    /// The kernel (`.linux`), served as `linux`.
    Linux,
    /// The initrd (`.initrd`), served as `initrd`.
    Initrd,
    /// The kernel command line (`.cmdline`), served as `cmdline`.
    Cmdline,
}

impl BootSection {
    /// Every served section.
    pub const ALL: [BootSection; 3] = [
        BootSection::Linux,
        BootSection::Initrd,
        BootSection::Cmdline,
    ];

    /// The name it is stored and served under (`linux`, `initrd`, `cmdline`).
    pub fn file_name(self) -> &'static str {
        match self {
            BootSection::Linux => "linux",
            BootSection::Initrd => "initrd",
            BootSection::Cmdline => "cmdline",
        }
    }

    fn pe_name(self) -> &'static str {
        match self {
            BootSection::Linux => ".linux",
            BootSection::Initrd => ".initrd",
            BootSection::Cmdline => ".cmdline",
        }
    }

    /// The section whose [`file_name`](Self::file_name) is `name`.
    pub fn from_name(name: &str) -> Option<BootSection> {
        Self::ALL.into_iter().find(|s| s.file_name() == name)
    }
}

/// The record kept for each asset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetMeta {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The file name it was imported under (shown to operators, used in download URLs).
    pub name: String,
    /// Length of the file (bytes).
    pub size: u64,
    /// What it is.
    pub kind: AssetKind,
    /// Unix time in milliseconds.
    pub imported_ms: u64,
    /// PE facts, for EFI images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi: Option<EfiInfo>,
}

/// What `gc` removed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Leftovers of interrupted imports and objects without metadata.
    pub leftovers: u64,
    /// Assets removed because nothing references them (only when asked).
    pub unreferenced: Vec<String>,
    /// Bytes of files removed, leftovers and assets together.
    pub bytes_freed: u64,
}

/// `sha256:<hex>` or bare hex → the 64 lower-case hex digits.
pub fn parse_digest(given: &str) -> Result<String> {
    let hex = given.strip_prefix("sha256:").unwrap_or(given);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(Error::BadDigest {
            given: given.to_string(),
        })
    }
}

/// The store rooted at one directory (layout in the module docs). Cheap to clone: a path.
#[derive(Clone, Debug)]
pub struct AssetStore {
    root: PathBuf,
}

impl AssetStore {
    /// Opens the store at `root`, creating its directories where missing.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<AssetStore> {
        let root = root.into();
        for d in ["objects", "sections", "meta", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(Error::io(&p))?;
        }
        Ok(AssetStore { root })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports a file from disk.
    pub fn import_path(&self, path: &Path, kind: AssetKind) -> Result<AssetMeta> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "asset".into());
        let f = File::open(path).map_err(Error::io(path))?;
        self.import_reader(f, &name, kind)
            .map_err(|e| rename_tmp_in_error(e, path))
    }

    /// Streams `reader` into the store, hashing as it goes; checks it is what `kind` says.
    ///
    /// # Errors
    /// [`Error::DiskFull`] when the file system is full; [`Error::NotUsable`] when the file is
    /// not what `kind` says; [`Error::Io`] otherwise. On any error nothing of the import is
    /// left: its temporary files are removed, and so are its object and sections unless the
    /// same bytes are in the catalogue (a concurrent import of them succeeded).
    pub fn import_reader(
        &self,
        reader: impl Read,
        name: &str,
        kind: AssetKind,
    ) -> Result<AssetMeta> {
        let mut digest = None;
        self.import_inner(reader, name, kind, &mut digest)
            .map_err(|e| {
                if let Some(hex) = &digest {
                    self.discard_unlisted(hex);
                }
                self.disk_full(e)
            })
    }

    /// Removes the object and sections of `hex` if no catalogue entry lists them (what a
    /// failed import leaves). Best effort: removing needs no space, and `gc` removes whatever
    /// a failure here leaves.
    fn discard_unlisted(&self, hex: &str) {
        if self.meta_path(hex).exists() {
            return;
        }
        let _ = fs::remove_file(self.object_path(hex));
        let _ = fs::remove_dir_all(self.root.join("sections").join(hex));
    }

    /// `e` as [`Error::DiskFull`] when it is the OS saying the file system is full.
    fn disk_full(&self, e: Error) -> Error {
        match e {
            Error::Io { source, .. } if is_disk_full(&source) => Error::DiskFull {
                dir: self.root.clone(),
                detail: source.to_string(),
            },
            e => e,
        }
    }

    /// The import proper; sets `digest` once the object may have been written.
    fn import_inner(
        &self,
        reader: impl Read,
        name: &str,
        kind: AssetKind,
        digest: &mut Option<String>,
    ) -> Result<AssetMeta> {
        let name = clean_name(name);
        let (tmp, hex, size) = self.receive(reader, &name)?;
        if let Ok(existing) = self.get(&hex) {
            return Ok(existing);
        }
        self.commit(tmp, &hex, size, (name, kind, now_ms()), digest)
    }

    /// Stores the asset `expected` describes (a catalogue record another server wrote) from
    /// `reader` (bytes from a peer, who is not trusted): at most `expected.size + 1` bytes are
    /// written, to `tmp/`, and they are kept only if their SHA-256 is `expected.digest` and their
    /// length `expected.size`; then they are inspected and renamed into place as
    /// [`import_reader`](Self::import_reader) does. Nothing is visible under the digest before
    /// that. Already stored: the stored record, `reader` unread.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the bytes are not the asset (nothing is kept); [`Error::Io`]
    /// when reading or writing fails; [`Error::NotUsable`] when a UKI does not inspect.
    pub fn import_verified(&self, reader: impl Read, expected: &AssetMeta) -> Result<AssetMeta> {
        let want = parse_digest(&expected.digest)?;
        if let Ok(existing) = self.get(&want) {
            return Ok(existing);
        }
        let name = clean_name(&expected.name);
        let (tmp, hex, size) = self
            .receive(reader.take(expected.size.saturating_add(1)), &name)
            .map_err(|e| self.disk_full(e))?;
        if hex != want || size != expected.size {
            return Err(Error::Mismatch {
                expected: format!("sha256:{want}"),
                actual: format!("sha256:{hex}"),
                expected_size: expected.size,
                actual_size: size,
            });
        }
        let mut digest = None;
        self.commit(
            tmp,
            &hex,
            size,
            (name, expected.kind, expected.imported_ms),
            &mut digest,
        )
        .map_err(|e| {
            if let Some(hex) = &digest {
                self.discard_unlisted(hex);
            }
            self.disk_full(e)
        })
    }

    /// Copies `reader` into a new file in `tmp/`: the file, the hex SHA-256 and the length.
    fn receive(
        &self,
        mut reader: impl Read,
        name: &str,
    ) -> Result<(tempfile::NamedTempFile, String, u64)> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(Error::io(&tmp_dir))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(name)(e)),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(Error::io(tmp.path()))?;
            size += n as u64;
        }
        Ok((tmp, hex::encode(hasher.finalize()), size))
    }

    /// Inspects a received file, renames it into place, extracts a UKI's sections and writes
    /// its metadata last (from then on the asset exists). Sets `digest` once the object may
    /// have been written (what a failure must clean up).
    fn commit(
        &self,
        tmp: tempfile::NamedTempFile,
        hex: &str,
        size: u64,
        (name, kind, imported_ms): (String, AssetKind, u64),
        digest: &mut Option<String>,
    ) -> Result<AssetMeta> {
        let efi = match kind {
            AssetKind::Uki => Some(uki::inspect_uki(tmp.path())?),
            AssetKind::Loader => uki::inspect_efi(tmp.path()).ok(),
        };
        tmp.as_file().sync_all().map_err(Error::io(tmp.path()))?;
        let object = self.object_path(hex);
        *digest = Some(hex.to_string());
        tmp.persist(&object)
            .map_err(|e| Error::io(&object)(e.error))?;
        if let Some((image, _)) = &efi {
            if kind == AssetKind::Uki {
                self.extract_sections(hex, image)?;
            }
        }
        let meta = AssetMeta {
            digest: format!("sha256:{hex}"),
            name,
            size,
            kind,
            imported_ms,
            efi: efi.map(|(_, info)| info),
        };
        let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
        self.write_atomic(&self.meta_path(hex), &json)?;
        sync_dir(&self.root.join("objects"))?;
        sync_dir(&self.root.join("meta"))?;
        Ok(meta)
    }

    fn extract_sections(&self, hex: &str, image: &PeImage) -> Result<()> {
        let object = self.object_path(hex);
        let dir = self.root.join("sections").join(hex);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        for sec in BootSection::ALL {
            let Some(s) = image.section(sec.pe_name()) else {
                continue;
            };
            let mut src = File::open(&object).map_err(Error::io(&object))?;
            src.seek(SeekFrom::Start(s.file_offset))
                .map_err(Error::io(&object))?;
            let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(Error::io(&dir))?;
            let mut part = src.take(s.content_len());
            if sec == BootSection::Cmdline {
                // NUL padding would end up in the kernel's arguments.
                let mut text = Vec::new();
                part.read_to_end(&mut text).map_err(Error::io(&object))?;
                let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
                tmp.write_all(text[..end].trim_ascii_end())
                    .map_err(Error::io(tmp.path()))?;
            } else {
                io::copy(&mut part, &mut tmp).map_err(Error::io(tmp.path()))?;
            }
            tmp.as_file().sync_all().map_err(Error::io(tmp.path()))?;
            let target = dir.join(sec.file_name());
            tmp.persist(&target)
                .map_err(|e| Error::io(&target)(e.error))?;
        }
        sync_dir(&dir)
    }

    /// The asset's metadata.
    pub fn get(&self, digest: &str) -> Result<AssetMeta> {
        let hex = parse_digest(digest)?;
        let path = self.meta_path(&hex);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    digest: format!("sha256:{hex}"),
                })
            }
            Err(e) => return Err(Error::io(path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptMeta {
            digest: format!("sha256:{hex}"),
            reason: e.to_string(),
        })
    }

    /// Every asset, by name then digest.
    pub fn list(&self) -> Result<Vec<AssetMeta>> {
        let dir = self.root.join("meta");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".json") {
                out.push(self.get(hex)?);
            }
        }
        out.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));
        Ok(out)
    }

    /// The stored file of an asset that exists.
    pub fn file(&self, digest: &str) -> Result<(AssetMeta, PathBuf)> {
        let meta = self.get(digest)?;
        let hex = parse_digest(&meta.digest)?;
        Ok((meta, self.object_path(&hex)))
    }

    /// An extracted UKI section (BIOS boot).
    pub fn section(&self, digest: &str, section: BootSection) -> Result<PathBuf> {
        let meta = self.get(digest)?;
        let hex = parse_digest(&meta.digest)?;
        let path = self
            .root
            .join("sections")
            .join(&hex)
            .join(section.file_name());
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::NoSection {
                digest: meta.digest,
                section: section.file_name().into(),
            })
        }
    }

    /// Removes an asset (the caller checks that nothing references it).
    pub fn remove(&self, digest: &str) -> Result<AssetMeta> {
        let meta = self.get(digest)?;
        let hex = parse_digest(&meta.digest)?;
        // Meta first: from then on the asset does not exist, whatever happens next.
        let meta_path = self.meta_path(&hex);
        fs::remove_file(&meta_path).map_err(Error::io(&meta_path))?;
        sync_dir(&self.root.join("meta"))?;
        remove_if_present(&self.object_path(&hex))?;
        let sections = self.root.join("sections").join(&hex);
        if sections.exists() {
            fs::remove_dir_all(&sections).map_err(Error::io(&sections))?;
        }
        Ok(meta)
    }

    /// Removes interrupted imports and orphans; with `keep`, also every asset not in it.
    pub fn gc(&self, keep: Option<&HashSet<String>>) -> Result<GcReport> {
        let mut report = GcReport::default();
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(Error::io(&tmp))? {
            let p = e.map_err(Error::io(&tmp))?.path();
            report.bytes_freed += p.metadata().map_or(0, |m| m.len());
            remove_if_present(&p)?;
            report.leftovers += 1;
        }
        if let Some(keep) = keep {
            for meta in self.list()? {
                if !keep.contains(&meta.digest) {
                    self.remove(&meta.digest)?;
                    report.bytes_freed += meta.size;
                    report.unreferenced.push(meta.digest);
                }
            }
        }
        for sub in ["objects", "sections"] {
            let dir = self.root.join(sub);
            for e in fs::read_dir(&dir).map_err(Error::io(&dir))? {
                let e = e.map_err(Error::io(&dir))?;
                let hex = e.file_name().to_string_lossy().into_owned();
                if hex.starts_with(".tmp") || !self.meta_path(&hex).exists() {
                    let p = e.path();
                    if p.is_dir() {
                        fs::remove_dir_all(&p).map_err(Error::io(&p))?;
                    } else {
                        report.bytes_freed += p.metadata().map_or(0, |m| m.len());
                        remove_if_present(&p)?;
                    }
                    report.leftovers += 1;
                }
            }
        }
        Ok(report)
    }

    fn object_path(&self, hex: &str) -> PathBuf {
        self.root.join("objects").join(hex)
    }

    fn meta_path(&self, hex: &str) -> PathBuf {
        self.root.join("meta").join(format!("{hex}.json"))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(Error::io(&dir))?;
        tmp.write_all(bytes).map_err(Error::io(tmp.path()))?;
        tmp.as_file().sync_all().map_err(Error::io(tmp.path()))?;
        tmp.persist(path).map_err(|e| Error::io(path)(e.error))?;
        Ok(())
    }
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A name safe in a URL path segment and a terminal.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("asset{cleaned}")
    } else {
        cleaned
    }
}

/// Inspection errors name the temporary file; say the file the operator gave instead.
fn rename_tmp_in_error(e: Error, path: &Path) -> Error {
    match e {
        Error::NotUsable { reason, .. } => Error::NotUsable {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    }
}

/// Whether an I/O error says the file system (or the user's quota) is full: `ENOSPC`, `EDQUOT`.
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn remove_if_present(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(p)(e)),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: &[u8], name: &str) -> AssetMeta {
        AssetMeta {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            name: name.into(),
            size: bytes.len() as u64,
            kind: AssetKind::Loader,
            imported_ms: 7,
            efi: None,
        }
    }

    #[test]
    fn verified_import_keeps_only_the_bytes_of_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssetStore::open(dir.path()).unwrap();
        let good = b"the loader a peer imported".to_vec();
        let want = record(&good, "ipxe.efi");
        for wrong in [b"other bytes, same length!!".to_vec(), good.repeat(1000)] {
            let e = store.import_verified(&wrong[..], &want).unwrap_err();
            let Error::Mismatch {
                expected,
                actual_size,
                ..
            } = &e
            else {
                panic!("{e}")
            };
            assert_eq!(expected, &want.digest);
            assert!(*actual_size <= want.size + 1, "reading stops past the size");
            assert!(matches!(
                store.get(&want.digest),
                Err(Error::NotFound { .. })
            ));
            let leftovers = fs::read_dir(dir.path().join("tmp")).unwrap().count()
                + fs::read_dir(dir.path().join("objects")).unwrap().count();
            assert_eq!(leftovers, 0, "nothing half-written is kept");
        }
        let stored = store.import_verified(&good[..], &want).unwrap();
        assert_eq!(
            (stored.digest.as_str(), stored.imported_ms),
            (want.digest.as_str(), 7)
        );
        let (_, path) = store.file(&want.digest).unwrap();
        assert_eq!(fs::read(path).unwrap(), good);
    }
}
