//! A CSV machine import (`POST /api/v1/machines/import`): `provisioner::import::parse`. An
//! import is all or nothing; problems are reported per line, at most 50.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(p) = provisioner::import::parse(text) {
        assert!(p.total >= p.lines.len() && !p.lines.is_empty() && p.lines.len() <= 50);
    }
});
