//! `GET /api/v1/leases`: the DHCP bindings the store holds, for the operator's eyes (which
//! machine has which address until when, and which bindings proxy mode only observed).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::{now, App};
use crate::http::ApiError;

pub fn routes() -> Router<App> {
    Router::new().route("/leases", get(list))
}

/// One binding as the API shows it: the stored lease plus whether it still holds now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    #[serde(flatten)]
    pub lease: inventory::Lease,
    /// `expires` is in the future (a lapsed binding stays stored until its address is reused).
    pub active: bool,
}

/// Every stored binding, by address.
#[utoipa::path(get, path = "/api/v1/leases", tag = "leases",
    security(("operator" = [])),
    responses((status = 200, description = "Every stored binding, by address.", body = Vec<LeaseView>)))]
pub(super) async fn list(State(app): State<App>) -> Result<Json<Vec<LeaseView>>, ApiError> {
    let t = now();
    let mut leases = app.read(|s| s.leases()).await?;
    leases.sort_by_key(|l| l.ip);
    Ok(Json(
        leases
            .into_iter()
            .map(|lease| LeaseView {
                active: lease.is_active(t),
                lease,
            })
            .collect(),
    ))
}
