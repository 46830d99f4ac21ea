//! User tokens and tenant API keys.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use bulkhead_proto::{CreateApiKeyRequest, CreatedApiKey, KeyRole, List, MintTokenRequest, MintedToken};
use bulkhead_storage::UserId;

use super::convert;
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord},
    auth::{self, Action},
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

/// Mints a user token signed with the tenant's secret, for backends that do not sign their
/// own.
#[post("/{tid}/tokens")]
pub(super) async fn mint_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<MintTokenRequest>,
) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::MintTokens)?;
    let user = UserId::parse(&body.user)?;
    let max_ttl = state.config.max_token_ttl_secs;
    if body.ttl_secs == 0 || body.ttl_secs > max_ttl {
        return Err(ApiError::invalid(format!("ttl_secs must be between 1 and {max_ttl}")));
    }
    if ctx.tenant.store().user(&user)?.is_none() {
        return Err(ApiError::not_found(format!("user {user}")));
    }

    let record = ctx.tenant.record();
    let (token, expires_at) = auth::mint_user_token(&record.id, user.as_str(), body.ttl_secs, &record.signing_secret)?;
    Ok(HttpResponse::Ok().json(MintedToken { token, expires_at }))
}

#[post("/{tid}/keys")]
pub(super) async fn create_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateApiKeyRequest>,
) -> Response {
    let caller = state.caller(&req)?;
    let body = body.into_inner();
    let mut key_id = String::new();
    let result: Response = async {
        let ctx = state.scope(&caller, &path, Action::ManageKeys)?;
        let new_key = auth::new_api_key(ctx.tenant.store().tenant(), body.role, body.name.clone());
        key_id = new_key.record.id.clone();
        state.engine.storage().put_api_key(&new_key.record).await?;
        tracing::info!(tenant = %path, key_id = %new_key.record.id, role = ?body.role, by = %ctx.principal, "API key created");

        Ok(HttpResponse::Created().json(CreatedApiKey {
            id: new_key.record.id,
            key: new_key.key,
            role: body.role,
        }))
    }
    .await;

    let record = AuditRecord {
        logs: AuditLogs::Tenant(&path),
        action: AuditAction::CreateKey,
        object: &key_id,
        detail: Some(format!("role {}", role_name(body.role))),
    };
    state.audit(&caller, record, &result).await;
    result
}

fn role_name(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Admin => "admin",
        KeyRole::Auditor => "auditor",
        KeyRole::Service => "service",
    }
}

#[get("/{tid}/keys")]
pub(super) async fn list_keys(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ManageKeys)?;
    let records = state.engine.storage().api_keys(ctx.tenant.store().tenant())?;
    let items = records.iter().map(convert::api_key).collect();
    Ok(HttpResponse::Ok().json(List { items }))
}

#[delete("/{tid}/keys/{key_id}")]
pub(super) async fn delete_key(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Response {
    let (tid, key_id) = path.into_inner();
    let caller = state.caller(&req)?;
    let result: Response = async {
        let ctx = state.scope(&caller, &tid, Action::ManageKeys)?;
        let tenant = ctx.tenant.store().tenant();

        let storage = state.engine.storage();
        let owned = storage.api_key(&key_id)?.is_some_and(|k| &k.tenant == tenant);
        if !owned {
            return Err(ApiError::not_found(format!("API key {key_id}")));
        }
        storage.delete_api_key(tenant, &key_id).await?;
        tracing::info!(tenant = %tid, key_id = %key_id, by = %ctx.principal, "API key revoked");
        Ok(HttpResponse::NoContent().finish())
    }
    .await;

    let record = AuditRecord {
        logs: AuditLogs::Tenant(&tid),
        action: AuditAction::RevokeKey,
        object: &key_id,
        detail: None,
    };
    state.audit(&caller, record, &result).await;
    result
}
