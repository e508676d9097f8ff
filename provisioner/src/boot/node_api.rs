//! The API machines call, authenticated by their own token (rendered into their config):
//! install progress, log lines, and registration in the Kairos phone-home shape
//! (`POST /api/v1/nodes/register` `{registrationToken, machineID, hostname, agentVersion,
//! addresses, bootState}` → `{id, apiKey}`), so stock Kairos nodes can register with us.
//!
//! Anyone on the provisioning network can call these, so no body is read before it is known to
//! be small: progress and logs authenticate from the headers (`Authorization: Bearer` or
//! `?token=`) before a byte of the body is read; registration carries its token in the body
//! (the Kairos shape), so its body is read under the same small limit. Every body has a size
//! limit ([`SMALL_BODY`], [`LOG_BODY`]) and must arrive within [`BODY_DEADLINE`].

// Handlers answer errors as ready responses (axum's idiom); their size does not matter here.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inventory::{
    lifecycle, EventKind, Machine, NewEvent, NewLogLine, Registration, State as Life, Transition,
};
use serde::{Deserialize, Serialize};

use super::handlers;
use super::machine_query::MachineQuery;
use crate::app::{now, App};
use crate::http::error::ErrorBody;
use crate::http::extract::bearer_token;
use crate::http::ApiError;
use crate::http_server::{read_limited, BodyError};

/// Largest registration or progress body (bytes). A Kairos registration is under 4 KiB.
pub const SMALL_BODY: usize = 16 * 1024;
/// Largest log upload (bytes): up to 1000 lines are kept per call.
pub const LOG_BODY: usize = 256 * 1024;
/// A machine's whole request body must arrive within this.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The body of a machine request, read under `limit` and [`BODY_DEADLINE`].
pub(super) async fn small_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Response> {
    read_limited(headers, body, limit, BODY_DEADLINE)
        .await
        .map_err(|e| {
            let status = match e {
                BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
                BodyError::Failed(_) => StatusCode::BAD_REQUEST,
            };
            ApiError::new(status, "bad_body", e.to_string()).into_response()
        })
}

/// `bytes` as JSON of type `T`; errors in the API's shape.
pub(super) fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")).into_response())
}

/// A registration, in the Kairos phone-home shape; unknown fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The machine's enrollment token (rendered into its config).
    registration_token: String,
    /// The OS's `/etc/machine-id` (1-128 printable characters).
    #[serde(rename = "machineID")]
    machine_id: String,
    /// The host name the OS reports.
    #[serde(default)]
    hostname: String,
    /// The agent's version.
    #[serde(default)]
    agent_version: String,
    /// The OS's addresses, as text.
    #[serde(default)]
    addresses: Vec<String>,
    /// Kairos' boot state (`active_boot`, `recovery_boot`, …); `unknown` when empty.
    #[serde(default)]
    boot_state: String,
}

/// What a registration answers (the Kairos shape).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The machine's id: its MAC.
    id: String,
    /// The machine's API key, derived from its token epoch and the reported machine-id.
    api_key: String,
}

/// The machine a token names, or a JSON 401 (`unauthorized`) for one this server did not issue
/// or has revoked: the machines' API answers every error as an [`ApiError`].
async fn machine_for_token(app: &App, token: &str) -> Result<Machine, Response> {
    handlers::machine_for_token(app, token).await.map_err(|r| {
        let (status, code, detail) = match r.status() {
            StatusCode::UNAUTHORIZED => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "machine token not recognised",
            ),
            s => (
                s,
                "internal",
                "reading the machine failed (see the server's log)",
            ),
        };
        ApiError::new(status, code, detail).into_response()
    })
}

/// What a 408 of a machine call means (in the API description).
pub(super) const BODY_ERRORS: &str = "The body did not arrive within 30 s (`bad_body`).";

/// Registrations reporting the same machine-id take turns (see [`register`]): one lock per
/// stripe, the stripe chosen by the machine-id's hash, so registrations of different OSes run
/// side by side (and share their fsyncs: group commit) instead of one at a time. A storm of
/// 1,000 registrations through one process-wide lock queued behind 1,000 fsyncs: p50 15 s.
static REGISTRATIONS: [tokio::sync::Mutex<()>; REGISTRATION_STRIPES] =
    [const { tokio::sync::Mutex::const_new(()) }; REGISTRATION_STRIPES];
const REGISTRATION_STRIPES: usize = 64;

/// The lock registrations reporting machine-id `id` take.
fn registration_lock(id: &str) -> &'static tokio::sync::Mutex<()> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    &REGISTRATIONS[(h.finish() % REGISTRATION_STRIPES as u64) as usize]
}

