//! The OpenAPI 3 document, built from the operation table, and the pieces of description the
//! resources add to it.

use crate::common::*;

/// The OpenAPI 3 document, from `OPERATIONS`.
pub(crate) fn build(ops: impl Iterator<Item = &'static Operation>) -> Value {
    let mut paths = serde_json::Map::new();
    for op in ops {
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        let mut responses = serde_json::Map::new();
        responses.insert(
            op.ok.to_string(),
            if op.ok == 204 {
                json!({ "description": "done; no content" })
            } else {
                json!({ "description": "success", "content": { "application/json": { "schema": {} } } })
            },
        );
        let error = error_response();
        if op.access != Access::Public {
            responses.insert("401".into(), error.clone());
        }
        if matches!(op.access, Access::Operator | Access::TenantWrite) {
            responses.insert("403".into(), error.clone());
        }
        if !params.is_empty() {
            responses.insert("404".into(), error.clone());
        }
        if matches!(op.method, "post" | "put" | "patch" | "delete") {
            responses.insert("409".into(), error.clone());
            responses.insert("422".into(), error.clone());
            responses.insert("400".into(), error.clone());
        }
        let mut o = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
            "x-relayward-access": format!("{:?}", op.access),
        });
        if op.access != Access::Public {
            o["security"] = json!([{ "token": [] }, { "session": [] }]);
        }
        if let Some(schema) = crate::schemas::response(op.method, op.path) {
            o["responses"][op.ok.to_string()]["content"]["application/json"]["schema"] = schema;
        }
        if let Some(doc) = op.doc {
            merge_doc(&mut o, doc());
        }
        let entry = paths
            .entry(format!("/api/v1{}", op.path))
            .or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Relayward management API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer" },
                "session": { "type": "apiKey", "in": "cookie", "name": "rw_session", "description": "console session from POST /api/v1/login; changes also need the X-CSRF-Token header" }
            },
            "schemas": crate::schemas::components()
        }
    })
}

/// Adds `extra` to an operation's description: parameters are appended, responses added,
/// anything else set.
pub(crate) fn merge_doc(op: &mut Value, extra: Value) {
    let Value::Object(extra) = extra else {
        return;
    };
    for (k, v) in extra {
        match (k.as_str(), op.get_mut(&k), v) {
            ("parameters", Some(Value::Array(have)), Value::Array(more)) => have.extend(more),
            ("responses", Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
            (_, _, v) => op[k.as_str()] = v,
        }
    }
}

pub(crate) fn error_response() -> Value {
    json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

pub(crate) fn paging_doc() -> Value {
    json!({
        "parameters": [
            { "name": "after", "in": "query", "required": false, "schema": { "type": "string" } },
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
        ],
        "responses": { "400": error_response() }
    })
}

/// A JSON object body. OpenAPI 3.0 forbids an empty `required` list, so a body whose fields
/// are all optional has none.
pub(crate) fn body_doc(required: &[&str], properties: Value) -> Value {
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    json!({
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": schema } }
        }
    })
}
