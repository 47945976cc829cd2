//! Who the caller is.

use crate::auth::Principal;
use crate::common::*;

pub(crate) const OPERATIONS: &[Operation] = &[Operation {
    method: "get",
    path: "/whoami",
    summary: "The calling token: its role, tenant and name.",
    access: Access::Any,
    ok: 200,
    route: || get(whoami),
    doc: None,
}];

async fn whoami(p: Principal) -> Json<Value> {
    Json(
        json!({ "id": p.token_id, "name": p.name, "role": p.role, "tenant": p.tenant, "mfa": p.mfa }),
    )
}
