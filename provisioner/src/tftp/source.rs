//! Where TFTP content comes from, behind a trait: directories on disk (a TFTP root, the iPXE
//! loaders), in-memory files, and an ordered chain of them. Files are read block by block with
//! positional reads, never loaded whole per client.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;

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

/// A directory on disk. A name that does not lead to a regular file inside it (missing, a
/// directory, a FIFO, a socket, a device, a symlink out of a confined root, a name too long for
/// the kernel) is "not here", the same answer whatever the reason, so a client learns nothing
/// about what lies outside, and nothing is opened that could block: files are opened with
/// `O_NONBLOCK` and their type is checked with `fstat` on the opened descriptor.
pub struct DirSource {
    /// Canonical path of the directory (no symlinks in it).
    root: PathBuf,
    /// The directory, opened once (`O_PATH`): names are opened relative to it.
    dir: OwnedFd,
    /// Whether symlinks may lead outside `root`. Off for the TFTP root (people and tools write
    /// there); on for the loaders directory, which the package manager owns and where Debian's
    /// `ipxe` links `ipxe.efi` to `/boot/ipxe.efi`.
    symlinks_anywhere: bool,
}

/// Read-only, never blocking (a FIFO opens at once), never a controlling terminal.
const OPEN_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_CLOEXEC);

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
        let dir = fcntl::open(
            &root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirSource {
            root,
            dir,
            symlinks_anywhere,
        })
    }

    /// Opens `path` (normalized: no `..`, not absolute) without blocking; `Ok(None)` when it
    /// is not a regular file this source may serve. Errors are real I/O problems (permissions).
    fn open_regular(&self, path: &str) -> io::Result<Option<DiskFile>> {
        let opened = if self.symlinks_anywhere {
            fcntl::openat(&self.dir, path, OPEN_FLAGS, Mode::empty()).map_err(io::Error::from)
        } else {
            match self.open_confined(path) {
                Ok(Some(fd)) => Ok(fd),
                Ok(None) => return Ok(None),
                Err(e) => Err(e),
            }
        };
        let file = match opened {
            Ok(fd) => File::from(fd),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        // The type of what was opened, not of what a name pointed to a moment earlier.
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some(DiskFile {
            file,
            size: meta.len(),
        }))
    }

    /// Resolves symlinks (relative and absolute) without opening anything, refuses a result
    /// outside the root, then opens exactly that path beneath the root's descriptor with no
    /// symlink allowed (`openat2`, `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so a link swapped
    /// in meanwhile cannot lead elsewhere. Without `openat2` (Linux < 5.6, some seccomp
    /// filters) the checked path is opened with `O_NOFOLLOW`.
    fn open_confined(&self, path: &str) -> io::Result<Option<OwnedFd>> {
        let resolved = self.root.join(path).canonicalize()?;
        let rel = match resolved.strip_prefix(&self.root) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel,
            _ => return Ok(None), // outside the root, or the root itself
        };
        // Not even opened unless it is a regular file now (devices can act on open).
        if !std::fs::symlink_metadata(&resolved)?.is_file() {
            return Ok(None);
        }
        let how = fcntl::OpenHow::new()
            .flags(OPEN_FLAGS)
            .resolve(fcntl::ResolveFlag::RESOLVE_BENEATH | fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS);
        match fcntl::openat2(&self.dir, rel, how) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOSYS) => {
                fcntl::open(&resolved, OPEN_FLAGS | OFlag::O_NOFOLLOW, Mode::empty())
                    .map(Some)
                    .map_err(io::Error::from)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Errors that mean "no such file here": missing, a path through a non-directory, a symlink
/// loop or a symlink where none is allowed, a name too long, a step out of the root, a socket.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG | Errno::EXDEV | Errno::ENXIO)
        )
}

impl FileSource for DirSource {
    fn open(
        &self,
        path: &str,
        _client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        Ok(self
            .open_regular(path)?
            .map(|f| Arc::new(f) as Arc<dyn BlockFile>))
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
#[path = "source_tests.rs"]
mod tests;
