//! `GET /api/v1/machines/{mac}/boot`: what the machine would boot now and why, from the same
//! code every boot path asks ([`crate::boot_decision::decide`] and
//! [`crate::boot::plan::install_problem`]), read-only: unlike a real boot it admits no
//! newcomer and records nothing.
//!
//! `{"intent": "install" | "local_disk" | "hold" | "ignore", "reason": "…"}`; `reason` says why
//! a machine is held, or (for `install`) what stops its installer from being served.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::App;
use crate::boot::plan::{install_problem, secure_boot_refusal, BootView};
use crate::boot_decision::{decide, Intent};
use crate::http::ApiError;
use inventory::Mac;

pub fn routes() -> Router<App> {
    Router::new().route("/machines/{mac}/boot", get(show))
}

/// The boot decision as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Decision {
    /// `install`, `local_disk`, `hold` or `ignore`.
    #[schema(value_type = String, pattern = "^(install|local_disk|hold|ignore)$")]
    intent: &'static str,
    /// Why it holds, or what keeps the installer from being served; absent when nothing does.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/machines/{mac}/boot", tag = "machines",
    security(("operator" = [])),
    params(("mac" = String, Path, description = "The machine's MAC, `52:54:00:12:34:56`.")),
    responses(
        (status = 200, description = "What the machine would boot now, and why; read-only.", body = Decision),
    ))]
pub(super) async fn show(
    State(app): State<App>,
    Path(mac): Path<String>,
) -> Result<Json<Decision>, ApiError> {
    let mac: Mac = mac.parse()?;
    let machine = app.read(move |s| s.machine(mac)).await?;
    let intent = decide(machine.as_ref(), app.boot.unknown);
    let (intent, reason) = match intent {
        Intent::LocalDisk => ("local_disk", None),
        Intent::Ignore => ("ignore", None),
        Intent::Hold { reason } => ("hold", Some(reason)),
        Intent::Install => {
            let view = install_view(&app, mac, machine).await?;
            ("install", install_problem(&view))
        }
    };
    Ok(Json(Decision { intent, reason }))
}

/// The machine's profile, its UKI and the Secure Boot verdict, as a boot would see them.
async fn install_view(
    app: &App,
    mac: Mac,
    machine: Option<inventory::Machine>,
) -> Result<BootView, ApiError> {
    let profile = match machine.as_ref().and_then(|m| m.spec.profile.clone()) {
        Some(p) => app.read(move |s| s.profile(&p)).await?,
        None => None,
    };
    let uki = crate::boot::plan::profile_uki(app, profile.as_ref()).await;
    let refusal = match (&profile, &uki) {
        (Some(p), Some(u)) => secure_boot_refusal(app, p, u).await,
        _ => None,
    };
    Ok(BootView {
        mac,
        machine,
        profile,
        uki,
        refusal,
    })
}
