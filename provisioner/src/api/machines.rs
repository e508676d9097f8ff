//! `/api/v1/machines`: CRUD, CSV import and operator actions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::app::{now, App};
use crate::http::error::ErrorBody;
use crate::http::{ApiError, ApiJson, ApiQuery};
use inventory::{
    EventKind, Lease, Mac, Machine, MachineSpec, State as LifeState, Timestamp, Transition,
};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/machines", get(list).post(create))
        .route("/machines/import", post(import))
        .route("/machines/{mac}", get(show).put(replace).delete(remove))
        .route("/machines/{mac}/reprovision", post(reprovision))
        .route("/machines/{mac}/approve", post(approve))
}

fn parse_mac(s: &str) -> Result<Mac, ApiError> {
    Ok(s.parse::<Mac>()?)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only machines in this lifecycle state.
    state: Option<LifeState>,
    /// Only machines of this profile.
    profile: Option<String>,
}

/// One machine of `GET /machines`: the stored record plus the address it holds now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MachineListItem {
    #[serde(flatten)]
    pub machine: Machine,
    /// The address of the machine's active DHCP binding (a lease we granted, else one proxy mode
    /// observed), so an operator sees where a machine is even without a reserved `ip`; absent
    /// when it holds none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Ipv4)]
    pub address: Option<Ipv4Addr>,
}

/// Each MAC's current address from one read of the lease table (no query per machine): among
/// its active bindings, a granted lease beats an observed one, then the later expiry wins.
fn leased_addresses(leases: Vec<Lease>, now: Timestamp) -> HashMap<Mac, Ipv4Addr> {
    let mut best: HashMap<Mac, Lease> = HashMap::new();
    for l in leases.into_iter().filter(|l| l.is_active(now)) {
        let rank = |l: &Lease| (!l.observed, l.expires);
        match best.get(&l.mac) {
            Some(b) if rank(b) >= rank(&l) => {}
            _ => {
                best.insert(l.mac, l);
            }
        }
    }
    best.into_iter().map(|(mac, l)| (mac, l.ip)).collect()
}

/// The machine path parameter: a MAC (`aa:bb:cc:dd:ee:ff`, also `-`-separated or upper case).
const MAC_PARAM: &str =
    "The machine's MAC (`aa:bb:cc:dd:ee:ff`; `-` separators and upper case are accepted).";

#[utoipa::path(get, path = "/api/v1/machines", tag = "machines", params(ListQuery),
    security(("operator" = [])),
    responses((status = 200, description = "Every machine (filtered), with its current address.", body = Vec<MachineListItem>)))]
pub(super) async fn list(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<MachineListItem>>, ApiError> {
    let (mut all, leases) = app.read(|s| Ok((s.machines()?, s.leases()?))).await?;
    all.retain(|m| {
        q.state.is_none_or(|st| m.state() == st)
            && q.profile
                .as_ref()
                .is_none_or(|p| m.spec.profile.as_ref() == Some(p))
    });
    let addresses = leased_addresses(leases, now());
    Ok(Json(
        all.into_iter()
            .map(|machine| MachineListItem {
                address: addresses.get(&machine.mac).copied(),
                machine,
            })
            .collect(),
    ))
}

/// Body of `POST /machines` (for the API description; the handler reads it as a map to name a
/// missing or bad `mac` precisely).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewMachine {
    /// The new machine's MAC.
    mac: Mac,
    /// The operator fields (flattened into the object).
    #[serde(flatten)]
    spec: MachineSpec,
}

/// Body of `POST /machines`: `{"mac": "...", <MachineSpec fields>}`.
#[utoipa::path(post, path = "/api/v1/machines", tag = "machines",
    security(("operator" = [])),
    request_body = NewMachine,
    responses(
        (status = 201, description = "Created, in state `registered`.", body = Machine),
        (status = 400, description = "Bad or missing field.", body = ErrorBody),
        (status = 409, description = "The MAC, address or UUID is taken (`exists`, `ip_reserved`, `uuid_taken`, …).", body = ErrorBody),
    ))]
