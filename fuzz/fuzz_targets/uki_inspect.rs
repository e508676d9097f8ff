//! PE/UKI inspection (`boot_assets::uki::inspect_efi`, what `assets import` and `assets inspect`
//! run on an uploaded file): headers, section table, text sections, the Authenticode digest.
//! The input is written to one scratch file per process (the inspection reads a path).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("provisioner-fuzz-uki-{}.efi", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    if let Ok((image, info)) = boot_assets::uki::inspect_efi(path) {
        // Every section the inspection accepted lies within the file.
        for s in &image.sections {
            assert!(s.file_offset + s.content_len() <= image.file_len || s.file_size == 0);
        }
        assert_eq!(info.sections.len(), image.sections.len());
        let _ = boot_assets::uki::inspect_uki(path);
    }
});
