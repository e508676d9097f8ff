//! The Authenticode (PE image) SHA-256 digest: what a Secure Boot signature signs and what
//! `db`/`dbx` entries list. Per the PE/COFF spec ("Calculating the PE Image Hash"): the whole file
//! except the CheckSum field, the certificate-table directory entry and the certificate table
//! itself. Computed as the spec says, section by section (`osslsigncode verify` agrees on a
//! UKI signed with `sbsign`, see the tests).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::pe::PeImage;
use crate::{Error, Result};

/// The Authenticode SHA-256 of the image at `path` (whose headers `image` describes), as 64
/// lowercase hex digits.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read (or is shorter than its headers say).
pub fn sha256(path: &Path, image: &PeImage) -> Result<String> {
    let cert_len = image.cert_table.map_or(0, |(_, len)| len);
    let mut f = File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    // 1. The headers, without the CheckSum and the certificate-table entry.
    let mut pos = 0u64;
    for (skip_at, skip_len) in [(image.checksum_offset, 4u64), (image.cert_dir_offset, 8u64)] {
        copy_range(&mut f, path, pos, skip_at, &mut hasher)?;
        pos = skip_at + skip_len;
    }
    copy_range(&mut f, path, pos, image.size_of_headers, &mut hasher)?;
    // 2. The sections' raw data, by file offset.
    let mut sum = image.size_of_headers;
    let mut sections: Vec<_> = image.sections.iter().filter(|s| s.file_size > 0).collect();
    sections.sort_by_key(|s| s.file_offset);
    for s in sections {
        copy_range(
            &mut f,
            path,
            s.file_offset,
            s.file_offset + s.file_size,
            &mut hasher,
        )?;
        sum += s.file_size;
    }
    // 3. Data after that, up to the certificate table. The spec starts it at the offset equal to
    //    the number of bytes hashed so far (which differs from the end of the last section only
    //    when sections leave gaps); signers follow the spec, so do we.
    let extra_end = image.file_len.saturating_sub(cert_len);
    if extra_end > sum {
        copy_range(&mut f, path, sum, extra_end, &mut hasher)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn copy_range(
    f: &mut File,
    path: &Path,
    from: u64,
    to: u64,
    h: &mut Sha256,
) -> Result<()> {
    f.seek(SeekFrom::Start(from)).map_err(Error::io(path))?;
    let mut left = to.saturating_sub(from);
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..want]).map_err(Error::io(path))?;
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}
