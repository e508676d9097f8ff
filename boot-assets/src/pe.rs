//! The parts of a PE32+ image (Microsoft PE/COFF spec) that UKI inspection, section extraction,
//! the Authenticode digest and the UKI builder need. Read with `object` through a [`ReadCache`],
//! so a 300 MB UKI is never loaded whole: only headers and the small sections are read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
use object::{LittleEndian as LE, ReadCache};

use crate::{Error, Result};

/// EFI application subsystem (IMAGE_SUBSYSTEM_EFI_APPLICATION).
pub const SUBSYSTEM_EFI_APPLICATION: u16 = 10;

/// One section header, with its file range checked against the file's length.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Section {
    /// The 8-byte name without its NUL padding (`.linux`, `.initrd`, …).
    pub name: String,
    /// Where it is loaded, relative to the image base (bytes).
    pub virtual_address: u32,
    /// Its size in memory (bytes); 0 in some linkers' output, then the file size counts.
    pub virtual_size: u32,
    /// Where its content starts in the file (bytes).
    pub file_offset: u64,
    /// Its size in the file (bytes), padded to the file alignment.
    pub file_size: u64,
}

impl Section {
    /// Bytes of the section's content: the file range, cut to the virtual size where that is
    /// smaller (the file range is padded to the file alignment).
    pub fn content_len(&self) -> u64 {
        if self.virtual_size == 0 {
            self.file_size
        } else {
            self.file_size.min(self.virtual_size as u64)
        }
    }
}

/// Header facts of a PE32+ image.
#[derive(Clone, Debug)]
pub struct PeImage {
    /// COFF machine type (`IMAGE_FILE_MACHINE_*`; [`machine_name`] names it).
    pub machine: u16,
    /// Optional-header subsystem ([`SUBSYSTEM_EFI_APPLICATION`] for a UKI).
    pub subsystem: u16,
    /// Length of the file (bytes).
    pub file_len: u64,
    /// `SizeOfHeaders`: headers and section table, rounded to the file alignment (bytes).
    pub size_of_headers: u64,
    /// `SectionAlignment`: sections are loaded at multiples of it (bytes).
    pub section_alignment: u32,
    /// `FileAlignment`: section contents start at multiples of it in the file (bytes).
    pub file_alignment: u32,
    /// `SizeOfImage`: the loaded image's size, rounded to the section alignment (bytes).
    pub size_of_image: u32,
    /// File offset of the optional header's CheckSum field (excluded from Authenticode).
    pub checksum_offset: u64,
    /// File offset of the certificate-table data directory entry (excluded from Authenticode).
    pub cert_dir_offset: u64,
    /// File offset of the section table and the room left in the headers for more entries.
    pub section_table_offset: u64,
    /// Entries in the section table.
    pub number_of_sections: u16,
    /// The attribute certificate table (`offset`, `len`): present when the image is signed.
    pub cert_table: Option<(u64, u64)>,
    /// The section headers, in table order, each checked to lie within the file.
    pub sections: Vec<Section>,
}

impl PeImage {
    /// The first section named `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Reads the headers of the PE32+ image at `path` (headers and section table only).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::NotUsable`] when it is not a PE32+ image,
    /// or a section or the certificate table runs past the end of the file.
    pub fn read(path: &Path) -> Result<PeImage> {
        let file = File::open(path).map_err(Error::io(path))?;
        let file_len = file.metadata().map_err(Error::io(path))?.len();
        let cache = ReadCache::new(file);
        let pe = PeFile64::parse(&cache).map_err(|e| {
            Error::unusable(
                path,
                format!("not a PE32+ (64-bit EFI) image: {e}; a UKI is built with ukify or objcopy onto systemd-stub"),
            )
        })?;
        let nt = pe.nt_headers();
        let opt = nt.optional_header();
        let nt_offset = pe.dos_header().nt_headers_offset() as u64;
        let opt_offset = nt_offset + 4 + 20;
        let opt_size = nt.file_header().size_of_optional_header.get(LE) as u64;
        let cert_table = pe
            .data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
            .map(|d| (d.virtual_address.get(LE) as u64, d.size.get(LE) as u64))
            .filter(|&(_, len)| len > 0);
        if let Some((off, len)) = cert_table {
            if off.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(Error::unusable(
                    path,
                    format!("certificate table {off}+{len} runs past the end of the file ({file_len} bytes): truncated?"),
                ));
            }
        }
        let mut sections = Vec::new();
        for s in pe.section_table().iter() {
            let name = String::from_utf8_lossy(s.raw_name()).into_owned();
            let file_offset = s.pointer_to_raw_data.get(LE) as u64;
            let file_size = s.size_of_raw_data.get(LE) as u64;
            if file_size > 0 && file_offset + file_size > file_len {
                return Err(Error::unusable(
                    path,
                    format!(
                        "section {name} claims bytes {file_offset}..{} but the file has {file_len}: truncated or corrupt",
                        file_offset + file_size
                    ),
                ));
            }
            sections.push(Section {
                name,
                virtual_address: s.virtual_address.get(LE),
                virtual_size: s.virtual_size.get(LE),
                file_offset,
                file_size,
            });
        }
        Ok(PeImage {
            machine: nt.file_header().machine.get(LE),
            subsystem: opt.subsystem(),
            file_len,
            size_of_headers: opt.size_of_headers() as u64,
            section_alignment: opt.section_alignment(),
            file_alignment: opt.file_alignment(),
            size_of_image: opt.size_of_image(),
            checksum_offset: opt_offset + 64,
            cert_dir_offset: opt_offset + 112 + 8 * pe::IMAGE_DIRECTORY_ENTRY_SECURITY as u64,
            section_table_offset: opt_offset + opt_size,
            number_of_sections: nt.file_header().number_of_sections.get(LE),
            cert_table,
            sections,
        })
    }
}

/// Reads a small section whole (refusing one larger than `limit`).
pub fn read_section(path: &Path, s: &Section, limit: u64) -> Result<Vec<u8>> {
    let len = s.content_len();
    if len > limit {
        return Err(Error::unusable(
            path,
            format!(
                "section {} is {len} bytes, more than the {limit} expected",
                s.name
            ),
        ));
    }
    let mut f = File::open(path).map_err(Error::io(path))?;
    f.seek(SeekFrom::Start(s.file_offset))
        .map_err(Error::io(path))?;
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).map_err(Error::io(path))?;
    Ok(buf)
}

/// The architecture name of a COFF machine type (`x86_64`, `aarch64`, `riscv64`, `i386`), or
/// `unknown`.
pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        pe::IMAGE_FILE_MACHINE_AMD64 => "x86_64",
        pe::IMAGE_FILE_MACHINE_ARM64 => "aarch64",
        pe::IMAGE_FILE_MACHINE_RISCV64 => "riscv64",
        pe::IMAGE_FILE_MACHINE_I386 => "i386",
        _ => "unknown",
    }
}
