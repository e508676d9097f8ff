//! The API description: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives, served without a token at
//! `GET /api/v1/openapi.json` (it describes the API and holds no inventory).
//!
//! [`document`] adds what every operation shares rather than repeating it on each handler: the
//! errors any operation can answer (400 from the strict query check, 401, 500, 503; 507 and
//! 413 where a request writes or carries a body), all with the [`ErrorBody`] shape. It also
//! inlines, without `additionalProperties: false`, a strict schema (`deny_unknown_fields`)
//! flattened into another (`allOf`): under JSON Schema 2020-12 that keyword would refuse the
//! other part's fields, which serde accepts and emits.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::error::ErrorBody;

/// The operations, by handler. A route the router serves under `/api/v1` and missing here
/// fails `tests/integration/openapi.rs`, which compares this document with the router's routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "provisioner",
        description = "Operator API (machines, profiles, events, assets, logs, leases) and the \
                       machines' own API (`/api/v1/nodes/*`) of the netboot provisioning server.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::machines::list,
        super::machines::create,
        super::machines::import,
        super::machines::show,
        super::machines::replace,
        super::machines::remove,
        super::machines::reprovision,
        super::machines::approve,
        super::decision::show,
        super::profiles::list,
        super::profiles::create,
        super::profiles::show,
        super::profiles::replace,
        super::profiles::remove,
        super::pcr11::pin,
        super::events::list,
        super::events::stream_events,
        super::assets::list,
        super::assets::upload,
        super::assets::gc,
        super::assets::show,
        super::assets::remove,
        super::logs::list,
        super::logs::follow,
        super::logs::token,
        super::logs::rotate_token,
        super::leases::list,
        serve,
        crate::boot::node_api::register,
        crate::boot::node_api::progress,
        crate::boot::node_api::logs,
        crate::boot::attestation::attestation,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "machines", description = "The inventory's machines and operator actions."),
        (name = "profiles", description = "What a class of machines boots and how it is configured."),
        (name = "events", description = "The history of every machine, and its live stream."),
        (name = "assets", description = "The content-addressed asset store (UKIs, loaders)."),
        (name = "logs", description = "Per-machine log lines and enrollment tokens."),
        (name = "leases", description = "DHCP bindings."),
        (name = "nodes", description = "What machines call, with their own token."),
        (name = "meta", description = "This description."),
    ),
)]
struct ApiDoc;

/// The two credentials: the operator token and a machine's token (header or `?token=`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "operator",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token, written on first start to <data-dir>/operator.token.",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "machine",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A machine's enrollment token (rendered into its config; \
                         `GET /api/v1/machines/{mac}/token`).",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "machine_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A machine's enrollment token as `?token=` (for installers that cannot set headers).",
            ))),
        );
    }
}

/// The document as served (JSON), built once.
pub fn document() -> &'static Value {
    static DOC: LazyLock<Value> = LazyLock::new(build);
    &DOC
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    let schemas = doc["components"]["schemas"].clone();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                add_common_responses(method, op);
            }
        }
    }
    relax_flattened(&mut doc, &schemas);
    doc
}

/// The errors every operation can answer besides its own (see the module docs).
fn add_common_responses(method: &str, op: &mut Value) {
    let secured_by = |name: &str| {
        op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get(name).is_some()))
    };
    let operator = secured_by("operator");
    let machine = secured_by("machine");
    let has_body = op.get("requestBody").is_some();
    let mut common: Vec<(&str, &str)> = vec![
        ("500", "Internal error (the server logged it)."),
        (
            "503",
            "The store did not answer (`store_unavailable`), or another dependency did.",
        ),
    ];
    if operator {
        common.push((
            "400",
            "Bad input: a malformed path value, query or body, or a query parameter the \
             operation does not take.",
        ));
        common.push(("401", "Missing or unknown operator token (`unauthorized`)."));
        common.push((
            "429",
            "Too many requests with a wrong operator token (`too_many_failures`): more than 20, \
             then 30 a minute, per server.",
        ));
    }
    if machine {
        common.push(("401", "Missing or unknown machine token (`unauthorized`)."));
    }
    if method != "get" {
        common.push(("507", "The store's disk is full (`disk_full`)."));
    }
    if has_body {
        common.push(("413", "The body is larger than the operation accepts."));
    }
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    for (status, description) in common {
        responses
            .entry(status)
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// Replaces each `$ref` inside an `allOf` whose target says `additionalProperties: false` with
/// an inline copy that does not (see the module docs), at any depth.
fn relax_flattened(v: &mut Value, schemas: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(parts)) = map.get_mut("allOf") {
                for part in parts.iter_mut() {
                    if let Some(inline) = strict_target(part, schemas) {
                        *part = Value::Object(inline);
                    }
                }
            }
            for child in map.values_mut() {
                relax_flattened(child, schemas);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| relax_flattened(i, schemas)),
        _ => {}
    }
}

/// The schema `part` refers to, without `additionalProperties`, when it has it `false`.
fn strict_target(part: &Value, schemas: &Value) -> Option<Map<String, Value>> {
    let name = part
        .get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    let mut target = schemas.get(name)?.as_object()?.clone();
    (target.get("additionalProperties") == Some(&Value::Bool(false))).then(|| {
        target.remove("additionalProperties");
        target
    })
}

/// `GET /api/v1/openapi.json`: this document (no token needed).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(document()).expect("the document serializes"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_openapi_3_1_with_both_security_schemes() {
        let d = document();
        assert!(d["openapi"].as_str().unwrap().starts_with("3.1."));
        for s in ["operator", "machine", "machine_query"] {
            assert!(d["components"]["securitySchemes"].get(s).is_some(), "{s}");
        }
        let op = &d["paths"]["/api/v1/machines/{mac}"]["delete"];
        for status in ["204", "401", "404", "429", "500", "507"] {
            assert!(op["responses"].get(status).is_some(), "{status}: {op}");
        }
    }

    #[test]
    fn strict_schemas_flattened_into_others_are_relaxed() {
        let schemas = json!({"S": {"type": "object", "additionalProperties": false}});
        let mut v = json!({"allOf": [{"$ref": "#/components/schemas/S"}, {"type": "object"}]});
        relax_flattened(&mut v, &schemas);
        assert_eq!(
            v,
            json!({"allOf": [{"type": "object"}, {"type": "object"}]})
        );
    }
}
