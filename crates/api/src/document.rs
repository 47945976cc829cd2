//! The OpenAPI 3 document, built from the operation table, and the pieces of description the
//! resources add to it.

use crate::common::*;

/// The OpenAPI 3 document, from `OPERATIONS`.
pub(crate) fn build(ops: impl Iterator<Item = &'static Operation>) -> Value {
    let mut paths = serde_json::Map::new();
    // Answer schemas are derived from the answer types; the objects they share (a tenant, a
    // restriction, ...) become components, referenced from each answer.
    let mut generator = schemars::r#gen::SchemaSettings::openapi3().into_generator();
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
        if op.access == Access::TenantWrite {
            responses.insert("429".into(), error.clone());
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
        if let Some(answer) = op.answer {
            let mut schema = answer(&mut generator);
            schemars::visit::Visitor::visit_schema(&mut OpenApi30, &mut schema);
            let schema = serde_json::to_value(schema).unwrap_or_default();
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
            "schemas": components(&mut generator)
        }
    })
}

/// What OpenAPI 3.0 cannot say in JSON Schema's words, said its way: it has no tuples, so an
/// array whose items are listed one by one (a `(name, count)` pair) becomes an array of items
/// that are any of those; and no boolean schemas, so "anything" (`true`) becomes `{}`.
#[derive(Debug, Clone)]
struct OpenApi30;

impl schemars::visit::Visitor for OpenApi30 {
    fn visit_schema(&mut self, schema: &mut schemars::schema::Schema) {
        if let schemars::schema::Schema::Bool(true) = schema {
            *schema = schemars::schema::Schema::Object(Default::default());
        }
        schemars::visit::visit_schema(self, schema);
    }

    fn visit_schema_object(&mut self, schema: &mut schemars::schema::SchemaObject) {
        use schemars::schema::{Schema, SchemaObject, SingleOrVec, SubschemaValidation};
        if let Some(array) = schema.array.as_mut()
            && let Some(SingleOrVec::Vec(items)) = array.items.take()
        {
            let any = SchemaObject {
                subschemas: Some(Box::new(SubschemaValidation {
                    any_of: Some(items),
                    ..Default::default()
                })),
                ..Default::default()
            };
            array.items = Some(SingleOrVec::Single(Box::new(Schema::Object(any))));
            array.max_items = None;
            array.min_items = None;
        }
        schemars::visit::visit_schema_object(self, schema);
    }
}

/// `components.schemas`: every object the answers share, and the error body.
fn components(generator: &mut schemars::r#gen::SchemaGenerator) -> Value {
    for schema in generator.definitions_mut().values_mut() {
        schemars::visit::Visitor::visit_schema(&mut OpenApi30, schema);
    }
    let mut all = serde_json::to_value(generator.definitions()).unwrap_or_else(|_| json!({}));
    all["Error"] = json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": { "type": "string" } }
    });
    all
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
