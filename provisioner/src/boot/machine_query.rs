//! The query string of an endpoint that machines call (`/boot/*`, `/assets/*`, `/config*`,
//! `/api/v1/nodes/*`), read leniently: the URLs come from boot ROMs, iPXE scripts and
//! installer configs that operators paste from other tools (matchbox, netboot.xyz), which add
//! `uuid=${uuid}`, `serial=${serial}`, `buildarch=${buildarch}`, a cache-buster, … and leave
//! a setting the firmware lacks as an empty value. So a parameter the endpoint does not use is
//! ignored, and one with an empty value counts as absent; a parameter it uses, given twice or
//! with a bad value, is still refused (400). The operator API keeps the strict
//! [`crate::http::ApiQuery`].

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::Uri;
use serde::de::DeserializeOwned;

use crate::http::ApiError;

/// `Query<T>` for machine endpoints: `T` must not use `deny_unknown_fields` (unknown names are
/// ignored by serde), and pairs with an empty value (`platform=`, `serial`) are dropped before
/// `T` sees them. Rejection: a 400 [`ApiError`] naming the problem.
pub struct MachineQuery<T>(pub T);

/// `query` without its empty-valued pairs (`a=`, a bare `a`, empty segments), in order.
pub fn without_empty_values(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("&")
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for MachineQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = without_empty_values(parts.uri.query().unwrap_or_default());
        let uri: Uri = format!("/?{query}")
            .parse()
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))?;
        match Query::<T>::try_from_uri(&uri) {
            Ok(Query(v)) => Ok(MachineQuery(v)),
            Err(rej) => Err(ApiError::bad_request(rej.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_empty_values;

    #[test]
    fn empty_values_are_dropped() {
        let cases = [
            ("mac=a&platform=&buildarch=x86_64", "mac=a&buildarch=x86_64"),
            ("platform=&mac=a", "mac=a"),
            ("mac=a&&serial&x=", "mac=a"),
            ("", ""),
            ("token=t%3D", "token=t%3D"),
            ("a==", "a=="),
        ];
        for (q, want) in cases {
            assert_eq!(without_empty_values(q), want, "{q:?}");
        }
    }
}
