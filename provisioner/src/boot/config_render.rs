//! Per-machine Kairos cloud-configs: the profile's template (Jinja syntax, minijinja) rendered
//! with the machine's values. Undefined variables are errors, and every error names the profile
//! and the template line. Values are data, not template source: a hostile label cannot add
//! template code; in YAML positions use `| tojson` (valid YAML) to keep quotes and colons inert.
//!
//! Variables: `mac`, `hostname`, `uuid`, `serial`, `site`, `ip`, `labels` (map), `profile`,
//! `install.device`, `token` (this machine's enrollment token), `urls.base`, `urls.config`,
//! `urls.register`, `urls.progress`, `urls.logs`, `urls.attestation`, `syslog` (`host:port` or empty).
//!
//! Every render is bounded ([`Limits`]): minijinja fuel (steps and data), an output cap, a
//! source-size cap ([`MAX_SOURCE_BYTES`]), and, through [`render_bounded`], the blocking pool
//! (never an async worker), at most a few renders at once, and a deadline. [`render_bounded`]
//! also refuses a result that is not a `#cloud-config` YAML mapping ([`super::cloud_config`]).

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use inventory::{Machine, Profile};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;
use tokio::sync::Semaphore;

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
  attestation: {{ urls.attestation | tojson }}
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
    attestation: String,
}

/// Why a config was not rendered, for the operator: which profile, what went wrong (with the
/// template line where there is one) and, for a limit, what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The template does not parse, or fails while rendering (an undefined name, a bad filter).
    #[error("config template of profile {profile}{}: {message}", at_line(*line))]
    Template {
        profile: String,
        line: Option<usize>,
        message: String,
    },
    /// The source is longer than [`MAX_SOURCE_BYTES`] (checked when a profile is saved).
    #[error(
        "config template of profile {profile} is {len} bytes, over the limit of {max} bytes: \
         a cloud-config template is a few KiB; move large files to assets"
    )]
    SourceTooLarge {
        profile: String,
        len: usize,
        max: usize,
    },
    /// Rendering used up its fuel ([`Limits::fuel`]): too many steps or too much data.
    #[error(
        "config template of profile {profile}{}: rendering stopped after its work limit \
         ({fuel} units of minijinja fuel); look for loops over large values (range, labels) \
         or large repeated strings and simplify the template", at_line(*line)
    )]
    OutOfFuel {
        profile: String,
        line: Option<usize>,
        fuel: u64,
    },
    /// The output grew past [`Limits::max_output`] bytes.
    #[error(
        "config template of profile {profile}: the rendered config passed the output limit \
         of {max} bytes; a cloud-config is a few KiB, so look for loops that repeat output"
    )]
    OutputTooLarge { profile: String, max: usize },
    /// No result within [`Limits::deadline`] once it started rendering.
    #[error(
        "config template of profile {profile}: rendering did not finish within {}ms; \
         simplify the template's loops", deadline.as_millis()
    )]
    Deadline { profile: String, deadline: Duration },
    /// No render slot came free within [`Limits::queue`]: the server is busy (a boot storm
    /// larger than it can render for); the caller should retry (HTTP 503, `Retry-After`).
    #[error(
        "config of profile {profile}: the server is busy rendering other machines' configs \
         (waited {}s for a slot); retry shortly", waited.as_secs()
    )]
    Busy { profile: String, waited: Duration },
    /// The rendered config is not what the Kairos agent reads ([`super::cloud_config::check`]
    /// says why): the agent would silently use an empty config instead.
    #[error(
        "config template of profile {profile}: the rendered config is not a #cloud-config YAML \
         mapping: {reason}. The Kairos agent silently replaces such a config with an empty one \
         (the install never starts): begin the template with the line #cloud-config, then YAML \
         `key: value` entries (use `| tojson` for values that may hold YAML syntax)"
    )]
    NotCloudConfig { profile: String, reason: String },
    /// The rendering thread failed (a panic in the template engine).
    #[error("config template of profile {profile}: rendering failed: {message}")]
    Internal { profile: String, message: String },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

impl RenderError {
    /// The profile whose template this is about.
    pub fn profile(&self) -> &str {
        match self {
            RenderError::Template { profile, .. }
            | RenderError::SourceTooLarge { profile, .. }
            | RenderError::OutOfFuel { profile, .. }
            | RenderError::OutputTooLarge { profile, .. }
            | RenderError::Deadline { profile, .. }
            | RenderError::Busy { profile, .. }
            | RenderError::NotCloudConfig { profile, .. }
            | RenderError::Internal { profile, .. } => profile,
        }
    }
}

/// Longest template source a profile may carry, in bytes (checked at save and at render).
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// Bounds on one render. A template is code the operator wrote, run once per machine with that
/// machine's values, so a loop that is cheap for the sample machine at save time can be costly
/// for a real one: every render is bounded, not only the check at save time.
#[derive(Clone, Debug)]
pub struct Limits {
    /// minijinja fuel: about one unit per instruction and per 64 bytes of data the template
    /// creates, so it bounds both CPU time and memory, and the rendering thread ends by itself
    /// when it runs out (no thread is left spinning after a deadline).
    pub fuel: u64,
    /// Largest rendered config, in bytes.
    pub max_output: usize,
    /// Wall-clock bound on one render once it has a slot.
    pub deadline: Duration,
    /// How long a request waits for a render slot before it is told to retry
    /// ([`RenderError::Busy`]): in a boot storm thousands of configs queue for a few slots.
    pub queue: Duration,
}

impl Default for Limits {
    /// 200,000 fuel (the default template uses about 100; 200,000 is ~12 MB of data or
    /// ~15 ms of work: the 10^10-step nested loop stops there), 1 MiB of output, 5 s.
    fn default() -> Self {
        Limits {
            fuel: 200_000,
            max_output: 1024 * 1024,
            deadline: Duration::from_secs(5),
            queue: Duration::from_secs(30),
        }
    }
}

