//! Conversations, their members, and messages through REST (a tenant backend's view).

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use bulkhead_engine::{events, metrics::RejectReason, SendRequest};
use bulkhead_proto::{
    AddMemberRequest, CreateConversationRequest, List, MessagePage, PostMessageRequest, SendAck,
};
use bulkhead_storage::{ConvId, UserId};
use serde::Deserialize;

use super::convert;
use crate::{
    auth::{self, Action},
    error::ApiError,
    state::{AppState, TenantContext},
    validate,
};

type Response = Result<HttpResponse, ApiError>;

#[post("/{tid}/conversations")]
pub(super) async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateConversationRequest>,
) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ManageConversations)?;
    let body = body.into_inner();
    let id = match body.id {
        Some(id) => ConvId::parse(&id)?,
        None => ConvId::parse(&format!("c-{}", auth::random_hex(8)))?,
    };
    let members = body
        .members
        .iter()
        .map(|m| UserId::parse(m))
        .collect::<Result<Vec<_>, _>>()?;

    let record = ctx
        .tenant
        .create_conversation(id, convert::conversation_kind(body.kind), body.name, members)
        .await?;
    Ok(HttpResponse::Created().json(convert::conversation(&record, 0)))
}

#[get("/{tid}/conversations")]
pub(super) async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadConversations)?;
    let store = ctx.tenant.store();
    let mut items = Vec::new();
    for record in store.conversations()? {
        let last_seq = store.last_seq(&ConvId::parse(&record.id)?)?;
        items.push(convert::conversation(&record, last_seq));
    }
    Ok(HttpResponse::Ok().json(List { items }))
}

#[get("/{tid}/conversations/{cid}")]
pub(super) async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> Response {
    let (tid, cid) = path.into_inner();
    let ctx = state.tenant_scope(&req, &tid, Action::ReadConversations)?;
    let conv = conv_id(&cid)?;
    conversation_response(&ctx, &conv)
}

#[post("/{tid}/conversations/{cid}/members")]
pub(super) async fn add_member(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<AddMemberRequest>,
) -> Response {
    let (tid, cid) = path.into_inner();
    let ctx = state.tenant_scope(&req, &tid, Action::ManageConversations)?;
    let conv = conv_id(&cid)?;
    let user = UserId::parse(&body.user)?;
    ctx.tenant.add_member(&conv, user).await?;
    conversation_response(&ctx, &conv)
}

#[delete("/{tid}/conversations/{cid}/members/{uid}")]
pub(super) async fn remove_member(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Response {
    let (tid, cid, uid) = path.into_inner();
    let ctx = state.tenant_scope(&req, &tid, Action::ManageConversations)?;
    let conv = conv_id(&cid)?;
    let user = UserId::parse(&uid).map_err(|_| ApiError::not_found(format!("user {uid}")))?;
    ctx.tenant.remove_member(&conv, user).await?;
    conversation_response(&ctx, &conv)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
}

#[get("/{tid}/conversations/{cid}/messages")]
pub(super) async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<HistoryQuery>,
) -> Response {
    let (tid, cid) = path.into_inner();
    let ctx = state.tenant_scope(&req, &tid, Action::ReadMessages)?;
    let conv = conv_id(&cid)?;
    let limit = validate::page_limit(query.limit)?;

    let (records, more) = ctx.tenant.history(None, &conv, query.before, query.after, limit)?;
    let items = records.iter().map(|m| events::message_item(&conv, m)).collect();
    Ok(HttpResponse::Ok().json(MessagePage { items, more }))
}

#[post("/{tid}/conversations/{cid}/messages")]
pub(super) async fn post_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<PostMessageRequest>,
) -> Response {
    let (tid, cid) = path.into_inner();
    let ctx = state.tenant_scope(&req, &tid, Action::SendMessages)?;
    let conv = conv_id(&cid)?;
    let body = body.into_inner();
    let from = UserId::parse(&body.from)?;
    validate::client_msg_id(&body.client_msg_id)?;
    validate::body_size(body.body.get(), ctx.tenant.quota().limits().max_message_bytes).inspect_err(|_| {
        ctx.tenant.quota().metrics.reject(RejectReason::PayloadTooLarge);
    })?;

    let outcome = ctx
        .tenant
        .send(SendRequest {
            from,
            conv,
            client_msg_id: body.client_msg_id,
            body_json: body.body.get().to_owned(),
            origin: None,
        })
        .await?;
    let ack = SendAck {
        seq: outcome.seq,
        ts: outcome.ts_ms,
        duplicate: outcome.duplicate,
    };
    Ok(if outcome.duplicate {
        HttpResponse::Ok().json(ack)
    } else {
        HttpResponse::Created().json(ack)
    })
}

fn conv_id(cid: &str) -> Result<ConvId, ApiError> {
    ConvId::parse(cid).map_err(|_| ApiError::not_found(format!("conversation {cid}")))
}

fn conversation_response(ctx: &TenantContext, conv: &ConvId) -> Response {
    let store = ctx.tenant.store();
    let record = store
        .conversation(conv)?
        .ok_or_else(|| ApiError::not_found(format!("conversation {conv}")))?;
    Ok(HttpResponse::Ok().json(convert::conversation(&record, store.last_seq(conv)?)))
}
