//! The TOML configuration: parse and validate (`provisioner::config::Config::parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = provisioner::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
});
