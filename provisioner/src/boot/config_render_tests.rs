//! Rendering with the machine values, errors naming profile and line, and the limits: fuel,
//! output cap, source cap, recursion, deadline.
#![allow(clippy::disallowed_methods)] // the limits are about wall time: these tests measure it

use super::*;
use inventory::{MachineSpec, Timestamp};

fn machine() -> Machine {
    let spec = MachineSpec {
        hostname: Some("web-1".into()),
        labels: [("rack".into(), "r1: \"x\" #y".into())].into(),
        ..Default::default()
    };
    Machine::registered("52:54:00:aa:bb:01".parse().unwrap(), spec, Timestamp(0))
}

fn base() -> Base {
    Base::plain("http://198.18.0.1:8080")
}

#[test]
fn default_template_is_yaml_with_the_machine_values() {
    let p = Profile {
        name: "hadron".into(),
        install_disk: Some("/dev/vda".into()),
        ..Default::default()
    };
    let out = render(
        &p,
        &machine(),
        "m1.tok",
        &base(),
        Some("198.18.0.1:5514".into()),
    )
    .unwrap();
    assert!(out.starts_with("#cloud-config\n"));
    assert!(out.contains("hostname: \"web-1\""));
    assert!(out.contains("device: \"/dev/vda\""));
    assert!(out.contains("token: \"m1.tok\""));
    assert!(out.contains("register: \"http://198.18.0.1:8080/api/v1/nodes/register\""));
    assert!(out.contains("syslog: \"198.18.0.1:5514\""));
}

#[test]
fn labels_are_data_and_tojson_keeps_yaml_intact() {
    let p = Profile {
        name: "x".into(),
        cloud_config: "rack: {{ labels.rack | tojson }}\nraw: {{ labels.rack }}\n".into(),
        ..Default::default()
    };
    let out = render(&p, &machine(), "t", &base(), None).unwrap();
    assert!(out.contains("rack: \"r1: \\\"x\\\" #y\""), "{out}");
    // Even unescaped, a label's braces are output, never evaluated.
    let mut m = machine();
    m.spec.labels.insert("rack".into(), "{{ token }}".into());
    let out = render(&p, &m, "secret", &base(), None).unwrap();
    assert!(
        out.contains("raw: {{ token }}") && !out.contains("secret"),
        "{out}"
    );
}

#[test]
fn errors_name_profile_and_line() {
    let p = Profile {
        name: "broken".into(),
        cloud_config: "#cloud-config\nhostname: {{ hostname }}\nx: {{ no_such_thing }}\n".into(),
        ..Default::default()
    };
    let e = render(&p, &machine(), "t", &base(), None).unwrap_err();
    assert!(
        matches!(&e, RenderError::Template { profile, line: Some(3), .. } if profile == "broken"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("config template of profile broken, line 3"),
        "{e}"
    );
    let p = Profile {
        name: "syntax".into(),
        cloud_config: "a\n{% if %}\n".into(),
        ..Default::default()
    };
    let e = render(&p, &machine(), "t", &base(), None).unwrap_err();
    assert!(
        matches!(e, RenderError::Template { line: Some(2), .. }),
        "{e}"
    );
}

/// 80 bytes, 10^10 loop steps: never finished before fuel.
const NESTED_LOOPS: &str =
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
/// 56 bytes, 200 MB of output.
const BIG_OUTPUT: &str = "{% for i in range(100000) %}{{ \"x\" * 2000 }}{% endfor %}";

fn profile(name: &str, template: &str) -> Profile {
    Profile {
        name: name.into(),
        cloud_config: template.into(),
        ..Default::default()
    }
}

#[test]
fn fuel_ends_a_runaway_loop_quickly_with_a_clear_error() {
    let started = std::time::Instant::now();
    let e = render(
        &profile("loops", NESTED_LOOPS),
        &machine(),
        "t",
        &base(),
        None,
    )
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&e, RenderError::OutOfFuel { profile, fuel: 200_000, .. } if profile == "loops"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "config template of profile loops, line 1: rendering stopped after its work limit"
        ),
        "{msg}"
    );
    assert!(msg.contains("simplify the template"), "{msg}");
    // Fuel also pays for data: a huge string is refused before it is built.
    let e = render(
        &profile("big", "{% set s = \"x\" * 500000000 %}{{ s | length }}"),
        &machine(),
        "t",
        &base(),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, RenderError::OutOfFuel { .. }), "{e:?}");
}