pub(super) async fn create(
    State(app): State<App>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, Json<Machine>), ApiError> {
    let mut body = body;
    let mac = match body.remove("mac") {
        Some(serde_json::Value::String(s)) => parse_mac(&s)?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "\"mac\" must be a string, got {other}"
            )))
        }
        None => return Err(ApiError::bad_request("missing field \"mac\"")),
    };
    let spec: MachineSpec = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let spec = spec.validate()?;
    let t = now();
    let machine = Machine::registered(mac, spec, t);
    let stored = machine.clone();
    app.write(move |s| Ok(((), s.create_machines(vec![machine], "operator", t)?)))
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// The answer of an import.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    /// Machines created.
    imported: usize,
}

/// `POST /machines/import` with a CSV body (see `import.rs` for the format). All or nothing.
#[utoipa::path(post, path = "/api/v1/machines/import", tag = "machines",
    security(("operator" = [])),
    request_body(content = String, content_type = "text/csv",
        description = "Header `mac,hostname,profile,ip,uuid,serial,site,labels` (see the README's CSV import)."),
    responses(
        (status = 200, description = "All rows imported.", body = ImportResult),
        (status = 400, description = "Problems in the CSV (`bad_csv`, per line in `lines`); nothing imported.", body = ErrorBody),
        (status = 409, description = "A row's MAC, address or UUID is taken; nothing imported.", body = ErrorBody),
    ))]
pub(super) async fn import(
    State(app): State<App>,
    body: String,
) -> Result<Json<ImportResult>, ApiError> {
    let rows = crate::import::parse(&body).map_err(|problems| {
        let mut e = ApiError::bad_request(format!(
            "{} problem(s) in the CSV (see \"lines\"); nothing was imported",
            problems.total
        ));
        e.body.error = "bad_csv";
        e.body.lines = problems.lines;
        e
    })?;
    let t = now();
    let machines: Vec<Machine> = rows
        .into_iter()
        .map(|(mac, spec)| Machine::registered(mac, spec, t))
        .collect();
    let n = machines.len();
    app.write(move |s| Ok(((), s.create_machines(machines, "import", t)?)))
        .await?;
    Ok(Json(ImportResult { imported: n }))
}

#[utoipa::path(get, path = "/api/v1/machines/{mac}", tag = "machines",
    security(("operator" = [])),
    params(("mac" = String, Path, description = MAC_PARAM)),
    responses(
        (status = 200, description = "The machine.", body = Machine),
        (status = 404, description = "No such machine.", body = ErrorBody),
    ))]
pub(super) async fn show(
    State(app): State<App>,
    Path(mac): Path<String>,
) -> Result<Json<Machine>, ApiError> {
    let mac = parse_mac(&mac)?;
    let m = app.read(move |s| s.machine(mac)).await?;
    m.map(Json).ok_or_else(|| {
        inventory::Error::MachineNotFound {
            mac: mac.to_string(),
        }
        .into()
    })
}

/// `PUT /machines/{mac}`: replaces the operator-editable fields; state and observations stay.
#[utoipa::path(put, path = "/api/v1/machines/{mac}", tag = "machines",
    security(("operator" = [])),
    params(("mac" = String, Path, description = MAC_PARAM)),
    request_body = MachineSpec,
    responses(
        (status = 200, description = "The machine as stored.", body = Machine),
        (status = 404, description = "No such machine.", body = ErrorBody),
        (status = 409, description = "The address or UUID is taken.", body = ErrorBody),
    ))]
pub(super) async fn replace(
    State(app): State<App>,
    Path(mac): Path<String>,
    ApiJson(spec): ApiJson<MachineSpec>,
) -> Result<Json<Machine>, ApiError> {
    let mac = parse_mac(&mac)?;
    let spec = spec.validate()?;
    let t = now();
    let m = app
        .write(move |s| {
            s.update_machine(mac, t, &mut |m| {
                if m.spec == spec {
                    return Ok(vec![]);
                }
                m.spec = spec.clone();
                Ok(vec![EventKind::Updated])
            })
        })
        .await?;
    Ok(Json(m))
}

#[utoipa::path(delete, path = "/api/v1/machines/{mac}", tag = "machines",
    security(("operator" = [])),
    params(("mac" = String, Path, description = MAC_PARAM)),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such machine.", body = ErrorBody),
    ))]
