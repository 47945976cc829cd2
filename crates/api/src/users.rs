//! A tenant's users: listing with their flags, creation, changes (password, aliases, forwarding), removal.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;
use crate::document::body_doc;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/users",
        summary: "Users: address, aliases, forwarding, whether SMTP AUTH is set (never the password).",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<UserList>),
        route: || get(list_users),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/users",
        summary: "Add a user in one of the tenant's domains: aliases, forwarding, SMTP AUTH password (12 characters or more).",
        access: Access::TenantWrite,
        ok: 201,
        answer: Some(answer::<UserAnswer>),
        route: || post(create_user),
        doc: Some(new_user_doc),
    },
    Operation {
        method: "patch",
        path: "/tenants/{tenant}/users/{user}",
        summary: "Change a user's password (null removes SMTP AUTH; sessions signed in with the old one are closed at their next MAIL FROM), aliases or forwarding (forward_to null stops it).",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<UserAnswer>),
        route: || patch(update_user),
        doc: Some(user_patch_doc),
    },
    Operation {
        method: "delete",
        path: "/tenants/{tenant}/users/{user}",
        summary: "Remove a user (its sessions signed in now are closed at their next MAIL FROM).",
        access: Access::TenantWrite,
        ok: 204,
        answer: None,
        route: || delete(delete_user),
        doc: None,
    },
];

fn new_user_doc() -> Value {
    body_doc(
        &["address"],
        json!({
            "address": { "type": "string", "pattern": EMAIL_PATTERN },
            "password": { "type": "string", "minLength": 12, "nullable": true },
            "aliases": { "type": "array", "items": { "type": "string", "pattern": EMAIL_PATTERN } },
            "forward_to": { "type": "string", "pattern": EMAIL_PATTERN, "nullable": true },
            "forward_only": { "type": "boolean" }
        }),
    )
}

fn user_patch_doc() -> Value {
    body_doc(
        &[],
        json!({
            "password": { "type": "string", "minLength": 12, "nullable": true },
            "aliases": { "type": "array", "nullable": true, "items": { "type": "string", "pattern": EMAIL_PATTERN } },
            "forward_to": { "type": "string", "pattern": EMAIL_PATTERN, "nullable": true },
            "forward_only": { "type": "boolean", "nullable": true }
        }),
    )
}

async fn list_users(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<UserList>> {
    let d = tenant_data(&s, &a.tenant).await?;
    let flags = s
        .control
        .user_flags(&a.tenant)
        .await
        .map_err(ApiError::internal)?;
    let users = d
        .users
        .iter()
        .map(|u| UserListed {
            user: UserAnswer::from(u),
            flags: flags
                .get(&u.address.to_ascii_lowercase())
                .map(|f| f.iter().map(|n| n.english()).collect())
                .unwrap_or_default(),
        })
        .collect();
    Ok(Json(UserList { users }))
}

async fn create_user(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::NewUser>,
) -> ApiResult<(StatusCode, Json<UserAnswer>)> {
    let u = s
        .control
        .add_user(&a.tenant, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(UserAnswer::from(&u))))
}

async fn update_user(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, address)): Path<(String, String)>,
    b: JsonBody<relayward_control::directory::UserPatch>,
) -> ApiResult<Json<UserAnswer>> {
    let u = s
        .control
        .update_user(&a.tenant, &address, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(UserAnswer::from(&u)))
}

async fn delete_user(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, address)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.control
        .delete_user(&a.tenant, &address, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(StatusCode::NO_CONTENT)
}
