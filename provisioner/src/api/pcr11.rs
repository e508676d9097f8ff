//! `POST /api/v1/profiles/{name}/pcr11`: pin the PCR 11 value machines of a profile must report
//! while they run its UKI (issue 14, measured boot). Three sources, the operator's choice:
//!
//! - `{"from": "uki"}`: computed from the profile's UKI file ([`boot_assets::pcr`]): what
//!   systemd-stub leaves in PCR 11 before the kernel starts. Right when the reporting system does
//!   not extend PCR 11 further (no systemd-pcrphase before the report).
//! - `{"from": "machine", "mac": "…"}`: learned from a machine that already reported (the first
//!   machine of a new UKI); pinning it is the operator's confirmation that it booted what they
//!   meant. Refused when that machine runs another profile or reported no PCR 11.
//! - `{"value": "<64 hex>"}`: given; `{"from": "none"}` removes the pin.
//!
//! Answers the updated profile with where the value came from.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::app::{now, App};
use crate::http::error::ErrorBody;
use crate::http::{ApiError, ApiJson};
use inventory::attestation::{normalize_pcr, PCR_KERNEL_IMAGE};
use inventory::{Mac, Profile};

pub fn routes() -> Router<App> {
    Router::new().route("/profiles/{name}/pcr11", post(pin))
}

/// The request body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// `uki`, `machine` or `none`; absent with `value`.
    #[serde(default)]
    from: Option<String>,
    /// With `from: machine`: the machine whose reported PCR 11 to pin.
    #[serde(default)]
    mac: Option<String>,
    /// A value to pin as given (64 hex digits).
    #[serde(default)]
    value: Option<String>,
}

/// The answer: the profile as stored and where its pin came from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PinResponse {
    profile: Profile,
    /// `uki`, `machine`, `value` or `none`.
    #[schema(value_type = String)]
    source: &'static str,
    /// How the value was obtained (the computation's basis, or the machine and its report time).
    detail: String,
}

#[utoipa::path(post, path = "/api/v1/profiles/{name}/pcr11", tag = "profiles",
    security(("operator" = [])),
    params(("name" = String, Path, description = "The profile's name.")),
    request_body = PinRequest,
    responses(
        (status = 200, description = "The profile with its new pin, and where the value came from.", body = PinResponse),
        (status = 400, description = "Not one of the four forms, a bad value, or nothing to learn from (no UKI, no report, another profile).", body = ErrorBody),
        (status = 404, description = "No such profile (or, with `from: machine`, no such machine).", body = ErrorBody),
    ))]
pub(super) async fn pin(
    State(app): State<App>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PinRequest>,
) -> Result<Json<PinResponse>, ApiError> {
    let n = name.clone();
    let profile = app
        .read(move |s| s.profile(&n))
        .await?
        .ok_or_else(|| inventory::Error::ProfileNotFound { name: name.clone() })?;
    let (value, source, detail) = match (req.from.as_deref(), req.value, req.mac) {
        (None, Some(v), None) => (Some(normalize_pcr("value", &v)?), "value", "given".into()),
        (Some("none"), None, None) => (None, "none", "pin removed".into()),
        (Some("uki"), None, None) => {
            let (v, d) = from_uki(&app, &profile).await?;
            (Some(v), "uki", d)
        }
        (Some("machine"), None, Some(mac)) => {
            let (v, d) = from_machine(&app, &profile, &mac).await?;
            (Some(v), "machine", d)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give one of {\"from\":\"uki\"}, {\"from\":\"machine\",\"mac\":\"…\"}, \
                 {\"value\":\"<64 hex>\"} or {\"from\":\"none\"}",
            ))
        }
    };
    let mut updated = profile;
    updated.expected_pcr11 = value;
    let updated = updated.validate()?;
    let stored = updated.clone();
    let t = now();
    app.write(move |s| Ok(((), s.put_profile(updated, true, t)?)))
        .await?;
    Ok(Json(PinResponse {
        profile: stored,
        source,
        detail,
    }))
}

async fn from_uki(app: &App, p: &Profile) -> Result<(String, String), ApiError> {
    let digest = p.uki.clone().ok_or_else(|| {
        ApiError::bad_request(format!(
            "profile {} has no UKI to compute PCR 11 from",
            p.name
        ))
    })?;
    let assets = app.boot.assets.clone();
    let d = digest.clone();
    let computed = tokio::task::spawn_blocking(move || {
        let (_, path) = assets.file(&d)?;
        let image = boot_assets::pe::PeImage::read(&path)?;
        boot_assets::pcr::pcr11(&path, &image)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| match e {
        boot_assets::Error::NotFound { .. } => ApiError::bad_request(format!(
            "UKI {digest} of profile {} is not on this server yet: try again once it has it",
            p.name
        )),
        e => e.into(),
    })?;
    let detail = format!(
        "computed from {digest}: sections {}; {}",
        computed.sections.join(" "),
        computed.basis
    );
    Ok((computed.sha256, detail))
}

async fn from_machine(app: &App, p: &Profile, mac: &str) -> Result<(String, String), ApiError> {
    let mac: Mac = mac.parse()?;
    let m = app.read(move |s| s.machine(mac)).await?.ok_or_else(|| {
        inventory::Error::MachineNotFound {
            mac: mac.to_string(),
        }
    })?;
    if m.spec.profile.as_deref() != Some(p.name.as_str()) {
        return Err(ApiError::bad_request(format!(
            "{mac} runs profile {}, not {}: learn PCR 11 from a machine of this profile",
            m.spec.profile.as_deref().unwrap_or("(none)"),
            p.name
        )));
    }
    let a = m.attestation.as_ref();
    let v = a
        .and_then(|a| a.pcrs.get(&PCR_KERNEL_IMAGE))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{mac} has reported no PCR 11 yet (it reports from its installer, with a TPM)"
            ))
        })?;
    if p.secure_boot && a.and_then(|a| a.secure_boot) != Some(true) {
        return Err(ApiError::bad_request(format!(
            "{mac} did not report Secure Boot on, and profile {} requires it: learn PCR 11 from \
             a machine that booted under Secure Boot",
            p.name
        )));
    }
    let at = a.map(|a| a.at).unwrap_or_default();
    Ok((v.clone(), format!("learned from {mac}, reported at {at}")))
}