pub(super) async fn remove(
    State(app): State<App>,
    Path(mac): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mac = parse_mac(&mac)?;
    let t = now();
    app.write(move |s| Ok(((), s.delete_machine(mac, t)?)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Applies an operator action: an `operator` event followed by the state change.
async fn operator_action(
    app: &App,
    mac: Mac,
    action: &'static str,
    t: Transition,
    profile: Option<String>,
) -> Result<Json<Machine>, ApiError> {
    let now = now();
    let m = app
        .write(move |s| {
            s.update_machine(mac, now, &mut |m| {
                let step = m.transition(&t, now)?;
                // A reinstall gets new credentials: whatever the old install leaked dies with it.
                if t == Transition::Reprovision {
                    m.token_epoch = m.token_epoch.saturating_add(1);
                }
                if let Some(p) = &profile {
                    m.spec.profile = Some(p.clone());
                }
                Ok(vec![
                    EventKind::Operator {
                        action: action.into(),
                    },
                    step,
                ])
            })
        })
        .await?;
    Ok(Json(m))
}

#[utoipa::path(post, path = "/api/v1/machines/{mac}/reprovision", tag = "machines",
    security(("operator" = [])),
    params(("mac" = String, Path, description = MAC_PARAM)),
    responses(
        (status = 200, description = "The machine, now in `reprovision` (its token epoch raised).", body = Machine),
        (status = 404, description = "No such machine.", body = ErrorBody),
        (status = 409, description = "Not possible from its state (`illegal_transition`).", body = ErrorBody),
    ))]
pub(super) async fn reprovision(
    State(app): State<App>,
    Path(mac): Path<String>,
) -> Result<Json<Machine>, ApiError> {
    operator_action(
        &app,
        parse_mac(&mac)?,
        "reprovision",
        Transition::Reprovision,
        None,
    )
    .await
}

/// The optional body of an approval.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Profile to assign while approving.
    profile: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/machines/{mac}/approve", tag = "machines",
    security(("operator" = [])),
    params(("mac" = String, Path, description = MAC_PARAM)),
    request_body(content = Option<ApproveBody>, description = "Optional; an empty body approves as is."),
    responses(
        (status = 200, description = "The machine, now `registered`.", body = Machine),
        (status = 400, description = "Bad body or profile name.", body = ErrorBody),
        (status = 404, description = "No such machine.", body = ErrorBody),
        (status = 409, description = "Not `discovered` (`illegal_transition`).", body = ErrorBody),
    ))]
pub(super) async fn approve(
    State(app): State<App>,
    Path(mac): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Machine>, ApiError> {
    let body: ApproveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("approve body: {e}")))?
    };
    let profile = body.profile;
    if let Some(p) = &profile {
        inventory::profile::validate_name(p)?;
    }
    operator_action(
        &app,
        parse_mac(&mac)?,
        "approve",
        Transition::Approve,
        profile,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: [u8; 4], mac: &str, expires: u64, observed: bool) -> Lease {
        Lease {
            ip: Ipv4Addr::from(ip),
            mac: mac.parse().unwrap(),
            expires: Timestamp(expires),
            hostname: None,
            observed,
            client_id: None,
        }
    }

    #[test]
    fn the_address_is_the_active_granted_lease_first() {
        let a = "52:54:00:00:00:0a";
        let b = "52:54:00:00:00:0b";
        let c = "52:54:00:00:00:0c";
        let got = leased_addresses(
            vec![
                lease([10, 0, 0, 1], a, 500, true),
                lease([10, 0, 0, 2], a, 200, false),
                lease([10, 0, 0, 3], b, 50, false),
                lease([10, 0, 0, 4], b, 300, true),
                lease([10, 0, 0, 5], c, 99, false),
            ],
            Timestamp(100),
        );
        assert_eq!(got[&a.parse().unwrap()], Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(got[&b.parse().unwrap()], Ipv4Addr::new(10, 0, 0, 4));
        assert!(!got.contains_key(&c.parse().unwrap()), "lapsed");
    }
}
