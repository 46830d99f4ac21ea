//! Tenant lifecycle: create, list, read, change, delete; and usage.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use bulkhead_engine::Feature;
use bulkhead_proto::{CreateTenantRequest, CreatedApiKey, CreatedTenant, KeyRole, List, PatchTenantRequest, Quotas};
use bulkhead_storage::{TenantId, TenantRecord, TenantStatus};
use serde_json::json;

use super::convert;
use crate::{
    auth::{self, Action},
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

#[post("")]
pub(super) async fn create_tenant(req: HttpRequest, state: web::Data<AppState>, body: web::Json<CreateTenantRequest>) -> Response {
    state.platform(&req, Action::CreateTenant)?;
    let body = body.into_inner();
    let id = TenantId::parse(&body.id)?;
    let name = validate_name(&body.name)?;
    let quotas = match &body.quotas {
        Some(patch) => convert::patch_quotas(&state.config.default_quotas, patch),
        None => state.config.default_quotas.clone(),
    };
    validate_quotas(&quotas)?;
    let features = validate_features(body.features)?;

    let record = TenantRecord {
        id: id.clone(),
        name,
        tier: convert::tier(body.tier.unwrap_or_default()),
        status: TenantStatus::Active,
        quotas: convert::quota_limits(&quotas),
        features,
        signing_secret: auth::random_hex(32),
        created_at_ms: bulkhead_storage::now_ms(),
    };
    let first_key = auth::new_api_key(&id, KeyRole::Admin, Some("first admin key".into()));
    state.engine.create_tenant(record.clone(), first_key.record.clone()).await?;
    tracing::info!(tenant = %id, "tenant created");

    Ok(HttpResponse::Created().json(CreatedTenant {
        tenant: convert::tenant(&record),
        api_key: CreatedApiKey {
            id: first_key.record.id,
            key: first_key.key,
            role: KeyRole::Admin,
        },
        signing_secret: record.signing_secret,
    }))
}

#[get("")]
pub(super) async fn list_tenants(req: HttpRequest, state: web::Data<AppState>) -> Response {
    state.platform(&req, Action::ListTenants)?;
    let records = state.engine.storage().tenants()?;
    let items = records.iter().map(convert::tenant).collect();
    Ok(HttpResponse::Ok().json(List { items }))
}

#[get("/{tid}")]
pub(super) async fn get_tenant(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadTenant)?;
    Ok(HttpResponse::Ok().json(convert::tenant(&ctx.tenant.record())))
}

#[patch("/{tid}")]
pub(super) async fn patch_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<PatchTenantRequest>,
) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::UpdateTenant)?;
    let body = body.into_inner();
    let mut record = ctx.tenant.record();

    if let Some(name) = &body.name {
        record.name = validate_name(name)?;
    }
    if let Some(patch) = &body.quotas {
        let quotas = convert::patch_quotas(&convert::quotas(&record.quotas), patch);
        validate_quotas(&quotas)?;
        record.quotas = convert::quota_limits(&quotas);
    }
    if body.features.is_some() {
        record.features = validate_features(body.features)?;
    }
    if let Some(status) = body.status {
        record.status = convert::status(status);
    }

    state.engine.update_tenant(record.clone()).await?;
    tracing::info!(tenant = %record.id, by = %ctx.principal, "tenant updated");
    Ok(HttpResponse::Ok().json(convert::tenant(&record)))
}

#[delete("/{tid}")]
pub(super) async fn delete_tenant(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::DeleteTenant)?;
    let id = ctx.tenant.store().tenant().clone();
    require_confirmation(&req, id.as_str())?;

    state.engine.delete_tenant(&id).await?;
    tracing::warn!(tenant = %id, by = %ctx.principal, "tenant deleted with all its data");
    Ok(HttpResponse::NoContent().finish())
}

/// Limits and current usage of every quota, in the units of the metrics: cores, bytes,
/// bytes per second and connections.
#[get("/{tid}/usage")]
pub(super) async fn usage(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadUsage)?;
    let quota = ctx.tenant.quota();
    let resources: serde_json::Map<String, serde_json::Value> = ctx
        .tenant
        .quota_usage()
        .into_iter()
        .map(|(resource, limit, usage)| {
            let throttled = quota.metrics.throttled_time(resource).as_secs_f64();
            let entry = json!({ "limit": limit, "usage": usage, "throttled_seconds": throttled });
            (resource.as_str().to_owned(), entry)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "tenant": ctx.tenant.store().tenant().as_str(),
        "quotas": convert::quotas(&quota.limits()),
        "resources": resources,
        "backlog": { "bytes": quota.memory_used(), "messages": quota.backlog_messages() },
    })))
}

/// Dangerous deletions need `X-Confirm-Delete: <id>` on top of the role, so that a
/// mistyped path or a replayed request cannot delete by accident.
pub fn require_confirmation(req: &HttpRequest, id: &str) -> Result<(), ApiError> {
    let confirmed = req
        .headers()
        .get("x-confirm-delete")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == id);
    if confirmed {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("deleting {id} needs the header X-Confirm-Delete: {id}")))
    }
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name must have 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

fn validate_quotas(quotas: &Quotas) -> Result<(), ApiError> {
    let fields = [
        ("cpu_millicores", quotas.cpu_millicores),
        ("memory_bytes", quotas.memory_bytes),
        ("ingress_bytes_per_sec", quotas.ingress_bytes_per_sec),
        ("egress_bytes_per_sec", quotas.egress_bytes_per_sec),
        ("max_connections", quotas.max_connections),
        ("max_message_bytes", quotas.max_message_bytes),
        ("max_storage_bytes", quotas.max_storage_bytes),
        ("weight", quotas.weight),
    ];
    for (name, value) in fields {
        if value == 0 {
            return Err(ApiError::invalid(format!("quota {name} must be at least 1")));
        }
    }
    Ok(())
}

fn validate_features(features: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let mut features = features.unwrap_or_else(|| Feature::ALL.iter().map(|f| f.to_string()).collect());
    if let Some(unknown) = features.iter().find(|f| Feature::parse(f).is_none()) {
        return Err(ApiError::invalid(format!(
            "unknown feature {unknown:?}; known features: {}",
            Feature::names()
        )));
    }
    features.sort();
    features.dedup();
    Ok(features)
}
