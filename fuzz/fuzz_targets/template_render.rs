//! A profile's cloud-config template rendered for a machine, within the render limits (fuel,
//! output size, source size), and the `#cloud-config` check of the result: what `/config` and
//! saving a profile run (`provisioner::boot::config_render::render_with`,
//! `provisioner::boot::cloud_config::check`).
//!
//! Input: the template source, then after the first NUL (if any) a label value and hostname
//! for the machine (values are data, never template code).
#![no_main]

use inventory::{Machine, MachineSpec, Profile, Timestamp};
use libfuzzer_sys::fuzz_target;
use provisioner::boot::config_render::{render_with, Limits};
use provisioner::boot::{cloud_config, Base};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, value) = text.split_once('\0').unwrap_or((text, "r1: \"x\" #y"));
    let spec = MachineSpec {
        hostname: Some("web-1".into()),
        labels: [
            ("rack".into(), value.to_string()),
            ("role".into(), "worker".into()),
        ]
        .into(),
        ..Default::default()
    };
    let machine = Machine::registered(
        "52:54:00:aa:bb:01".parse().expect("a MAC"),
        spec,
        Timestamp(0),
    );
    let profile = Profile {
        name: "fuzz".into(),
        cloud_config: source.to_string(),
        install_disk: Some("/dev/vda".into()),
        ..Default::default()
    };
    let limits = Limits::default();
    if let Ok(out) = render_with(
        &profile,
        &machine,
        "m1.tok",
        &Base::sample(),
        Some("198.18.0.1:514".into()),
        &limits,
    ) {
        assert!(
            out.len() <= limits.max_output,
            "{} bytes rendered",
            out.len()
        );
        let _ = cloud_config::check(&out);
    }
});
