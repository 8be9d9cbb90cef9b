//! `/openapi.json`: the OpenAPI 3.0 document, with schemas generated from the Rust types
//! (schemars) and one operation per entry of [`crate::api::ROUTES`].

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use suyun_store::readmodel::{NodeRecord, SystemRecord, TenantRecord, WaveRecord};

use crate::api::{ApprovalRequest, ApprovalRequestResult, MAX_LIMIT, ROUTES, Route, Summary, SystemHistory};
use crate::problem::ProblemDetails;
use crate::response::{ItemResponse, ListResponse};

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

fn parameter(name: &str, location: &str, description: &str) -> Value {
    // What the handlers accept, so that a request valid by the document is not refused.
    let schema = match (location, name) {
        ("query", "region") => json!({ "type": "string", "pattern": "^(province|[0-9]{6})?$" }),
        ("query", "limit") => json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT }),
        _ => json!({ "type": "string" }),
    };
    json!({ "name": name, "in": location, "required": location == "path", "description": description,
            "schema": schema })
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let problem = schema::<ProblemDetails>(&mut generator);
    let mut paths = Map::new();
    let approval_request = schema::<ApprovalRequest>(&mut generator);
    for route in ROUTES {
        let body = success_schema(route.operation, &mut generator);
        let mut operation = operation(route, body, &problem);
        if route.operation == "approveCutover" {
            operation["requestBody"] = json!({
                "required": false,
                "description": "Optional: a reason or ticket reference. Send `Content-Type: application/json` \
                                even with an empty body.",
                "content": { "application/json": { "schema": approval_request } }
            });
        }
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Suyun (苏云) status API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "City operators' view of the provincial government cloud: nodes, tenants, systems, \
                            waves, history and cutover approvals. Every caller sees its own scope only. \
                            See docs/api.md."
        },
        "servers": [{ "url": "/" }],
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "clientCertificate": { "type": "mutualTLS" }
            }
        },
        "security": [{ "bearer": [] }, { "clientCertificate": [] }],
        "paths": paths,
    })
}

fn success_schema(operation: &str, generator: &mut SchemaGenerator) -> Value {
    match operation {
        "listNodes" => schema::<ListResponse<NodeRecord>>(generator),
        "getNode" => schema::<ItemResponse<NodeRecord>>(generator),
        "listTenants" => schema::<ListResponse<TenantRecord>>(generator),
        "getTenant" => schema::<ItemResponse<TenantRecord>>(generator),
        "listSystems" => schema::<ListResponse<SystemRecord>>(generator),
        "getSystem" => schema::<ItemResponse<SystemRecord>>(generator),
        "getSystemHistory" => schema::<ItemResponse<SystemHistory>>(generator),
        "approveCutover" => schema::<ApprovalRequestResult>(generator),
        "listWaves" => schema::<ListResponse<WaveRecord>>(generator),
        "getWave" => schema::<ItemResponse<WaveRecord>>(generator),
        "getSummary" => schema::<ItemResponse<Summary>>(generator),
        _ => json!({ "type": "string" }),
    }
}

fn operation(route: &Route, body: Value, problem: &Value) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| parameter(name, "path", "Object name or systemId"))
        .collect();
    match route.operation {
        "listSystems" => {
            for (name, description) in [
                ("node", "Only systems placed on this node"),
                ("tenant", "Only systems of this tenant"),
                ("phase", "Only systems in this phase"),
                ("wave", "Only systems of this wave"),
                ("q", "Case-insensitive substring of systemId, name or displayName"),
                ("region", "Only this region (inside your scope, else 403)"),
                ("limit", "Page size, 1–1000 (default 100)"),
                ("continue", "metadata.continue of the previous page"),
            ] {
                parameters.push(parameter(name, "query", description));
            }
        }
        "listNodes" | "listTenants" | "getSummary" => {
            parameters.push(parameter("region", "query", "Only this region (inside your scope, else 403)"));
        }
        _ => {}
    }
    let problem_response = |description: &str| {
        let content = json!({ "application/problem+json": { "schema": problem } });
        json!({ "description": description, "content": content })
    };
    let public = route.path == "/healthz" || route.path == "/readyz" || route.path == "/openapi.json";
    let mut responses = Map::new();
    let ok = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": body } } });
    match route.method {
        "POST" => {
            responses.insert("200".into(), ok("Approved before: the approval in force"));
            responses.insert("201".into(), ok("Approval recorded"));
            responses.insert(
                "409".into(),
                problem_response("The system needs no approval, or its cutover has started or it is finished"),
            );
        }
        "DELETE" => {
            responses.insert("204".into(), json!({ "description": "Approval revoked" }));
            responses.insert(
                "409".into(),
                problem_response("The cutover has started, or the approval changed while it was revoked"),
            );
        }
        _ if route.path == "/healthz" || route.path == "/readyz" => {
            let text = json!({ "text/plain": { "schema": { "type": "string" } } });
            responses.insert("200".into(), json!({ "description": "OK", "content": text }));
        }
        _ => {
            responses.insert("200".into(), ok("OK"));
            if !public {
                responses.insert("304".into(), json!({ "description": "Not modified (If-None-Match)" }));
            }
        }
    }
    if route.method != "GET" {
        responses.insert(
            "415".into(),
            problem_response("Not sent with Content-Type: application/json (every state-changing request)"),
        );
    }
    if !public {
        responses.insert("400".into(), problem_response("Malformed path, query or body"));
        responses.insert("401".into(), problem_response("No or unknown credentials"));
        responses.insert(
            "403".into(),
            problem_response("Outside your scope, read-only, or (writes) from a browser origin not allowed"),
        );
        responses.insert("404".into(), problem_response("No such object in your scope (DELETE: or no approval)"));
        responses.insert("503".into(), problem_response("Status store not read yet or unreachable (writes)"));
        responses.insert(
            "429".into(),
            problem_response("Your identity is over its rate limit: retry after the Retry-After seconds"),
        );
        if route.method != "GET" {
            responses.insert("413".into(), problem_response("Body larger than the server's limit"));
        }
    } else if route.path == "/readyz" {
        responses.insert("503".into(), problem_response("Degraded: status store unreachable or not read yet"));
    }
    let mut operation = json!({ "operationId": route.operation, "parameters": parameters, "responses": responses });
    if public {
        operation["security"] = json!([]);
    }
    operation
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document as committed in `apiserver/tests/openapi.json` (its `info.version` set to
    /// `"*"`, so that a version bump does not change it). After an intended change of the API,
    /// regenerate it with `SUYUN_UPDATE_OPENAPI=1 cargo test -p suyun-apiserver openapi` and
    /// review the diff.
    #[test]
    fn document_matches_the_committed_snapshot() {
        let mut document = document();
        document["info"]["version"] = json!("*");
        let text = format!("{}\n", serde_json::to_string_pretty(&document).expect("serialises"));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi.json");
        if std::env::var_os("SUYUN_UPDATE_OPENAPI").is_some() {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create tests/");
            std::fs::write(&path, &text).expect("write the snapshot");
        }
        let committed = std::fs::read_to_string(&path).expect("apiserver/tests/openapi.json");
        assert!(committed == text, "the OpenAPI document changed; see the test's documentation");
    }
}
