//! Users of a tenant.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use bulkhead_proto::{CreateUserRequest, List};
use bulkhead_storage::UserId;

use super::{convert, require_confirmation, CONFIRM_DELETE};
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord},
    auth::Action,
    error::ApiError,
    state::AppState,
};

type Response = Result<HttpResponse, ApiError>;

#[post("/{tid}/users")]
pub(super) async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateUserRequest>,
) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ManageUsers)?;
    let body = body.into_inner();
    let id = UserId::parse(&body.id)?;
    let record = ctx.tenant.create_user(id, body.display_name).await?;
    Ok(HttpResponse::Created().json(convert::user(&record)))
}

#[get("/{tid}/users")]
pub(super) async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadUsers)?;
    let items = ctx.tenant.store().users()?.iter().map(convert::user).collect();
    Ok(HttpResponse::Ok().json(List { items }))
}

#[get("/{tid}/users/{uid}")]
pub(super) async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Response {
    let (tid, uid) = path.into_inner();
    let ctx = state.tenant_scope(&req, &tid, Action::ReadUsers)?;
    let id = UserId::parse(&uid).map_err(|_| ApiError::not_found(format!("user {uid}")))?;
    let record = ctx.tenant.store().user(&id)?.ok_or_else(|| ApiError::not_found(format!("user {uid}")))?;
    Ok(HttpResponse::Ok().json(convert::user(&record)))
}

#[delete("/{tid}/users/{uid}")]
pub(super) async fn delete(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Response {
    let (tid, uid) = path.into_inner();
    let caller = state.caller(&req)?;
    let result: Response = async {
        let ctx = state.scope(&caller, &tid, Action::ManageUsers)?;
        let id = UserId::parse(&uid).map_err(|_| ApiError::not_found(format!("user {uid}")))?;
        require_confirmation(&req, "deleting a user", CONFIRM_DELETE, id.as_str())?;
        ctx.tenant.delete_user(&id).await?;
        tracing::info!(tenant = %tid, user = %id, by = %ctx.principal, "user deleted");
        Ok(HttpResponse::NoContent().finish())
    }
    .await;

    let record = AuditRecord {
        logs: AuditLogs::Tenant(&tid),
        action: AuditAction::DeleteUser,
        object: &uid,
        detail: None,
    };
    state.audit(&caller, record, &result).await;
    result
}
