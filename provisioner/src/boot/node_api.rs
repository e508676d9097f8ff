//! The API machines call, authenticated by their own token (rendered into their config):
//! install progress, log lines, and registration in the Kairos phone-home shape
//! (`POST /api/v1/nodes/register` `{registrationToken, machineID, hostname, agentVersion,
//! addresses, bootState}` → `{id, apiKey}`), so stock Kairos nodes can register with us.

// Handlers answer errors as ready responses (axum's idiom); their size does not matter here.
#![allow(clippy::result_large_err)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inventory::{
    lifecycle, EventKind, Machine, NewLogLine, Registration, State as Life, Transition,
};
use serde::{Deserialize, Serialize};

use super::handlers::{bearer, machine_for_token};
use crate::api::{ApiError, ApiJson, ApiQuery};
use crate::app::{now, App};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    registration_token: String,
    #[serde(rename = "machineID")]
    machine_id: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    agent_version: String,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    boot_state: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    id: String,
    api_key: String,
}

fn conflict(detail: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "illegal_transition", detail)
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

/// `POST /api/v1/nodes/register`: idempotent by machine-id; moves the machine to `ready`.
pub async fn register(
    State(app): State<App>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Response, Response> {
    let machine = machine_for_token(&app, &req.registration_token).await?;
    let id = req.machine_id.trim().to_string();
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control()) {
        return Err(
            ApiError::bad_request("machineID must be 1-128 printable characters").into_response(),
        );
    }
    let mac = machine.mac;
    let others = {
        let id = id.clone();
        app.read(move |s| {
            Ok(s.machines()?.into_iter().find(|m| {
                m.mac != mac && m.registration.as_ref().is_some_and(|r| r.machine_id == id)
            }))
        })
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    };
    if let Some(o) = others {
        return Err(
            conflict(format!("machineID {id} is already registered to {}", o.mac)).into_response(),
        );
    }
    let t = now();
    let boot_state = if req.boot_state.is_empty() {
        "unknown".to_string()
    } else {
        req.boot_state
    };
    let reg = Registration {
        machine_id: id.clone(),
        hostname: req.hostname,
        agent_version: req.agent_version,
        addresses: req.addresses.into_iter().take(32).collect(),
        boot_state,
        at: t,
    };
    let (stored, _) = app
        .write(move |s| {
            let (m, events) = s.update_machine(mac, t, &mut |m| {
                let same = m.registration.as_ref().is_some_and(|r| {
                    r.machine_id == reg.machine_id && r.boot_state == reg.boot_state
                });
                if same && m.state() == Life::Ready {
                    return Ok(vec![]); // a replay: nothing changes
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
                events.extend(apply_all(m, &steps, t)?);
                m.registration = Some(reg.clone());
                m.last_seen = Some(t);
                Ok(events)
            })?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// `installing`, `installed` or `failed`.
    state: String,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    percent: Option<u8>,
    #[serde(default)]
    message: Option<String>,
    /// Why it failed (with `failed`).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    token: Option<String>,
}

async fn caller(app: &App, headers: &HeaderMap, q: &TokenQuery) -> Result<Machine, Response> {
    let Some(t) = bearer(headers, q.token.as_deref()) else {
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

/// `POST /api/v1/nodes/progress`: `{state, phase?, percent?, message?, reason?}`.
pub async fn progress(
    State(app): State<App>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
    ApiJson(req): ApiJson<ProgressRequest>,
) -> Result<StatusCode, Response> {
    let machine = caller(&app, &headers, &q).await?;
    let steps: Vec<Transition> = match req.state.as_str() {
        "installing" => vec![Transition::Progress],
        "installed" => vec![Transition::InstallDone],
        "failed" => vec![Transition::Fail {
            reason: clean(req.reason.clone(), 300)
                .unwrap_or_else(|| "installer reported failure".into()),
        }],
        other => {
            return Err(ApiError::bad_request(format!(
                "state {other:?}: expected installing, installed or failed"
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
    app.write(move |s| {
        let (_, events) = s.update_machine(machine.mac, t, &mut |m| {
            let mut events = vec![progress.clone()];
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
            m.last_seen = Some(t);
            Ok(events)
        })?;
        Ok(((), events))
    })
    .await
    .map_err(|e| ApiError::from(e).into_response())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/nodes/logs`: a text body, one log line per line (at most 1000 per call).
pub async fn logs(
    State(app): State<App>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TokenQuery>,
    body: String,
) -> Result<StatusCode, Response> {
    let machine = caller(&app, &headers, &q).await?;
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
