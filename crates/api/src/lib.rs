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
