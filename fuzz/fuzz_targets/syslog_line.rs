//! A remote syslog datagram (RFC 5424, RFC 3164 or anything else) from anyone on the network:
//! `provisioner::syslog::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = provisioner::syslog::parse(data);
    assert!(
        m.severity.is_none_or(|s| s <= 7),
        "severity {:?}",
        m.severity
    );
});
