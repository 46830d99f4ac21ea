//! Moving a tenant to another isolation tier while the server runs.
//!
//! The tenant's writes wait while its data is copied; its reads, its open sessions and every
//! other tenant go on. The response reports how long the writes waited.

use actix_web::{post, web, HttpRequest, HttpResponse};
use bulkhead_proto::{MigrateTenantRequest, TenantMigration};

use super::convert;
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord},
    auth::Action,
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

#[post("/{tid}/migrate")]
pub(super) async fn migrate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<MigrateTenantRequest>,
) -> Response {
    let caller = state.caller(&req)?;
    let tid = path.into_inner();
    let to = convert::tier(body.tier);
    let mut detail = None;
    let result: Response = async {
        let ctx = state.scope(&caller, &tid, Action::MigrateTenant)?;
        let report = state.engine.migrate_tenant(&ctx.tenant.record().id, to).await?;
        detail = Some(format!("{:?} -> {:?}", report.from, report.to).to_lowercase());
        Ok(HttpResponse::Ok().json(TenantMigration {
            tenant: convert::tenant(&ctx.tenant.record()),
            from: convert::wire_tier(report.from),
            to: convert::wire_tier(report.to),
            keys_copied: report.keys_copied,
            writes_paused_ms: report.writes_paused.as_millis() as u64,
        }))
    }
    .await;

    let record = AuditRecord {
        logs: AuditLogs::Tenant(&tid),
        action: AuditAction::MigrateTenant,
        object: &tid,
        detail,
    };
    state.audit(&caller, record, &result).await;
    result
}
