//! Suspending and resuming a tenant.
//!
//! A suspended tenant keeps its data, but its open sessions are closed with code 4003, and
//! new WebSocket upgrades and REST calls with its credentials get `tenant_suspended`. The
//! status is stored in the tenant record, so it survives a restart.

use actix_web::{post, web, HttpRequest, HttpResponse};
use bulkhead_storage::TenantStatus;

use super::convert;
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord},
    auth::Action,
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

#[post("/{tid}/suspend")]
pub(super) async fn suspend(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    set_status(&req, &state, &path, TenantStatus::Suspended).await
}

#[post("/{tid}/resume")]
pub(super) async fn resume(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    set_status(&req, &state, &path, TenantStatus::Active).await
}

/// Stores the new status and applies it to the live tenant. Setting the status it already
/// has succeeds and changes nothing.
async fn set_status(req: &HttpRequest, state: &AppState, tid: &str, status: TenantStatus) -> Response {
    let caller = state.caller(req)?;
    let result: Response = async {
        let ctx = state.scope(&caller, tid, Action::SuspendTenant)?;
        let mut record = ctx.tenant.record();
        if record.status != status {
            record.status = status;
            state.engine.update_tenant(record.clone()).await?;
            tracing::warn!(tenant = %record.id, status = ?status, by = %ctx.principal, "tenant status changed");
        }
        Ok(HttpResponse::Ok().json(convert::tenant(&record)))
    }
    .await;

    let action = match status {
        TenantStatus::Suspended => AuditAction::SuspendTenant,
        TenantStatus::Active => AuditAction::ResumeTenant,
    };
    let record = AuditRecord {
        logs: AuditLogs::Tenant(tid),
        action,
        object: tid,
        detail: None,
    };
    state.audit(&caller, record, &result).await;
    result
}
