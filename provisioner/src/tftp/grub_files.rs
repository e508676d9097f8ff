//! GRUB netboot over TFTP, from Debian's `grub-efi-amd64-bin` (`tftp.grub_dir`, default
//! `/usr/lib/grub/x86_64-efi`):
//!
//! - `grubnetx64.efi`: `<grub_dir>/monolithic/grubnetx64.efi`, the network image. Its prefix is
//!   `/grub` on the server it came from, and it carries only part of GRUB's modules.
//! - `grub/x86_64-efi/<name>.mod` and `.lst`: the other modules (`http.mod`, `sleep.mod`, …)
//!   and the lists GRUB reads to load them on demand, straight from `<grub_dir>`.
//! - `grub/grub.cfg`: our bootstrap ([`crate::boot::grub::bootstrap`]), the same bytes for every
//!   machine; the per-machine part comes over HTTP, chosen by the caller's lease.
//!
//! Anything else is "not here". Installed machines never get here: the installed-machine gate
//! ([`super::boot_sources::InstalledGate`]) is first in the chain and refuses them every file.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::source::{BlockFile, DirSource, FileSource, MemFile, OpenError};
use crate::boot::grub::LOADER;

/// Where GRUB (prefix `/grub`, x86-64 EFI) asks for its modules.
const MODULES: &str = "grub/x86_64-efi/";
/// The network image inside `grub_dir`.
const IMAGE: &str = "monolithic/grubnetx64.efi";

/// The GRUB files, served by name.
pub struct GrubFiles {
    /// `tftp.grub_dir`, package-owned (symlinks followed, as for the iPXE loaders).
    dir: DirSource,
    /// `grub/grub.cfg`, rendered once at start (it names our HTTP address).
    bootstrap: Arc<[u8]>,
}

impl GrubFiles {
    /// Fails when `grub_dir` is not a directory (GRUB is not installed).
    pub fn new(grub_dir: &Path, bootstrap: String) -> io::Result<Self> {
        Ok(GrubFiles {
            dir: DirSource::trusted(grub_dir)?,
            bootstrap: bootstrap.into_bytes().into(),
        })
    }
}

/// A module or list name: one path component of `[A-Za-z0-9_.-]`, ending `.mod` or `.lst`.
fn module_name(name: &str) -> bool {
    (name.ends_with(".mod") || name.ends_with(".lst"))
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl FileSource for GrubFiles {
    fn open(
        &self,
        path: &str,
        client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        if path == LOADER {
            return self.dir.open(IMAGE, client);
        }
        if path == "grub/grub.cfg" {
            return Ok(Some(Arc::new(MemFile(self.bootstrap.clone()))));
        }
        match path.strip_prefix(MODULES) {
            Some(name) if module_name(name) => self.dir.open(name, client),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_image_modules_and_bootstrap_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("monolithic")).unwrap();
        std::fs::write(dir.path().join(IMAGE), b"MZ grub").unwrap();
        std::fs::write(dir.path().join("http.mod"), b"http module").unwrap();
        std::fs::write(dir.path().join("command.lst"), b"*sleep: sleep").unwrap();
        std::fs::write(dir.path().join("grub.cfg"), b"not served").unwrap();
        let g = GrubFiles::new(dir.path(), "insmod http\n".into()).unwrap();
        let client = SocketAddr::from(([198, 18, 0, 100], 2000));
        let size = |p: &str| g.open(p, client).unwrap().map(|f| f.size());
        assert_eq!(size("grubnetx64.efi"), Some(7));
        assert_eq!(size("grub/x86_64-efi/http.mod"), Some(11));
        assert_eq!(size("grub/x86_64-efi/command.lst"), Some(13));
        assert_eq!(size("grub/grub.cfg"), Some(12));
        for other in [
            "monolithic/grubnetx64.efi",
            "grub/x86_64-efi/grub.cfg",
            "grub/x86_64-efi/monolithic/grubnetx64.efi",
            "grub/x86_64-efi/missing.mod",
            "grub/grub.cfg-01-52-54-00-1a-b0-01",
            "http.mod",
        ] {
            assert_eq!(size(other), None, "{other}");
        }
        assert!(!module_name("../x.mod") && !module_name(".mod") && module_name("gzio.mod"));
    }
}