/// The warning recorded on a machine that reports machine-id `id`, which `others` also report:
/// cloned disk images share `/etc/machine-id`, so a machine-id is data, never identity (the
/// machine token says which machine registers).
fn duplicate_id_note(id: &str, others: &[inventory::Mac]) -> EventKind {
    let others: Vec<String> = others.iter().map(|m| m.to_string()).collect();
    EventKind::Note {
        message: format!(
            "warning: machineID {id} is also reported by {}; cloned images share \
             /etc/machine-id: give each machine its own (e.g. empty /etc/machine-id in the image)",
            others.join(", ")
        ),
    }
}

/// The transitions that take a machine from where it is to `ready`.
fn path_to_ready(state: Life) -> Option<Vec<Transition>> {
    use Transition as T;
    Some(match state {
        Life::Ready => vec![],
        Life::Installed => vec![T::Ready],
        Life::Booting | Life::Installing => vec![T::InstallDone, T::Ready],
        Life::Registered | Life::Reprovision => vec![T::Boot, T::InstallDone, T::Ready],
        Life::Unknown | Life::Discovered | Life::Failed => return None,
    })
}

fn apply_all(
    m: &mut Machine,
    steps: &[Transition],
    t: inventory::Timestamp,
) -> inventory::Result<Vec<EventKind>> {
    steps.iter().map(|s| m.transition(s, t)).collect()
}

/// `POST /api/v1/nodes/register`: the registration token says which machine this is; moves it
/// to `ready`. A replay (same machine-id and boot state, already `ready`) changes nothing. A
/// machine-id that other machines also report is no reason to refuse (cloned images share
/// one): each such registration records a warning on this machine and on each of the others,
/// naming each other. The token is in the body, which is read only up to [`SMALL_BODY`] bytes.
#[utoipa::path(post, path = "/api/v1/nodes/register", tag = "nodes",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered (or a replay): the machine is `ready`.", body = RegisterResponse),
        (status = 400, description = "Bad JSON or machineID.", body = ErrorBody),
        (status = 401, description = "The registration token is not one this server issued (`unauthorized`).", body = ErrorBody),
        (status = 408, description = BODY_ERRORS, body = ErrorBody),
        (status = 409, description = "Ready as another OS, or not installable from its state (`illegal_transition`).", body = ErrorBody),
    ))]
