//! Accepted domains: adding one, the DNS proof of ownership, DKIM keys and their rotation.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;
use relayward_control::domain_checks::DomainChecks;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/domains",
        summary: "Accepted domains with their verification state and the TXT record to publish.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<DomainList>),
        route: || get(list_domains),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains",
        summary: "Add an accepted domain; it counts once its TXT proof is verified.",
        access: Access::TenantWrite,
        ok: 201,
        answer: Some(answer::<DomainAnswer>),
        route: || post(add_domain),
        doc: Some(new_domain_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/verify",
        summary: "Look up the domain's TXT proof now and mark it verified when found.",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<Verification>),
        route: || post(verify_domain),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/domains/{domain}/checks",
        summary: "Look at the domain's DNS as receivers of the relay's mail will: each DKIM key's record, whether the SPF record lets the relay's sending addresses send for the domain, and its DMARC record, each with what to change. Changes nothing.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<DomainChecks>),
        route: || get(check_domain),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/domains/{domain}/dkim",
        summary: "The domain's DKIM keys: each selector's DNS record to publish and its state (pending, active, retiring, retired).",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<DkimKeys>),
        route: || get(dkim_keys),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/dkim/rotate",
        summary: "Start a key rotation: a new RSA and Ed25519 pair, pending until its records are published and it is activated.",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<DkimKeys>),
        route: || post(dkim_rotate),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/dkim/activate",
        summary: "Sign with the pending keys once their records are found in DNS; the old keys become retiring (keep their records a week).",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<DkimKeys>),
        route: || post(dkim_activate),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/dkim/retire",
        summary: "End a rotation's overlap: retiring keys become retired and their records may be removed.",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<DkimKeys>),
        route: || post(dkim_retire),
        doc: None,
    },
];

fn new_domain_doc() -> Value {
    json!({
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": { "type": "string" },
                    "kind": { "type": "string", "enum": ["authoritative", "internal_relay"], "nullable": true },
                    "match_subdomains": { "type": "boolean", "nullable": true }
                },
                "additionalProperties": false
            } } }
        }
    })
}

async fn list_domains(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<DomainList>> {
    let d = tenant_data(&s, &a.tenant).await?;
    Ok(Json(DomainList {
        domains: d.domains.iter().map(DomainAnswer::from).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
    kind: Option<String>,
    match_subdomains: Option<bool>,
}

async fn add_domain(
    a: TenantAccess,
    State(s): State<ApiState>,
    body: Result<Json<NewDomain>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<DomainAnswer>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let kind = match body.kind.as_deref() {
        None => DomainKind::Authoritative,
        Some(k) => DomainKind::parse(k).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "kind must be authoritative or internal_relay",
            )
        })?,
    };
    let d = s
        .control
        .add_domain(
            &a.tenant,
            &body.name,
            kind,
            body.match_subdomains.unwrap_or(false),
            false,
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(DomainAnswer::from(&d))))
}

async fn verify_domain(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Verification>> {
    let found = s
        .control
        .verify_domain(
            &a.tenant,
            &domain,
            s.resolver.as_ref(),
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    let answer = |verified, already, expected, found| Verification {
        domain: domain.clone(),
        verified,
        already,
        expected,
        found,
    };
    Ok(Json(match found {
        DomainVerification::Verified => answer(true, None, None, None),
        DomainVerification::AlreadyVerified => answer(true, Some(true), None, None),
        DomainVerification::NotFound { expected, found } => {
            answer(false, None, Some(expected), Some(found))
        }
    }))
}

async fn check_domain(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<DomainChecks>> {
    let report = s
        .control
        .check_domain(&a.tenant, &domain, s.resolver.as_ref())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(report))
}

/// The domain's keys, named as the domain is kept (a path may write it in Unicode).
fn dkim_json(domain: &str, keys: &[relayward_store::DkimKey]) -> Json<DkimKeys> {
    Json(DkimKeys::of(&relayward_store::domain_key(domain), keys))
}

async fn dkim_keys(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<DkimKeys>> {
    let keys = s
        .control
        .dkim_keys(&a.tenant, &domain)
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_rotate(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<DkimKeys>> {
    s.control
        .rotate_dkim(&a.tenant, &domain, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    let keys = s
        .control
        .dkim_keys(&a.tenant, &domain)
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_activate(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<DkimKeys>> {
    let keys = s
        .control
        .activate_dkim(
            &a.tenant,
            &domain,
            s.resolver.as_ref(),
            false,
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_retire(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<DkimKeys>> {
    let keys = s
        .control
        .retire_dkim(&a.tenant, &domain, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}
