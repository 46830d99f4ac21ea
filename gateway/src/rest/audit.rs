//! Reading the audit logs: `GET /v1/tenants/{tid}/audit` and `GET /v1/audit`.

use actix_web::{get, web, HttpRequest, HttpResponse};
use bulkhead_proto::AuditPage;
use bulkhead_storage::audit::{self, AuditHead, AuditQuery};
use serde::Deserialize;

use crate::{
    audit::{wire_entry, wire_head},
    auth::Action,
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

/// Entries per page when the request names no `limit`.
const DEFAULT_PAGE_ENTRIES: usize = 100;

/// Maximum entries per page, which bounds the work of one request.
const MAX_PAGE_ENTRIES: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
    /// Only entries of this action, such as `user.delete`.
    action: Option<String>,
    /// Only entries at or after this time, in ms since the Unix epoch.
    since: Option<u64>,
    /// Only entries at or before this time, in ms since the Unix epoch.
    until: Option<u64>,
    /// Only entries after this seq: the last seq of the previous page.
    after: Option<u64>,
    limit: Option<usize>,
}

impl AuditParams {
    fn query(self) -> Result<AuditQuery, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_ENTRIES);
        if limit == 0 || limit > MAX_PAGE_ENTRIES {
            return Err(ApiError::invalid(format!("limit must be between 1 and {MAX_PAGE_ENTRIES}")));
        }
        Ok(AuditQuery {
            action: self.action,
            since_ms: self.since,
            until_ms: self.until,
            after_seq: self.after.unwrap_or(0),
            limit,
        })
    }
}

#[get("/{tid}/audit")]
pub(super) async fn tenant_log(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<AuditParams>,
) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadAudit)?;
    let query = params.into_inner().query()?;
    let store = ctx.tenant.store();
    let head = store.audit_head()?;
    let page = store.audit(&query)?;
    Ok(HttpResponse::Ok().json(wire_page(page, head)))
}

#[get("/v1/audit")]
pub(super) async fn platform_log(req: HttpRequest, state: web::Data<AppState>, params: web::Query<AuditParams>) -> Response {
    state.platform(&req, Action::ReadPlatformAudit)?;
    let query = params.into_inner().query()?;
    let storage = state.engine.storage();
    let head = storage.platform_audit_head()?;
    let page = storage.platform_audit(&query)?;
    Ok(HttpResponse::Ok().json(wire_page(page, head)))
}

fn wire_page(page: audit::AuditPage, head: Option<AuditHead>) -> AuditPage {
    AuditPage {
        items: page.items.iter().map(|(entry, hash)| wire_entry(entry, hash)).collect(),
        more: page.more,
        head: head.as_ref().map(wire_head),
    }
}