pub async fn register(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let req: RegisterRequest = json(&small_body(&headers, body, SMALL_BODY).await?)?;
    let machine = machine_for_token(&app, &req.registration_token).await?;
    let id = req.machine_id.trim().to_string();
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(
            ApiError::bad_request("machineID must be 1-128 printable characters").into_response(),
        );
    }
    let mac = machine.mac;
    // One registration per machine-id at a time: the look-up for machines already reporting
    // this machine-id and the write that follows must see each other, or two clones registering
    // at once would both miss the other. Other machine-ids do not wait (see `REGISTRATIONS`).
    let _same_id_one_at_a_time = registration_lock(&id).lock().await;
    let others: Vec<inventory::Mac> = {
        let id = id.clone();
        // The store's machine-id index: one look-up, not a scan of the inventory (a scan per
        // registration, under this lock, made a 10,000-machine storm's registrations O(n²)).
        app.read(move |s| {
            Ok(s.machines_by_machine_id(&id)?
                .into_iter()
                .filter(|m| m.mac != mac)
                .map(|m| m.mac)
                .collect())
        })
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    };
    if let (Life::Ready, Some(r)) = (machine.state(), &machine.registration) {
        if r.machine_id != id {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "illegal_transition",
                format!(
                    "{} is ready and registered as machine-id {}; `provisioner machines reprovision {}` to register a new OS",
                    machine.mac,
                    inventory::excerpt(&r.machine_id, 80),
                    machine.mac
                ),
            )
            .into_response());
        }
    }
    let t = now();
    let boot_state = if req.boot_state.is_empty() {
        "unknown".to_string()
    } else {
        req.boot_state
    };
    // What the OS says about itself is shown to operators: no control characters (terminal
    // escapes), bounded lengths.
    let text = |s: String, max: usize| clean(Some(s), max).unwrap_or_default();
    let reg = Registration {
        machine_id: id.clone(),
        hostname: text(req.hostname, 253),
        agent_version: text(req.agent_version, 64),
        addresses: req
            .addresses
            .into_iter()
            .take(32)
            .map(|a| text(a, 64))
            .collect(),
        boot_state: text(boot_state, 64),
        at: t,
    };
    // A boot-state change (the OS rebooting into another partition) is recorded at most once
    // a minute per machine and state: a token holder cannot grow the history by flipping it.
    let topic = crate::dhcp::seen_limit::topic(
        &EventKind::Note {
            message: format!("registered {} {}", reg.machine_id, reg.boot_state),
        },
        false,
    );
    let fresh = app
        .boot
        .transfer_events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(mac, topic, t);
    let (stored, _) = app
        .write(move |s| {
            let (m, mut events) = s.update_machine(mac, t, &mut |m| {
                let same_os = m
                    .registration
                    .as_ref()
                    .is_some_and(|r| r.machine_id == reg.machine_id);
                let same = same_os
                    && m.registration.as_ref().map(|r| r.boot_state.as_str())
                        == Some(reg.boot_state.as_str());
                if m.state() == Life::Ready && (same || (same_os && !fresh)) {
                    return Ok(vec![]); // a replay, or a boot-state flip within the minute
                }
                // Once its OS registered, a machine stays that OS until an operator reprovisions
                // it: a token seen during the install cannot re-register it as another OS and so
                // revoke the real OS's apiKey.
                if let (Life::Ready, Some(r)) = (m.state(), &m.registration) {
                    if r.machine_id != reg.machine_id {
                        return Err(inventory::Error::IllegalTransition {
                            from: m.state(),
                            transition: Transition::Ready,
                        });
                    }
                }
                let steps = path_to_ready(m.state()).ok_or_else(|| {
                    inventory::Error::IllegalTransition {
                        from: m.state(),
                        transition: Transition::Ready,
                    }
                })?;
                let mut events = vec![EventKind::Registered {
                    machine_id: reg.machine_id.clone(),
                    boot_state: reg.boot_state.clone(),
                    agent_version: reg.agent_version.clone(),
                }];
                // Clones are worth a warning when the machine-id is new to this machine, not
                // on every boot-state change.
                if !others.is_empty() && !same_os {
                    events.push(duplicate_id_note(&reg.machine_id, &others));
                }
                events.extend(apply_all(m, &steps, t)?);
                m.registration = Some(reg.clone());
                m.last_seen = Some(t);
                Ok(events)
            })?;
            let new_id = events.iter().any(|e| {
                matches!(&e.kind, EventKind::Note { message } if message.starts_with("warning: machineID"))
            });
            if new_id && !others.is_empty() {
                let notes = others
                    .iter()
                    .map(|o| NewEvent::machine(*o, duplicate_id_note(&reg.machine_id, &[mac])))
                    .collect();
                // The registration stands even if this fails: a retry would be a replay and
                // add nothing, so the failure is logged rather than answered.
                match s.append_events(notes, t) {
                    Ok(more) => events.extend(more),
                    Err(e) => {
                        tracing::warn!(%mac, error = %e, "recording a duplicate machine-id on the other machines failed")
                    }
                }
            }
            Ok(((m, events.len()), events))
        })
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    Ok(Json(RegisterResponse {
        id: stored.mac.to_string(),
        api_key: app.boot.keys.api_key(&stored, &id),
    })
    .into_response())
}

/// Fields an installer does not know to send are optional, and fields we do not use are
/// ignored (a newer installer may send more).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProgressRequest {
    /// `installing`, `installed` or `failed`.
    state: String,
    /// The installer's phase (e.g. `partition`); `state` when absent.
    #[serde(default)]
    phase: Option<String>,
    /// How far the phase is (0–100; more counts as 100).
    #[serde(default)]
    percent: Option<u8>,
    /// A message for the operator.
    #[serde(default)]
    message: Option<String>,
    /// Why it failed (with `failed`).
    #[serde(default)]
    reason: Option<String>,
}

/// Read with [`MachineQuery`]: other parameters are ignored, an empty `token=` is absent.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The machine's token, for installers that cannot set `Authorization`.
    token: Option<String>,
}

/// The machine whose token the request carries in its headers (or `?token=`).
pub(super) async fn caller(
    app: &App,
    headers: &HeaderMap,
    q: &TokenQuery,
) -> Result<Machine, Response> {
    let from_query = q.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let Some(t) = bearer_token(headers).or(from_query) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing 'Authorization: Bearer <machine token>' (the token is in the machine's config)",
        )
        .into_response());
    };
    machine_for_token(app, t).await
}

fn clean(s: Option<String>, max: usize) -> Option<String> {
    s.map(|s| {
        NewLogLine::new("", None, None, &s)
            .text
            .chars()
            .take(max)
            .collect()
    })
}

/// Whether a machine in state `s` runs (or is about to run) the installer of a netbooted UKI.
pub(super) fn installer_running(s: Life) -> bool {
    matches!(
        s,
        Life::Registered | Life::Reprovision | Life::Booting | Life::Installing
    )
}

