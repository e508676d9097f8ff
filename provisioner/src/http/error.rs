//! Errors of every HTTP endpoint as JSON: `{"error": "<code>", "detail": "<what to fix>"}` with
//! a matching status, and the mapping of inventory errors to codes. The operator API
//! ([`crate::api`]) and the machines' endpoints ([`crate::boot`]) answer with this one shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answer: a status and a JSON body. Handlers return it as their `Err`; `?` on an
/// [`inventory::Error`] maps the store's error to its code (`From` below).
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status sent.
    pub status: StatusCode,
    /// The JSON body sent.
    pub body: ErrorBody,
}

/// The JSON body of an [`ApiError`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    #[schema(value_type = String)]
    pub error: &'static str,
    /// What went wrong, naming the offending value.
    pub detail: String,
    /// Per-line problems of a CSV import.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<crate::import::LineError>,
}

/// Longest `detail` an error answer carries (characters). Details name the bad value, and a
/// value can be megabytes (a 10 MB hostname, a serde message quoting a whole string): past this
/// the detail is cut, saying how long it was ([`inventory::excerpt`]).
pub const MAX_DETAIL: usize = 1000;

impl ApiError {
    /// An error answer; `detail` is cut to [`MAX_DETAIL`] characters.
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error,
                detail: inventory::excerpt(&detail.into(), MAX_DETAIL),
                lines: Vec::new(),
            },
        }
    }

    /// A 400 `bad_request` answer.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = self.body.error, detail = %self.body.detail, "request failed");
        }
        (self.status, Json(self.body)).into_response()
    }
}

impl From<inventory::Error> for ApiError {
    fn from(e: inventory::Error) -> Self {
        use inventory::Error as E;
        let (status, code) = match &e {
            E::BadMac { .. } => (StatusCode::BAD_REQUEST, "bad_mac"),
            E::Invalid { .. } | E::TooLong { .. } => (StatusCode::BAD_REQUEST, "invalid"),
            E::UnknownProfile { .. } => (StatusCode::BAD_REQUEST, "unknown_profile"),
            E::IllegalTransition { .. } => (StatusCode::CONFLICT, "illegal_transition"),
            E::MachineNotFound { .. } | E::ProfileNotFound { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            E::MachineExists { .. } | E::ProfileExists { .. } => (StatusCode::CONFLICT, "exists"),
            E::IpReserved { .. } => (StatusCode::CONFLICT, "ip_reserved"),
            E::UuidTaken { .. } => (StatusCode::CONFLICT, "uuid_taken"),
            E::IpLeased { .. } => (StatusCode::CONFLICT, "ip_leased"),
            E::UuidAmbiguous { .. } => (StatusCode::CONFLICT, "uuid_ambiguous"),
            E::ProfileInUse { .. } => (StatusCode::CONFLICT, "in_use"),
            // RFC 4918 §11.5: the server cannot store what the request needs; the detail names
            // the directory to free space in. Not a 500: nothing is wrong with the request or
            // the server, and the same request succeeds once there is room.
            E::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}
