//! The management API under `/api/v1`: API tokens for scripts and console sessions, tenant
//! isolation in one place, and every resource. Every action goes through the control plane
//! (`relayward_control`), as the command line's do.
//!
//! One table (`OPERATIONS`) lists every operation with its method, path, who may call it and its
//! handler; the router and the OpenAPI document at `/api/v1/openapi.json` are both built from it,
//! so the document cannot drift from what is served.
//!
//! Access: an operator token reaches everything; an admin or reader token reaches its own tenant
//! only, and any other tenant's objects answer 404 exactly as a tenant that does not exist
//! (`TenantAccess`, the one place that decides). Readers read; writing needs an admin.

mod accounts;
mod answers;
mod audit;
mod auth;
mod common;
mod connectors;
mod document;
mod domains;
mod meta;
mod queue;
mod restrictions;
mod table;
mod tenants;
mod trace;
mod users;
mod webhooks;

use axum::routing::MethodRouter;

pub use auth::{Principal, TenantAccess};
pub use common::{Access, ApiError, ApiState, Operation};
pub use table::operations;

/// The OpenAPI 3 document of every operation.
pub fn openapi_document() -> serde_json::Value {
    document::build(operations())
}

/// The `/api/v1` router, built from `OPERATIONS`: each operation's handler behind the access
/// layer that enforces its declared access.
pub fn router(state: ApiState) -> axum::Router {
    let mut paths: Vec<(&str, MethodRouter<ApiState>)> = Vec::new();
    for op in operations() {
        let guarded = (op.route)().layer(axum::middleware::from_fn_with_state(
            (state.clone(), op.access, op.path.contains("{tenant}")),
            auth::enforce,
        ));
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, r)) => *r = std::mem::take(r).merge(guarded),
            None => paths.push((op.path, guarded)),
        }
    }
    let mut router = axum::Router::new();
    for (path, methods) in paths {
        router = router.route(&common::axum_path(path), methods);
    }
    router
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such API path") })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::axum_path;

    #[test]
    fn the_document_lists_every_operation_once() {
        let doc = openapi_document();
        for op in operations() {
            let p = &doc["paths"][format!("/api/v1{}", op.path)][op.method];
            assert!(p.is_object(), "{} {} missing", op.method, op.path);
        }
        assert_eq!(
            axum_path("/tenants/{tenant}/domains/{domain}/verify"),
            "/tenants/:tenant/domains/:domain/verify"
        );
    }

    /// Every JSON answer is described by the schema of its type: an operation with a body and
    /// no answer type would be an undocumented answer.
    #[test]
    fn every_json_answer_has_a_derived_schema() {
        let doc = openapi_document();
        for op in operations() {
            let ok = &doc["paths"][format!("/api/v1{}", op.path)][op.method]["responses"]
                [op.ok.to_string()];
            let json = &ok["content"]["application/json"];
            if op.ok == 204 || op.path == "/openapi.json" || json.is_null() {
                assert!(op.answer.is_none(), "{} {}", op.method, op.path);
                continue;
            }
            assert!(
                op.answer.is_some(),
                "{} {} has no answer type",
                op.method,
                op.path
            );
            let schema = &json["schema"];
            assert!(
                schema["$ref"].is_string() || schema["properties"].is_object(),
                "{} {}: {schema}",
                op.method,
                op.path
            );
        }
        // Shared objects are components, with their fields.
        let tenant = &doc["components"]["schemas"]["Tenant"];
        assert!(
            tenant["properties"]["subscription_ends"].is_object(),
            "{tenant}"
        );
        let restriction = &doc["components"]["schemas"]["Restriction"];
        assert!(
            restriction["properties"]["history"].is_object(),
            "{restriction}"
        );
        // Secrets are never described, as they are never sent.
        let account = &doc["components"]["schemas"]["Account"];
        assert!(
            account["properties"]["password_hash"].is_null(),
            "{account}"
        );
        assert!(account["properties"]["totp_secret"].is_null(), "{account}");
    }
}
