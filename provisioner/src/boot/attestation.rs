//! `POST /api/v1/nodes/attestation`: the installer says how the netbooted UKI was booted —
//! whether UEFI Secure Boot was on, and the TPM's SHA-256 PCR values (issue 14, measured boot).
//!
//! Body: `{"secure_boot": true|false, "pcrs": {"7": "<64 hex>", "11": "<64 hex>"}}` (both
//! optional; at most [`super::node_api::SMALL_BODY`] bytes), with the machine's token
//! (`Authorization: Bearer`), checked before the body is read. Accepted while the installer
//! runs (registered, reprovision, booting, installing), like progress: what it reports is about
//! the UKI this server handed out, not the installed system. The report is kept on the machine
//! (`attestation`) and becomes an `attested` event.
//!
//! When the machine's profile pins `expected_pcr11`, the reported PCR 11 is compared: a
//! mismatch fails the machine with a reason naming both values (it booted something other than
//! the profile's UKI, or its stub measured differently), and the installer's next progress
//! report is refused. A report without PCR 11 against a pinned profile is recorded as
//! `unchecked` and does not fail the machine: a machine without a TPM cannot prove anything, and
//! the operator sees that in the record. On a profile with `secure_boot = true`, a report of
//! `"secure_boot": false` fails the machine too.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use inventory::attestation::{compare_pcr11, parse_pcrs, PCR_KERNEL_IMAGE};
use inventory::{Attestation, EventKind, Pcr11Verdict, Transition};
use serde::Deserialize;

use super::machine_query::MachineQuery;
use super::node_api::{
    installer_caller, installer_running, json, small_body, TokenQuery, SMALL_BODY,
};
use crate::app::{now, App};
use crate::http::error::ErrorBody;
use crate::http::ApiError;

/// What the installer sends; unknown fields are ignored (a newer installer may send more).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct AttestationRequest {
    /// Whether UEFI Secure Boot was on.
    #[serde(default)]
    secure_boot: Option<bool>,
    /// PCR index (decimal string, 0–23) → SHA-256 value (64 hex digits).
    #[serde(default)]
    pcrs: BTreeMap<String, String>,
}

/// The handler; 204 when recorded, 409 when the machine is not installing, 400 for bad values.
#[utoipa::path(post, path = "/api/v1/nodes/attestation", tag = "nodes",
    security(("machine" = []), ("machine_query" = [])),
    request_body = AttestationRequest,
    responses(
        (status = 204, description = "Recorded (a mismatch against the profile's pin also fails the machine)."),
        (status = 400, description = "Bad JSON or PCR values.", body = ErrorBody),
        (status = 408, description = super::node_api::BODY_ERRORS, body = ErrorBody),
        (status = 409, description = "The machine's installer is not running (`illegal_transition`).", body = ErrorBody),
    ))]
pub async fn attestation(
    State(app): State<App>,
    headers: HeaderMap,
    MachineQuery(q): MachineQuery<TokenQuery>,
    body: Body,
) -> Result<StatusCode, Response> {
    let machine = installer_caller(&app, &headers, &q, "attestation").await?;
    let value: serde_json::Value = json(&small_body(&headers, body, SMALL_BODY).await?)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "request body: a JSON object {\"secure_boot\": …, \"pcrs\": {…}} is expected",
        )
        .into_response());
    }
    let req: AttestationRequest = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")).into_response())?;
    let pcrs = parse_pcrs(&req.pcrs).map_err(|e| ApiError::from(e).into_response())?;
    let profile_name = machine.spec.profile.clone();
    let profile = match profile_name {
        Some(n) => app
            .read(move |s| s.profile(&n))
            .await
            .map_err(|e| ApiError::from(e).into_response())?,
        None => None,
    };
    let expected = profile.as_ref().and_then(|p| p.expected_pcr11.clone());
    // A profile that requires Secure Boot and a machine that says it was off: whatever booted was
    // not checked by the firmware.
    let sb_off = match &profile {
        Some(p) if p.secure_boot && req.secure_boot == Some(false) => Some(format!(
            "profile {} requires Secure Boot (secure_boot = true) but the machine reports it \
             was off: its firmware did not check the UKI's signature",
            p.name
        )),
        _ => None,
    };
    let reported = pcrs.get(&PCR_KERNEL_IMAGE).cloned();
    let verdict = compare_pcr11(reported.as_deref(), expected.as_deref());
    let t = now();
    let record = Attestation {
        at: t,
        secure_boot: req.secure_boot,
        pcrs,
        pcr11: verdict.clone(),
    };
    let event = EventKind::Attested {
        secure_boot: req.secure_boot,
        pcr11: reported.clone(),
        verdict: verdict.name().to_string(),
    };
    let fail = match &verdict {
        Pcr11Verdict::Mismatch { expected } => Some(format!(
            "PCR 11 mismatch: the profile pins {expected}, the machine measured {}: it did not \
             boot the profile's UKI as expected",
            reported.as_deref().unwrap_or("")
        )),
        _ => None,
    }
    .or(sb_off);
    app.write(move |s| {
        let (_, events) = s.update_machine(machine.mac, t, &mut |m| {
            if !installer_running(m.state()) {
                return Err(inventory::Error::IllegalTransition {
                    from: m.state(),
                    transition: Transition::Progress,
                });
            }
            m.attestation = Some(record.clone());
            m.last_seen = Some(t);
            let mut events = vec![event.clone()];
            if let Some(reason) = &fail {
                events.push(m.transition(
                    &Transition::Fail {
                        reason: reason.clone(),
                    },
                    t,
                )?);
            }
            Ok(events)
        })?;
        Ok(((), events))
    })
    .await
    .map_err(|e| ApiError::from(e).into_response())?;
    Ok(StatusCode::NO_CONTENT)
}
