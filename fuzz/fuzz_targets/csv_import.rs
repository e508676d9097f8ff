//! A CSV machine import (`POST /api/v1/machines/import`): `provisioner::import::parse`. An
//! import is all or nothing; problems are reported per line, at most 50 (then a count of the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(p) = provisioner::import::parse(text) {
        // At most 50 problems listed, then one line counting the rest.
        assert!(
            !p.lines.is_empty() && p.lines.len() <= 51,
            "{} lines",
            p.lines.len()
        );
        assert!(
            p.total >= p.lines.len().min(50),
            "{} of {}",
            p.lines.len(),
            p.total
        );
    }
});