/// Renders at most this many templates at once, on the blocking pool; a render that passed its
/// deadline keeps its slot until its fuel ends it, so CPU spent on templates stays bounded.
/// A process-wide limit (not per `App`): it guards the process's CPU, like the blocking pool.
static RENDER_SLOTS: Semaphore = Semaphore::const_new(4);

/// The name a machine gets when the operator gave none: `node-` and its MAC's hex.
pub fn default_hostname(m: &Machine) -> String {
    let hex: String = m.mac.octets().iter().map(|b| format!("{b:02x}")).collect();
    format!("node-{hex}")
}

/// Renders `profile`'s template (or [`DEFAULT_TEMPLATE`]) for `machine` within the default
/// [`Limits`], off the async workers (at most [`RENDER_SLOTS`] at once; a request waits up to
/// [`Limits::queue`] for a slot), and gives up after [`Limits::deadline`]; then checks that
/// the result is a `#cloud-config` YAML mapping ([`super::cloud_config::check`]), the only kind
/// of config the Kairos agent uses. What the HTTP handlers call, at `/config` and when a
/// profile is saved.
///
/// Errors: every [`RenderError`] variant; each names the profile.
pub async fn render_bounded(
    profile: &Profile,
    machine: &Machine,
    token: &str,
    base: &Base,
    syslog: Option<String>,
) -> Result<String, RenderError> {
    render_bounded_with(profile, machine, token, base, syslog, &Limits::default()).await
}

/// [`render_bounded`] with explicit limits.
pub async fn render_bounded_with(
    profile: &Profile,
    machine: &Machine,
    token: &str,
    base: &Base,
    syslog: Option<String>,
    limits: &Limits,
) -> Result<String, RenderError> {
    check_source(profile)?;
    let (p, m, t, b, l) = (
        profile.clone(),
        machine.clone(),
        token.to_string(),
        base.clone(),
        limits.clone(),
    );
    let slot = match tokio::time::timeout(limits.queue, RENDER_SLOTS.acquire()).await {
        Ok(slot) => slot.expect("the render semaphore is never closed"),
        Err(_) => {
            return Err(RenderError::Busy {
                profile: profile.name.clone(),
                waited: limits.queue,
            })
        }
    };
    let work = async move {
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let config = render_with(&p, &m, &t, &b, syslog, &l)?;
            super::cloud_config::check(&config).map_err(|reason| RenderError::NotCloudConfig {
                profile: p.name.clone(),
                reason,
            })?;
            Ok(config)
        })
        .await
    };
    match tokio::time::timeout(limits.deadline, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(RenderError::Internal {
            profile: profile.name.clone(),
            message: e.to_string(),
        }),
        Err(_) => Err(RenderError::Deadline {
            profile: profile.name.clone(),
            deadline: limits.deadline,
        }),
    }
}

/// Refuses a template source longer than [`MAX_SOURCE_BYTES`].
pub fn check_source(profile: &Profile) -> Result<(), RenderError> {
    let len = profile.cloud_config.len();
    if len > MAX_SOURCE_BYTES {
        return Err(RenderError::SourceTooLarge {
            profile: profile.name.clone(),
            len,
            max: MAX_SOURCE_BYTES,
        });
    }
    Ok(())
}

/// Renders on the calling thread within the default fuel and output limits (no deadline: that
/// needs [`render_bounded`]). Blocks for as long as the fuel lasts; never call it on an async
/// worker.
pub fn render(
    profile: &Profile,
    machine: &Machine,
    token: &str,
    base: &Base,
    syslog: Option<String>,
) -> Result<String, RenderError> {
    render_with(profile, machine, token, base, syslog, &Limits::default())
}

/// [`render`] with explicit limits (`deadline` is not used here).
pub fn render_with(
    profile: &Profile,
    machine: &Machine,
    token: &str,
    base: &Base,
    syslog: Option<String>,
    limits: &Limits,
) -> Result<String, RenderError> {
    check_source(profile)?;
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
            attestation: base.api("attestation"),
        },
        syslog: syslog.unwrap_or_default(),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(limits.fuel));
    // Deep macro recursion would otherwise use the stack of a blocking-pool thread.
    env.set_recursion_limit(64);
    let name = format!("profile {}", profile.name);
    let mut out = CappedWriter {
        buf: Vec::new(),
        max: limits.max_output,
        exceeded: false,
    };
    let rendered = env.template_from_named_str(&name, template).and_then(|t| {
        t.render_captured_to(Value::from(minijinja::value::Serde(&ctx)), &mut out)
            .map(drop)
    });
    let profile_name = || profile.name.clone();
    match rendered {
        Ok(()) => String::from_utf8(out.buf).map_err(|e| RenderError::Internal {
            profile: profile_name(),
            message: e.to_string(),
        }),
        Err(_) if out.exceeded => Err(RenderError::OutputTooLarge {
            profile: profile_name(),
            max: limits.max_output,
        }),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(RenderError::OutOfFuel {
            profile: profile_name(),
            line: e.line(),
            fuel: limits.fuel,
        }),
        Err(e) => Err(RenderError::Template {
            profile: profile_name(),
            line: e.line(),
            message: e
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.kind().to_string()),
        }),
    }
}

/// An in-memory writer that fails once more than `max` bytes would be held, which stops the
/// render there (minijinja reports a write failure).
struct CappedWriter {
    buf: Vec<u8>,
    max: usize,
    exceeded: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.exceeded = true;
            return Err(io::Error::other("rendered config over the output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_render_tests.rs"]
mod tests;
