//! The API describing itself: its OpenAPI document, and who the caller is.

use super::*;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document.",
        access: Access::Public,
        ok: 200,
        route: || get(openapi),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/whoami",
        summary: "The calling token: its role, tenant and name.",
        access: Access::Any,
        ok: 200,
        route: || get(whoami),
        doc: None,
    },
];

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

async fn whoami(p: Principal) -> Json<Value> {
    Json(
        json!({ "id": p.token_id, "name": p.name, "role": p.role, "tenant": p.tenant, "mfa": p.mfa }),
    )
}
