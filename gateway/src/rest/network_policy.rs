//! A tenant's network allowlist: the CIDR blocks its credentials may be used from.

use actix_web::{get, put, web, HttpRequest, HttpResponse};
use bulkhead_proto::NetworkPolicy;
use ipnet::IpNet;

use super::{require_confirmation, CONFIRM_NETWORK_POLICY};
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord, Caller},
    auth::{Action, Principal},
    error::ApiError,
    network,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

#[get("/{tid}/network-policy")]
pub(super) async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadNetworkPolicy)?;
    let allow = state.network_policies.allowlist(state.engine.storage(), ctx.tenant.store().tenant())?;
    Ok(HttpResponse::Ok().json(policy(&allow)))
}

/// Replaces the allowlist; an empty list admits every address again. Needs the header
/// `X-Confirm-Network-Policy: {tid}`.
#[put("/{tid}/network-policy")]
pub(super) async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<NetworkPolicy>,
) -> Response {
    let caller = state.caller(&req)?;
    let mut detail = None;
    let result = replace(&req, &state, &caller, &path, &body.allow, &mut detail).await;

    let record = AuditRecord {
        logs: AuditLogs::Tenant(&path),
        action: AuditAction::SetNetworkPolicy,
        object: &path,
        detail,
    };
    state.audit(&caller, record, &result).await;
    result
}

async fn replace(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    tid: &str,
    entries: &[String],
    detail: &mut Option<String>,
) -> Response {
    let ctx = state.scope(caller, tid, Action::ManageNetworkPolicy)?;
    let tenant = ctx.tenant.store().tenant().clone();
    require_confirmation(req, "changing a network policy", CONFIRM_NETWORK_POLICY, tenant.as_str())?;
    let allow = network::parse_allowlist(entries)?;

    // A tenant key that shuts out its own address would lock its tenant out until the
    // platform admin steps in, so that change is rejected.
    let locks_out_caller = !allow.is_empty() && !allow.iter().any(|net| net.contains(&caller.source));
    if matches!(ctx.principal, Principal::TenantKey { .. }) && locks_out_caller {
        return Err(ApiError::invalid(format!(
            "the allowlist does not contain your address {}; add it, or ask the platform admin to set this policy",
            caller.source
        )));
    }

    let old = state.network_policies.allowlist(state.engine.storage(), &tenant)?;
    *detail = Some(format!("allow: [{}] -> [{}]", join(&old), join(&allow)));
    state.network_policies.set(state.engine.storage(), &tenant, allow.clone()).await?;
    tracing::warn!(tenant = %tenant, allow = %join(&allow), by = %ctx.principal, "network policy changed");
    Ok(HttpResponse::Ok().json(policy(&allow)))
}

fn policy(allow: &[IpNet]) -> NetworkPolicy {
    NetworkPolicy {
        allow: allow.iter().map(ToString::to_string).collect(),
    }
}

fn join(allow: &[IpNet]) -> String {
    allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
