//! User tokens and tenant API keys.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use bulkhead_proto::{
    CreateApiKeyRequest, CreatedApiKey, KeyRole, List, MintTokenRequest, MintedToken, ReplacedApiKey,
    RotateApiKeyRequest, RotatedApiKey,
};
use bulkhead_storage::{ApiKeyRecord, UserId};

use super::convert;
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord},
    auth::{self, Action},
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

/// How long a rotated key keeps working when the request names no overlap: a day, so that
/// every client of the old key can pick up the new one in a normal deploy cycle.
const DEFAULT_ROTATION_OVERLAP_SECS: u64 = 24 * 60 * 60;

/// Maximum overlap of a rotation: a week. A longer one would leave a key that is meant to be
/// replaced working for a long time. The value may change.
const MAX_ROTATION_OVERLAP_SECS: u64 = 7 * 24 * 60 * 60;

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

/// Lists the tenant's keys with their last use and expiry. Expired keys are removed here
/// instead of being listed, since they can no longer authenticate.
#[get("/{tid}/keys")]
pub(super) async fn list_keys(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ManageKeys)?;
    let tenant = ctx.tenant.store().tenant();
    let storage = state.engine.storage();

    let now_ms = bulkhead_storage::now_ms();
    let mut items = Vec::new();
    for record in storage.api_keys(tenant)? {
        if record.is_expired(now_ms) {
            remove_expired_key(&state, &record).await?;
            continue;
        }
        let stored_ms = storage.api_key_last_used(&record.id)?;
        let last_used_ms = stored_ms.max(state.key_usage.latest(&record.id));
        items.push(convert::api_key(&record, last_used_ms));
    }
    Ok(HttpResponse::Ok().json(List { items }))
}

async fn remove_expired_key(state: &AppState, record: &ApiKeyRecord) -> Result<(), ApiError> {
    state.engine.storage().delete_api_key(&record.tenant, &record.id).await?;
    state.key_usage.forget(&record.id);
    tracing::info!(tenant = %record.tenant, key_id = %record.id, expires_at_ms = ?record.expires_at_ms, "expired API key removed");
    Ok(())
}

/// Replaces a key with a new one of the same role and name. The old key keeps working for
/// the overlap and is refused after it.
#[post("/{tid}/keys/{key_id}/rotate")]
pub(super) async fn rotate_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Response {
    let (tid, key_id) = path.into_inner();
    let caller = state.caller(&req)?;
    let mut detail = None;
    let result: Response = async {
        let ctx = state.scope(&caller, &tid, Action::ManageKeys)?;
        let overlap_secs = rotation_overlap_secs(&body)?;
        detail = Some(format!("overlap {overlap_secs} s"));
        let tenant = ctx.tenant.store().tenant();

        let storage = state.engine.storage();
        let old = storage
            .api_key(&key_id)?
            .filter(|key| &key.tenant == tenant)
            .ok_or_else(|| ApiError::not_found(format!("API key {key_id}")))?;
        let role = auth::wire_role(old.role);
        let new_key = auth::new_api_key(tenant, role, old.name.clone());
        let expires_at_ms = bulkhead_storage::now_ms() + overlap_secs * 1000;
        storage.rotate_api_key(tenant, &key_id, &new_key.record, expires_at_ms).await?;

        let new_id = new_key.record.id.clone();
        detail = Some(format!("replaced by {new_id}, overlap {overlap_secs} s, old key expires at {expires_at_ms}"));
        tracing::info!(tenant = %tid, key_id = %key_id, new_key_id = %new_id, overlap_secs, by = %ctx.principal, "API key rotated");
        Ok(HttpResponse::Created().json(RotatedApiKey {
            id: new_id,
            key: new_key.key,
            role,
            name: new_key.record.name,
            replaces: ReplacedApiKey {
                id: key_id.clone(),
                expires_at: expires_at_ms,
            },
        }))
    }
    .await;

    let record = AuditRecord {
        logs: AuditLogs::Tenant(&tid),
        action: AuditAction::RotateKey,
        object: &key_id,
        detail,
    };
    state.audit(&caller, record, &result).await;
    result
}

/// Reads the overlap of a rotation from its body, which may be empty.
fn rotation_overlap_secs(body: &[u8]) -> Result<u64, ApiError> {
    let request: RotateApiKeyRequest = if body.trim_ascii().is_empty() {
        RotateApiKeyRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?
    };
    let overlap_secs = request.overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
    if overlap_secs > MAX_ROTATION_OVERLAP_SECS {
        return Err(ApiError::invalid(format!(
            "overlap_secs must be between 0 and {MAX_ROTATION_OVERLAP_SECS} (7 days), got {overlap_secs}"
        )));
    }
    Ok(overlap_secs)
}

#[delete("/{tid}/keys/{key_id}")]
pub(super) async fn delete_key(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Response {
    let (tid, key_id) = path.into_inner();
    let caller = state.caller(&req)?;
    let result: Response = async {
        let ctx = state.scope(&caller, &tid, Action::ManageKeys)?;
        let tenant = ctx.tenant.store().tenant();

        let deleted = state.engine.storage().delete_api_key(tenant, &key_id).await?;
        if !deleted {
            return Err(ApiError::not_found(format!("API key {key_id}")));
        }
        state.key_usage.forget(&key_id);
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
