//! The operation table: every operation of every resource, in the order the OpenAPI document
//! lists them, and the document itself served from it.

use crate::common::*;
use crate::{
    accounts, audit, connectors, document, domains, meta, queue, restrictions, tenants, trace,
    users, webhooks,
};

/// The table's own operation: the document of every operation.
const OPERATIONS: &[Operation] = &[Operation {
    method: "get",
    path: "/openapi.json",
    summary: "This document.",
    access: Access::Public,
    ok: 200,
    answer: None,
    route: || get(openapi),
    doc: None,
}];

/// Every operation, resource by resource, in the order the document lists them.
pub fn operations() -> impl Iterator<Item = &'static Operation> {
    [
        OPERATIONS,
        meta::OPERATIONS,
        accounts::OPERATIONS,
        tenants::OPERATIONS,
        connectors::OPERATIONS,
        users::OPERATIONS,
        domains::OPERATIONS,
        webhooks::OPERATIONS,
        restrictions::OPERATIONS,
        trace::OPERATIONS,
        audit::OPERATIONS,
        queue::OPERATIONS,
    ]
    .into_iter()
    .flatten()
}

async fn openapi() -> Json<Value> {
    Json(document::build(operations()))
}
