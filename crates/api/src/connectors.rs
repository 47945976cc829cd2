//! A tenant's connectors: listing with their unusual flags, creation (a claim on source addresses), removal, review.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;
use crate::document::body_doc;
use relayward_store::Connector;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/connectors",
        summary: "Connectors: IP ranges, certificate name, require-TLS, may-relay-unregistered, who made them and when, reviewed mark.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<ConnectorList>),
        route: || get(list_connectors),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/connectors",
        summary: "Add a connector (unreviewed until an admin reviews it).",
        access: Access::TenantWrite,
        ok: 201,
        answer: Some(answer::<Connector>),
        route: || post(create_connector),
        doc: Some(new_connector_doc),
    },
    Operation {
        method: "delete",
        path: "/tenants/{tenant}/connectors/{connector}",
        summary: "Remove a connector (sessions it recognised are closed at their next MAIL FROM).",
        access: Access::TenantWrite,
        ok: 204,
        answer: None,
        route: || delete(delete_connector),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/connectors/{connector}/review",
        summary: "Mark a connector reviewed (remediation checklist item 3).",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<Reviewed>),
        route: || post(review_connector),
        doc: None,
    },
];

fn new_connector_doc() -> Value {
    body_doc(
        &["name"],
        json!({
            "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
            "ips": { "type": "array", "items": { "type": "string" } },
            "cert_name": { "type": "string", "nullable": true },
            "require_tls": { "type": "boolean" },
            "relay_unregistered": { "type": "boolean" }
        }),
    )
}

async fn list_connectors(
    a: TenantAccess,
    State(s): State<ApiState>,
) -> ApiResult<Json<ConnectorList>> {
    let d = tenant_data(&s, &a.tenant).await?;
    let flags = s
        .control
        .connector_flags(&d.connectors, &a.tenant)
        .await
        .map_err(ApiError::internal)?;
    let connectors = d
        .connectors
        .into_iter()
        .map(|c| ConnectorListed {
            unusual: flags
                .get(&c.name)
                .map(|f| f.iter().map(|n| n.english()).collect())
                .unwrap_or_default(),
            connector: c,
        })
        .collect();
    Ok(Json(ConnectorList { connectors }))
}

async fn create_connector(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::NewConnector>,
) -> ApiResult<(StatusCode, Json<Connector>)> {
    let c = s
        .control
        .add_connector(&a.tenant, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(c)))
}

async fn delete_connector(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.control
        .delete_connector(&a.tenant, &name, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn review_connector(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Reviewed>> {
    s.control
        .review_connector(&a.tenant, &name, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(Reviewed {
        connector: name,
        reviewed: true,
    }))
}
