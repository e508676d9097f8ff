//! Assembles a UKI: appends `.osrel`, `.cmdline`, `.uname`, `.initrd`, `.linux` (any named
//! sections) to a systemd-stub, each at a 4 KiB-aligned virtual address after the stub's last
//! section, the way `ukify` and `objcopy --add-section` do. Used by the lab and the tests; Debian 12
//! ships no ukify.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::pe::PeImage;
use crate::{Error, Result};

const SECTION_HEADER_LEN: u64 = 40;
const VMA_ALIGN: u64 = 4096;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ.
const DATA_READONLY: u32 = 0x4000_0040;

/// Sections to append to a stub, in order; [`UkiBuilder::build`] writes the UKI.
pub struct UkiBuilder {
    sections: Vec<(String, Vec<u8>)>,
}

impl Default for UkiBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl UkiBuilder {
    /// A builder with no sections.
    pub fn new() -> Self {
        UkiBuilder {
            sections: Vec::new(),
        }
    }

    /// Adds a section (name up to 8 bytes, e.g. `.linux`). Order is kept.
    pub fn section(mut self, name: &str, data: Vec<u8>) -> Self {
        self.sections.push((name.to_string(), data));
        self
    }

    /// Writes stub + sections to `out` (via a temporary file and a rename).
    pub fn build(self, stub: &Path, out: &Path) -> Result<()> {
        let image = PeImage::read(stub)?;
        if image.cert_table.is_some() {
            return Err(Error::unusable(
                stub,
                "the stub is signed; build from an unsigned stub and sign the UKI afterwards",
            ));
        }
        let mut bytes = fs::read(stub).map_err(Error::io(stub))?;
        // Drop whatever trails the stub's last section (a COFF symbol table, debug data): left
        // in place it becomes a gap between sections, on which Authenticode implementations
        // disagree (sbsign and osslsigncode do), so a signed UKI might not verify in firmware.
        let sections_end = image
            .sections
            .iter()
            .map(|s| s.file_offset + s.file_size)
            .max()
            .unwrap_or(image.size_of_headers);
        bytes.truncate(sections_end as usize);
        let table_end = image.section_table_offset
            + SECTION_HEADER_LEN * (image.number_of_sections as u64 + self.sections.len() as u64);
        let first_data = image
            .sections
            .iter()
            .filter(|s| s.file_size > 0)
            .map(|s| s.file_offset)
            .min()
            .unwrap_or(image.size_of_headers);
        if table_end > image.size_of_headers.min(first_data) {
            return Err(Error::unusable(
                stub,
                format!(
                    "no room in the PE headers for {} more section headers",
                    self.sections.len()
                ),
            ));
        }
        let falign = image.file_alignment.max(1) as u64;
        let mut vma = image
            .sections
            .iter()
            .map(|s| s.virtual_address as u64 + (s.virtual_size as u64).max(s.file_size))
            .max()
            .unwrap_or(0);
        let mut file_pos = align(bytes.len() as u64, falign);
        bytes.resize(file_pos as usize, 0);
        let mut header_at =
            image.section_table_offset + SECTION_HEADER_LEN * image.number_of_sections as u64;
        for (name, data) in &self.sections {
            if name.len() > 8 || name.is_empty() {
                return Err(Error::unusable(
                    out,
                    format!("section name '{name}' must be 1-8 bytes"),
                ));
            }
            vma = align(vma, VMA_ALIGN);
            let raw_len = align(data.len() as u64, falign);
            let fits = |v: u64| {
                u32::try_from(v).map_err(|_| {
                    Error::unusable(
                        out,
                        format!("section {name} does not fit a PE32+ image (4 GiB)"),
                    )
                })
            };
            let mut h = [0u8; SECTION_HEADER_LEN as usize];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[8..12].copy_from_slice(&fits(data.len() as u64)?.to_le_bytes());
            h[12..16].copy_from_slice(&fits(vma)?.to_le_bytes());
            h[16..20].copy_from_slice(&fits(raw_len)?.to_le_bytes());
            h[20..24].copy_from_slice(&fits(file_pos)?.to_le_bytes());
            h[36..40].copy_from_slice(&DATA_READONLY.to_le_bytes());
            let at = header_at as usize;
            bytes[at..at + h.len()].copy_from_slice(&h);
            header_at += SECTION_HEADER_LEN;
            bytes.extend_from_slice(data);
            file_pos += raw_len;
            bytes.resize(file_pos as usize, 0);
            vma += data.len() as u64;
        }
        let nt = image.checksum_offset as usize - 64 - 24;
        let count = image.number_of_sections + self.sections.len() as u16;
        bytes[nt + 6..nt + 8].copy_from_slice(&count.to_le_bytes());
        // PointerToSymbolTable and NumberOfSymbols: the table (if any) was dropped above.
        bytes[nt + 12..nt + 20].fill(0);
        let opt = nt + 24;
        let size_of_image = align(vma, image.section_alignment.max(1) as u64);
        let size_of_image = u32::try_from(size_of_image)
            .map_err(|_| Error::unusable(out, "image larger than 4 GiB"))?;
        bytes[opt + 56..opt + 60].copy_from_slice(&size_of_image.to_le_bytes());
        bytes[opt + 64..opt + 68].copy_from_slice(&0u32.to_le_bytes());

        let dir = out.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(Error::io(dir))?;
        tmp.write_all(&bytes).map_err(Error::io(out))?;
        tmp.persist(out).map_err(|e| Error::io(out)(e.error))?;
        Ok(())
    }
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}
