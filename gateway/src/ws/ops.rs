//! The WebSocket operations: each takes a parsed request and returns the response frame.

use bulkhead_engine::{events, metrics::RejectReason, AmendOutcome, Amendment, SendRequest, SessionId, TenantHandle};
use bulkhead_proto::{ConversationPage, ErrorCode, ServerFrame};
use bulkhead_storage::UserId;
use serde_json::value::RawValue;

use super::frames::Request;
use crate::{error::ApiError, validate};

/// Runs one request for `user` and builds its response frame (an error frame on failure).
pub async fn execute(
    tenant: TenantHandle,
    user: UserId,
    session: SessionId,
    id: Option<Box<RawValue>>,
    request: Request,
) -> ServerFrame {
    match run(&tenant, &user, session, id.clone(), request).await {
        Ok(frame) => frame,
        Err(error) => error_frame(id, error),
    }
}

async fn run(
    tenant: &TenantHandle,
    user: &UserId,
    session: SessionId,
    id: Option<Box<RawValue>>,
    request: Request,
) -> Result<ServerFrame, ApiError> {
    tenant.ensure_active()?;
    match request {
        Request::Send { conv, client_msg_id, body_json } => {
            validate::body_size(&body_json, tenant.quota().limits().max_message_bytes).inspect_err(|_| {
                tenant.quota().metrics.reject(RejectReason::PayloadTooLarge);
            })?;
            let outcome = tenant
                .send(SendRequest {
                    from: user.clone(),
                    conv,
                    client_msg_id,
                    body_json,
                    origin: Some(session),
                })
                .await?;
            Ok(ServerFrame::Ok {
                id,
                seq: Some(outcome.seq),
                ts: Some(outcome.ts_ms),
                duplicate: outcome.duplicate,
            })
        }
        Request::History { conv, before, after, limit } => {
            let (tenant, user, conv_for_read) = (tenant.clone(), user.clone(), conv.clone());
            let (records, more) = blocking(move || tenant.history(Some(&user), &conv_for_read, before, after, limit)).await?;
            Ok(ServerFrame::Messages {
                id,
                conv: Some(conv.to_string()),
                items: records.iter().map(|m| events::message_item(&conv, m)).collect(),
                more,
                convs: Vec::new(),
            })
        }
        Request::Sync { since, limit } => {
            let (tenant, user) = (tenant.clone(), user.clone());
            let pages = blocking(move || tenant.sync(&user, &since, limit)).await?;
            let convs = pages
                .into_iter()
                .map(|(conv, records, more)| ConversationPage {
                    conv: conv.to_string(),
                    items: records.iter().map(|m| events::message_item(&conv, m)).collect(),
                    more,
                })
                .collect();
            Ok(ServerFrame::Messages {
                id,
                conv: None,
                items: Vec::new(),
                more: false,
                convs,
            })
        }
        Request::Edit { conv, seq, body_json } => {
            validate::body_size(&body_json, tenant.quota().limits().max_message_bytes).inspect_err(|_| {
                tenant.quota().metrics.reject(RejectReason::PayloadTooLarge);
            })?;
            let amendment = Amendment::Edit { body_json };
            let outcome = tenant.amend(user.clone(), &conv, seq, amendment, Some(session)).await?;
            Ok(change_ok(id, outcome))
        }
        Request::Recall { conv, seq } => {
            let outcome = tenant.amend(user.clone(), &conv, seq, Amendment::Recall, Some(session)).await?;
            Ok(change_ok(id, outcome))
        }
        Request::Read { conv, seq } => {
            tenant.mark_read(user.clone(), &conv, seq, Some(session)).await?;
            Ok(ok(id))
        }
        Request::Typing { conv } => {
            tenant.typing(user.clone(), &conv).await?;
            Ok(ok(id))
        }
        Request::Ping => Ok(ServerFrame::Pong { id }),
    }
}

fn ok(id: Option<Box<RawValue>>) -> ServerFrame {
    ServerFrame::Ok {
        id,
        seq: None,
        ts: None,
        duplicate: false,
    }
}

/// Builds the `ok` of an edit or recall: the message's `seq` and the time of the change.
fn change_ok(id: Option<Box<RawValue>>, outcome: AmendOutcome) -> ServerFrame {
    ServerFrame::Ok {
        id,
        seq: Some(outcome.seq),
        ts: Some(outcome.ts_ms),
        duplicate: false,
    }
}

pub fn error_frame(id: Option<Box<RawValue>>, error: ApiError) -> ServerFrame {
    ServerFrame::Error {
        id,
        code: error.code,
        message: error.message,
        retry_after_ms: error.retry_after_ms,
        resource: error.resource,
    }
}

/// Runs a RocksDB read off the session's thread, so a slow read does not stall the other
/// sessions that share the thread.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> bulkhead_engine::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match actix_web::rt::task::spawn_blocking(read).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(err) => Err(ApiError::new(ErrorCode::Internal, format!("read task failed: {err}"))),
    }
}
