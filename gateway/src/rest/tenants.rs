//! Tenant lifecycle: create, list, read, change, delete; and usage.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use bulkhead_engine::Feature;
use bulkhead_proto::{CreateTenantRequest, CreatedApiKey, CreatedTenant, KeyRole, List, PatchTenantRequest, Quotas};
use bulkhead_storage::{TenantId, TenantRecord, TenantStatus};
use serde_json::json;

use super::{convert, require_confirmation, CONFIRM_DELETE};
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord, Caller},
    auth::{self, Action},
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

#[post("")]
pub(super) async fn create_tenant(req: HttpRequest, state: web::Data<AppState>, body: web::Json<CreateTenantRequest>) -> Response {
    let caller = state.caller(&req)?;
    let body = body.into_inner();
    let result = create(&state, &caller, body.clone()).await;
    let record = AuditRecord {
        logs: AuditLogs::Platform,
        action: AuditAction::CreateTenant,
        object: &body.id,
        detail: None,
    };
    state.audit(&caller, record, &result).await;
    result
}

async fn create(state: &AppState, caller: &Caller, body: CreateTenantRequest) -> Response {
    auth::authorize(&caller.principal, Action::CreateTenant, None)?;
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
    let caller = state.caller(&req)?;
    let mut changes = Vec::new();
    let mut status_change = None;
    let result = patch(&state, &caller, &path, body.into_inner(), &mut changes, &mut status_change).await;

    let record = AuditRecord {
        logs: AuditLogs::Platform,
        action: AuditAction::UpdateTenant,
        object: &path,
        detail: (!changes.is_empty()).then(|| changes.join("; ")),
    };
    state.audit(&caller, record, &result).await;
    // The tenant's own log shows suspensions too, whichever route made them.
    if let Some(action) = status_change {
        let record = AuditRecord {
            logs: AuditLogs::TenantOnly(&path),
            action,
            object: &path,
            detail: None,
        };
        state.audit(&caller, record, &result).await;
    }
    result
}

/// Applies the patch; `changes` receives one line per changed field for the audit log, and
/// `status_change` the suspend or resume it contains.
async fn patch(
    state: &AppState,
    caller: &Caller,
    tid: &str,
    body: PatchTenantRequest,
    changes: &mut Vec<String>,
    status_change: &mut Option<AuditAction>,
) -> Response {
    let ctx = state.scope(caller, tid, Action::UpdateTenant)?;
    let old = ctx.tenant.record();
    let mut record = old.clone();

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

    *changes = describe_changes(&old, &record);
    if old.status != record.status {
        *status_change = Some(match record.status {
            TenantStatus::Suspended => AuditAction::SuspendTenant,
            TenantStatus::Active => AuditAction::ResumeTenant,
        });
    }
    state.engine.update_tenant(record.clone()).await?;
    tracing::info!(tenant = %record.id, by = %ctx.principal, "tenant updated");
    Ok(HttpResponse::Ok().json(convert::tenant(&record)))
}

#[delete("/{tid}")]
pub(super) async fn delete_tenant(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let caller = state.caller(&req)?;
    let result: Response = async {
        let ctx = state.scope(&caller, &path, Action::DeleteTenant)?;
        let id = ctx.tenant.store().tenant().clone();
        require_confirmation(&req, "deleting a tenant", CONFIRM_DELETE, id.as_str())?;

        state.engine.delete_tenant(&id).await?;
        state.network_policies.forget(&id);
        tracing::warn!(tenant = %id, by = %ctx.principal, "tenant deleted with all its data");
        Ok(HttpResponse::NoContent().finish())
    }
    .await;

    let record = AuditRecord {
        logs: AuditLogs::Platform,
        action: AuditAction::DeleteTenant,
        object: &path,
        detail: None,
    };
    state.audit(&caller, record, &result).await;
    result
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

/// Lists the changed fields of a tenant record, as `field: old -> new`.
fn describe_changes(old: &TenantRecord, new: &TenantRecord) -> Vec<String> {
    let mut changes = Vec::new();
    if old.name != new.name {
        changes.push(format!("name: {:?} -> {:?}", old.name, new.name));
    }
    let (a, b) = (&old.quotas, &new.quotas);
    let quotas = [
        ("cpu_millicores", a.cpu_millicores, b.cpu_millicores),
        ("memory_bytes", a.memory_bytes, b.memory_bytes),
        ("ingress_bytes_per_sec", a.ingress_bytes_per_sec, b.ingress_bytes_per_sec),
        ("egress_bytes_per_sec", a.egress_bytes_per_sec, b.egress_bytes_per_sec),
        ("max_connections", a.max_connections, b.max_connections),
        ("max_message_bytes", a.max_message_bytes, b.max_message_bytes),
        ("max_storage_bytes", a.max_storage_bytes, b.max_storage_bytes),
        ("weight", a.weight, b.weight),
        ("rest_requests_per_sec", a.rest_requests_per_sec, b.rest_requests_per_sec),
    ];
    for (field, before, after) in quotas {
        if before != after {
            changes.push(format!("{field}: {before} -> {after}"));
        }
    }
    if old.features != new.features {
        changes.push(format!("features: [{}] -> [{}]", old.features.join(", "), new.features.join(", ")));
    }
    if old.status != new.status {
        changes.push(format!("status: {:?} -> {:?}", old.status, new.status).to_lowercase());
    }
    changes
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
        ("rest_requests_per_sec", quotas.rest_requests_per_sec),
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