/// [`caller`], refused with 409 unless its installer runs: what an installer reports (`what`:
/// progress, attestation) cannot move a machine once the install is over (installed, ready) or
/// before it may start (discovered, failed).
pub(super) async fn installer_caller(
    app: &App,
    headers: &HeaderMap,
    q: &TokenQuery,
    what: &str,
) -> Result<Machine, Response> {
    let machine = caller(app, headers, q).await?;
    if !installer_running(machine.state()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "illegal_transition",
            format!(
                "{} is {}: {what} is for installers; `provisioner machines reprovision {}` to install again",
                machine.mac,
                machine.state(),
                machine.mac
            ),
        )
        .into_response());
    }
    Ok(machine)
}

/// `POST /api/v1/nodes/progress`: `{state, phase?, percent?, message?, reason?}`; the token
/// is checked before the body (at most [`SMALL_BODY`] bytes) is read.
#[utoipa::path(post, path = "/api/v1/nodes/progress", tag = "nodes",
    security(("machine" = []), ("machine_query" = [])),
    request_body = ProgressRequest,
    responses(
        (status = 204, description = "Recorded."),
        (status = 400, description = "Bad JSON or state.", body = ErrorBody),
        (status = 408, description = BODY_ERRORS, body = ErrorBody),
        (status = 409, description = "The machine's installer is not running, or the step is not possible from its state (`illegal_transition`).", body = ErrorBody),
    ))]
pub async fn progress(
    State(app): State<App>,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<TokenQuery>,
    body: Body,
) -> Result<StatusCode, Response> {
    let machine = installer_caller(&app, &headers, &q, "progress").await?;
    let req: ProgressRequest = json(&small_body(&headers, body, SMALL_BODY).await?)?;
    let steps: Vec<Transition> = match req.state.as_str() {
        "installing" => vec![Transition::Progress],
        "installed" => vec![Transition::InstallDone],
        "failed" => vec![Transition::Fail {
            reason: clean(req.reason.clone(), 300)
                .unwrap_or_else(|| "installer reported failure".into()),
        }],
        other => {
            return Err(ApiError::bad_request(format!(
                "state {:?}: expected installing, installed or failed",
                inventory::excerpt(other, inventory::error::MAX_ECHO)
            ))
            .into_response())
        }
    };
    let progress = EventKind::Progress {
        phase: clean(req.phase, 64).unwrap_or_else(|| req.state.clone()),
        percent: req.percent.map(|p| p.min(100)),
        message: clean(req.message, 300),
    };
    let t = now();
    // Progress events: at most a burst of 120 and then 60 a minute per machine (an installer
    // reports a few dozen); past that only lifecycle steps are recorded, so a token holder
    // cannot grow the history without bound.
    let record = app
        .boot
        .progress_events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(machine.mac, t);
    app.write(move |s| {
        let (_, events) = s.update_machine(machine.mac, t, &mut |m| {
            let mut events = if record {
                vec![progress.clone()]
            } else {
                Vec::new()
            };
            let mut steps = steps.clone();
            // An installer that starts without our script (HTTP boot, USB) still counts.
            if matches!(m.state(), Life::Registered | Life::Reprovision) {
                steps.insert(0, Transition::Boot);
            }
            for step in &steps {
                if m.state() == Life::Installing && *step == Transition::Progress {
                    continue; // already there: the event alone says it
                }
                if lifecycle::next(m.state(), step).is_none() {
                    return Err(inventory::Error::IllegalTransition {
                        from: m.state(),
                        transition: step.clone(),
                    });
                }
                events.push(m.transition(step, t)?);
            }
            if record || !events.is_empty() {
                m.last_seen = Some(t);
            }
            Ok(events)
        })?;
        Ok(((), events))
    })
    .await
    .map_err(|e| ApiError::from(e).into_response())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/nodes/logs`: a text body, one log line per line (at most 1000 per call, at
/// most [`LOG_BODY`] bytes); the token is checked before the body is read.
#[utoipa::path(post, path = "/api/v1/nodes/logs", tag = "nodes",
    security(("machine" = []), ("machine_query" = [])),
    request_body(content = String, content_type = "text/plain",
        description = "One log line per line (UTF-8; at most 1000 lines and 256 KiB)."),
    responses(
        (status = 204, description = "Stored."),
        (status = 400, description = "Not UTF-8.", body = ErrorBody),
        (status = 408, description = BODY_ERRORS, body = ErrorBody),
    ))]
pub async fn logs(
    State(app): State<App>,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<TokenQuery>,
    body: Body,
) -> Result<StatusCode, Response> {
    let machine = caller(&app, &headers, &q).await?;
    let bytes = small_body(&headers, body, LOG_BODY).await?;
    let body = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::bad_request(format!("log lines must be UTF-8 text: {e}")).into_response()
    })?;
    let lines: Vec<_> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(1000)
        .map(|l| (machine.mac, NewLogLine::new("installer", None, None, l)))
        .collect();
    if !lines.is_empty() {
        app.append_logs(lines)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
    }
    Ok(StatusCode::NO_CONTENT)
}
