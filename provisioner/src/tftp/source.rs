//! Where TFTP content comes from, behind a trait: directories on disk (a TFTP root, the iPXE
//! loaders), in-memory files, and an ordered chain of them. Files are read block by block with
//! positional reads, never loaded whole per client.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file: its size at open time and positional reads.
pub trait BlockFile: Send + Sync {
    fn size(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("file not found")]
    NotFound,
    #[error("access violation: {0}")]
    Access(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Something that can serve files by normalized path (see `path::normalize`).
pub trait FileSource: Send + Sync + 'static {
    /// `Ok(None)` means "not here": the next source in a chain is asked.
    fn open(&self, path: &str, client: SocketAddr)
        -> Result<Option<Arc<dyn BlockFile>>, OpenError>;
}

pub(crate) struct DiskFile {
    pub(crate) file: File,
    pub(crate) size: u64,
}

impl BlockFile for DiskFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // Fill the block even if the kernel returns short reads.
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }
}

/// A directory on disk.
pub struct DirSource {
    root: PathBuf,
    /// Whether symlinks may lead outside `root`. Off for the TFTP root (people and tools write
    /// there); on for the loaders directory, which the package manager owns and where Debian's
    /// `ipxe` links `ipxe.efi` to `/boot/ipxe.efi`.
    symlinks_anywhere: bool,
}

impl DirSource {
    /// A directory whose symlinks are followed only while they stay inside it.
    /// Fails if `root` does not exist or is not a directory.
    pub fn confined(root: &Path) -> io::Result<Self> {
        Self::open_dir(root, false)
    }

    /// A system-managed directory (only root can write it) whose symlinks may point anywhere.
    pub fn trusted(root: &Path) -> io::Result<Self> {
        Self::open_dir(root, true)
    }

    fn open_dir(root: &Path, symlinks_anywhere: bool) -> io::Result<Self> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(DirSource {
            root,
            symlinks_anywhere,
        })
    }
}

impl FileSource for DirSource {
    fn open(
        &self,
        path: &str,
        _client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        let resolved = match self.root.join(path).canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !self.symlinks_anywhere && !resolved.starts_with(&self.root) {
            return Err(OpenError::Access(
                "symlink leads outside the TFTP root".into(),
            ));
        }
        let file = File::open(&resolved)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(OpenError::Access("not a regular file".into()));
        }
        Ok(Some(Arc::new(DiskFile {
            file,
            size: meta.len(),
        })))
    }
}

/// Bytes held in memory (generated content, tests).
pub struct MemFile(pub Arc<[u8]>);

impl BlockFile for MemFile {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

/// Fixed in-memory files by path.
#[derive(Default)]
pub struct MemSource(pub HashMap<String, Arc<[u8]>>);

impl FileSource for MemSource {
    fn open(
        &self,
        path: &str,
        _client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        Ok(self
            .0
            .get(path)
            .map(|b| Arc::new(MemFile(b.clone())) as Arc<dyn BlockFile>))
    }
}

/// Asks each source in order; the first that has the file serves it.
pub struct Chain(pub Vec<Arc<dyn FileSource>>);

impl FileSource for Chain {
    fn open(
        &self,
        path: &str,
        client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        for s in &self.0 {
            if let Some(f) = s.open(path, client)? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> SocketAddr {
        "127.0.0.1:1000".parse().unwrap()
    }

    #[test]
    fn dir_source_serves_files_and_refuses_escaping_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s3cret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/a.efi"), b"hello").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("leak"))
            .unwrap();
        std::os::unix::fs::symlink("sub/a.efi", root.path().join("alias.efi")).unwrap();
        let src = DirSource::confined(root.path()).unwrap();
        let f = src.open("sub/a.efi", client()).unwrap().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!((f.size(), f.read_at(&mut buf, 1).unwrap()), (5, 4));
        assert_eq!(&buf[..4], b"ello");
        assert!(
            src.open("alias.efi", client()).unwrap().is_some(),
            "symlink inside the root is fine"
        );
        assert!(matches!(
            src.open("leak", client()),
            Err(OpenError::Access(_))
        ));
        assert!(matches!(
            src.open("sub", client()),
            Err(OpenError::Access(_))
        ));
        assert!(src.open("missing", client()).unwrap().is_none());
        // The package-managed loaders directory may link out (Debian: ipxe.efi -> /boot/ipxe.efi).
        let trusted = DirSource::trusted(root.path()).unwrap();
        assert_eq!(trusted.open("leak", client()).unwrap().unwrap().size(), 6);
        // Even there a name cannot climb out: `..` never reaches a source (see path.rs).
        assert!(crate::tftp::path::normalize("../leak").is_err());
    }

    #[test]
    fn chain_asks_in_order() {
        let a = MemSource([("x".to_string(), Arc::from(&b"first"[..]))].into());
        let b = MemSource(
            [
                ("x".to_string(), Arc::from(&b"second"[..])),
                ("y".to_string(), Arc::from(&b"y"[..])),
            ]
            .into(),
        );
        let c = Chain(vec![Arc::new(a), Arc::new(b)]);
        assert_eq!(c.open("x", client()).unwrap().unwrap().size(), 5);
        assert_eq!(c.open("y", client()).unwrap().unwrap().size(), 1);
        assert!(c.open("z", client()).unwrap().is_none());
    }
}
