//! `/openapi.json`: the OpenAPI 3.0 document, rendered from the route table
//! [`crate::api::ROUTES`] (each route's parameters, request body and answers) with schemas
//! generated from the Rust types (schemars). Nothing here names an operation: what every route
//! of a kind shares (the problems of authenticated routes and of writes, `304` of
//! authenticated reads) follows from [`Route::access`] and [`Route::writes`].

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::api::{Access, Answer, Content, ROUTES, Route};
use crate::problem::ProblemDetails;

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let problem = generator.subschema_for::<ProblemDetails>().to_value();
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation(route, &problem, &mut generator);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Suyun (苏云) status API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "City operators' view of the provincial government cloud: nodes, tenants, systems, \
                            waves, city budgets, history and cutover approvals. Every caller sees its own \
                            scope only. See docs/api.md."
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

fn parameter(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": location, "required": location == "path", "description": description,
            "schema": schema })
}

/// One documented answer.
fn response(answer: &Answer, problem: &Value, generator: &mut SchemaGenerator) -> Value {
    let content = match answer.content {
        Content::None => return json!({ "description": answer.description }),
        Content::Json(schema) => json!({ "application/json": { "schema": schema(generator) } }),
        Content::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
        Content::Problem => json!({ "application/problem+json": { "schema": problem } }),
    };
    json!({ "description": answer.description, "content": content })
}

/// The problems every authenticated route can answer (and writes, `413`).
const AUTHENTICATED: &[Answer] = &[
    Answer { status: "400", description: "Malformed path, query or body", content: Content::Problem },
    Answer { status: "401", description: "No or unknown credentials", content: Content::Problem },
    Answer {
        status: "403",
        description: "Outside your scope, read-only, or (writes) from a browser origin not allowed",
        content: Content::Problem,
    },
    Answer {
        status: "404",
        description: "No such object in your scope (DELETE: or no approval)",
        content: Content::Problem,
    },
    Answer {
        status: "503",
        description: "Status store not read yet or unreachable (writes)",
        content: Content::Problem,
    },
    Answer {
        status: "429",
        description: "Your identity is over its rate limit: retry after the Retry-After seconds",
        content: Content::Problem,
    },
];

const NOT_MODIFIED: Answer =
    Answer { status: "304", description: "Not modified (If-None-Match)", content: Content::None };
const UNSUPPORTED_MEDIA_TYPE: Answer = Answer {
    status: "415",
    description: "Not sent with Content-Type: application/json (every state-changing request)",
    content: Content::Problem,
};
const PAYLOAD_TOO_LARGE: Answer =
    Answer { status: "413", description: "Body larger than the server's limit", content: Content::Problem };

fn operation(route: &Route, problem: &Value, generator: &mut SchemaGenerator) -> Value {
    let path =
        route.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).map(|name| {
            let description = match name {
                "regionCode" => "City region code (GB/T 2260, 6 digits)",
                _ => "Object name or systemId",
            };
            parameter(name, "path", description, json!({ "type": "string" }))
        });
    let query = route.query.iter().map(|q| parameter(q.name, "query", q.description, (q.schema)()));
    let parameters: Vec<Value> = path.chain(query).collect();
    let authenticated = route.access == Access::Authenticated;
    let shared: Vec<&Answer> = [
        (authenticated && !route.writes()).then_some(&NOT_MODIFIED),
        route.writes().then_some(&UNSUPPORTED_MEDIA_TYPE),
        (authenticated && route.writes()).then_some(&PAYLOAD_TOO_LARGE),
    ]
    .into_iter()
    .flatten()
    .chain(AUTHENTICATED.iter().filter(|_| authenticated))
    .collect();
    let mut responses = Map::new();
    for answer in route.answers.iter().chain(shared) {
        responses.insert(answer.status.to_owned(), response(answer, problem, generator));
    }
    let mut operation = json!({ "operationId": route.operation, "parameters": parameters, "responses": responses });
    if let Some(body) = route.body {
        operation["requestBody"] = json!({
            "required": body.required,
            "description": body.description,
            "content": { "application/json": { "schema": (body.schema)(generator) } }
        });
    }
    if !authenticated {
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
    /// `value` with the keys of every object in sorted order, however serde_json keeps maps
    /// (another crate of the workspace, the browser tests' WebDriver client, turns on its
    /// `preserve_order` feature, and features are unified across a workspace build).
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let entries: std::collections::BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(entries.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }

    #[test]
    fn document_matches_the_committed_snapshot() {
        let mut document = document();
        document["info"]["version"] = json!("*");
        let text = format!("{}\n", serde_json::to_string_pretty(&sorted(document)).expect("serialises"));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi.json");
        if std::env::var_os("SUYUN_UPDATE_OPENAPI").is_some() {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create tests/");
            std::fs::write(&path, &text).expect("write the snapshot");
        }
        let committed = std::fs::read_to_string(&path).expect("apiserver/tests/openapi.json");
        assert!(committed == text, "the OpenAPI document changed; see the test's documentation");
    }
}
