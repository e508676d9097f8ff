//! Per-machine Kairos cloud-configs: the profile's template (Jinja syntax, minijinja) rendered
//! with the machine's values. Undefined variables are errors, and every error names the profile
//! and the template line. Values are data, not template source: a hostile label cannot add
//! template code; in YAML positions use `| tojson` (valid YAML) to keep quotes and colons inert.
//!
//! Variables: `mac`, `hostname`, `uuid`, `serial`, `site`, `ip`, `labels` (map), `profile`,
//! `install.device`, `token` (this machine's enrollment token), `urls.base`, `urls.config`,
//! `urls.register`, `urls.progress`, `urls.logs`, `syslog` (`host:port` or empty).

use std::collections::BTreeMap;

use inventory::{Machine, Profile};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use super::Base;

/// Used when a profile has no template: a zero-touch Kairos install.
pub const DEFAULT_TEMPLATE: &str = r#"#cloud-config
hostname: {{ hostname | tojson }}
install:
  device: {{ install.device | tojson }}
  auto: true
  reboot: true
provisioner:
  url: {{ urls.base | tojson }}
  token: {{ token | tojson }}
  register: {{ urls.register | tojson }}
  progress: {{ urls.progress | tojson }}
  logs: {{ urls.logs | tojson }}
  syslog: {{ syslog | tojson }}
"#;

#[derive(Serialize)]
struct Context<'a> {
    mac: String,
    hostname: String,
    uuid: &'a str,
    serial: &'a str,
    site: &'a str,
    ip: String,
    labels: &'a BTreeMap<String, String>,
    profile: &'a str,
    install: Install<'a>,
    token: &'a str,
    urls: Urls,
    syslog: String,
}

#[derive(Serialize)]
struct Install<'a> {
    device: &'a str,
}

#[derive(Serialize)]
struct Urls {
    base: String,
    config: String,
    register: String,
    progress: String,
    logs: String,
}

/// A template problem, for the operator: which profile, which line, what.
#[derive(Debug, thiserror::Error)]
#[error("config template of profile {profile}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct RenderError {
    pub profile: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The name a machine gets when the operator gave none: `node-` and its MAC's hex.
pub fn default_hostname(m: &Machine) -> String {
    let hex: String = m.mac.octets().iter().map(|b| format!("{b:02x}")).collect();
    format!("node-{hex}")
}

pub fn render(
    profile: &Profile,
    machine: &Machine,
    token: &str,
    base: &Base,
    syslog: Option<String>,
) -> Result<String, RenderError> {
    let template = if profile.cloud_config.trim().is_empty() {
        DEFAULT_TEMPLATE
    } else {
        profile.cloud_config.as_str()
    };
    let spec = &machine.spec;
    let ctx = Context {
        mac: machine.mac.to_string(),
        hostname: spec
            .hostname
            .clone()
            .unwrap_or_else(|| default_hostname(machine)),
        uuid: spec.uuid.as_deref().unwrap_or(""),
        serial: spec.serial.as_deref().unwrap_or(""),
        site: spec.site.as_deref().unwrap_or(""),
        ip: spec.ip.map(|i| i.to_string()).unwrap_or_default(),
        labels: &spec.labels,
        profile: &profile.name,
        install: Install {
            device: profile.install_disk.as_deref().unwrap_or("auto"),
        },
        token,
        urls: Urls {
            base: base.as_str().to_string(),
            config: base.config(machine.mac),
            register: base.api("register"),
            progress: base.api("progress"),
            logs: base.api("logs"),
        },
        syslog: syslog.unwrap_or_default(),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let name = format!("profile {}", profile.name);
    env.render_named_str(&name, template, Value::from(minijinja::value::Serde(&ctx)))
        .map_err(|e| RenderError {
            profile: profile.name.clone(),
            line: e.line(),
            message: e
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.kind().to_string()),
        })
}

#[cfg(test)]
mod tests {
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
        Base("http://198.18.0.1:8080".into())
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
            cloud_config: "#cloud-config\nhostname: {{ hostname }}\nx: {{ no_such_thing }}\n"
                .into(),
            ..Default::default()
        };
        let e = render(&p, &machine(), "t", &base(), None).unwrap_err();
        assert_eq!((e.profile.as_str(), e.line), ("broken", Some(3)));
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
        assert_eq!(e.line, Some(2), "{e}");
    }
}
