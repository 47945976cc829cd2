//! Who the caller is.

use crate::answers::*;
use crate::auth::Principal;
use crate::common::*;

pub(crate) const OPERATIONS: &[Operation] = &[Operation {
    method: "get",
    path: "/whoami",
    summary: "The calling token: its role, tenant and name.",
    access: Access::Any,
    ok: 200,
    answer: Some(answer::<Whoami>),
    route: || get(whoami),
    doc: None,
}];

async fn whoami(p: Principal) -> Json<Whoami> {
    Json(Whoami {
        id: p.token_id,
        name: p.name,
        role: p.role.as_str().to_string(),
        tenant: p.tenant,
        mfa: p.mfa,
    })
}
