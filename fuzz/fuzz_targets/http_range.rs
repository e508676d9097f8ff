//! An HTTP `Range` header on `/assets/…` (`provisioner::boot::files::parse_range`), against a
//! file length taken from the first 8 bytes. A part always lies within the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provisioner::boot::files::{parse_range, RangeSpec};

fuzz_target!(|data: &[u8]| {
    let (len, header) = match data.split_first_chunk::<8>() {
        Some((len, rest)) => (u64::from_le_bytes(*len), rest),
        None => (0, data),
    };
    let Ok(value) = std::str::from_utf8(header) else {
        return;
    };
    if let RangeSpec::Part { start, end } = parse_range(value, len) {
        assert!(
            start <= end && end < len,
            "{value:?} on {len} bytes: {start}..={end}"
        );
    }
});