#[test]
fn output_is_capped() {
    let e = render(&profile("big", BIG_OUTPUT), &machine(), "t", &base(), None).unwrap_err();
    assert!(
        matches!(&e, RenderError::OutputTooLarge { profile, max: 1_048_576 } if profile == "big"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("passed the output limit of 1048576 bytes"),
        "{e}"
    );
    // Just under the cap is fine, just over is not, with plenty of fuel.
    let limits = Limits {
        fuel: 10_000_000,
        max_output: 1000,
        ..Limits::default()
    };
    let edge = |n: usize| {
        let t = format!("{{{{ \"y\" * {n} }}}}");
        render_with(
            &profile("edge", &t),
            &machine(),
            "t",
            &base(),
            None,
            &limits,
        )
    };
    assert_eq!(edge(1000).unwrap().len(), 1000);
    assert!(matches!(
        edge(1001),
        Err(RenderError::OutputTooLarge { max: 1000, .. })
    ));
}

#[test]
fn deep_recursion_is_an_error_not_a_stack_overflow() {
    let t = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let e = render(&profile("rec", t), &machine(), "t", &base(), None).unwrap_err();
    assert!(matches!(e, RenderError::Template { .. }), "{e:?}");
}

#[test]
fn source_size_is_capped() {
    let ok = "#".repeat(MAX_SOURCE_BYTES);
    assert!(render(&profile("fits", &ok), &machine(), "t", &base(), None).is_ok());
    let long = "#".repeat(MAX_SOURCE_BYTES + 1);
    let e = render(&profile("long", &long), &machine(), "t", &base(), None).unwrap_err();
    assert!(
        matches!(e, RenderError::SourceTooLarge { len, max, .. } if len == MAX_SOURCE_BYTES + 1 && max == MAX_SOURCE_BYTES),
        "{e:?}"
    );
}

#[tokio::test]
async fn bounded_render_runs_off_the_workers_and_meets_its_deadline() {
    // A normal template renders the same as on the calling thread.
    let p = Profile {
        name: "hadron".into(),
        ..Default::default()
    };
    let direct = render(&p, &machine(), "tok", &base(), None).unwrap();
    let bounded = render_bounded(&p, &machine(), "tok", &base(), None)
        .await
        .unwrap();
    assert_eq!(direct, bounded);
    // A deadline shorter than the work: the caller gets its answer at the deadline, and
    // the thread still ends by itself when its fuel runs out.
    let limits = Limits {
        fuel: 10_000_000,
        deadline: Duration::from_millis(20),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let e = render_bounded_with(
        &profile("slow", NESTED_LOOPS),
        &machine(),
        "t",
        &base(),
        None,
        &limits,
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&e, RenderError::Deadline { profile, .. } if profile == "slow"),
        "{e:?}"
    );
    assert!(e.to_string().contains("did not finish within 20ms"), "{e}");
}

#[tokio::test]
async fn a_render_that_waits_too_long_for_a_slot_is_busy_not_a_template_error() {
    // Every slot taken (as in a boot storm): the next request waits `queue`, then is told to
    // retry; it is not blamed on the template.
    let all = super::RENDER_SLOTS.acquire_many(4).await.unwrap();
    let limits = Limits {
        queue: Duration::from_millis(50),
        ..Limits::default()
    };
    let e = render_bounded_with(
        &profile("fine", "#cloud-config\nhostname: x\n"),
        &machine(),
        "t",
        &base(),
        None,
        &limits,
    )
    .await
    .unwrap_err();
    drop(all);
    assert!(
        matches!(&e, RenderError::Busy { profile, .. } if profile == "fine"),
        "{e:?}"
    );
    // With a slot free it renders.
    render_bounded_with(
        &profile("fine", "#cloud-config\nhostname: x\n"),
        &machine(),
        "t",
        &base(),
        None,
        &limits,
    )
    .await
    .unwrap();
}
