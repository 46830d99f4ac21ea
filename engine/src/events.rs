//! Server-to-client event frames, serialized once and shared by every session they go to.

use std::sync::Arc;

use bulkhead_proto::{MessageItem, ServerFrame};
use bulkhead_storage::{ConvId, MessageRecord, UserId};
use serde_json::value::RawValue;

/// Converts a stored message into its wire form.
pub fn message_item(conv: &ConvId, message: &MessageRecord) -> MessageItem {
    MessageItem {
        conv: conv.to_string(),
        seq: message.seq,
        from: message.from.clone(),
        ts: message.ts_ms,
        client_msg_id: message.client_msg_id.clone(),
        body: raw_body(&message.body_json),
        edited: message.edited_ts_ms,
        recalled: message.recalled_ts_ms,
    }
}

/// The stored body as a raw JSON value. Bodies are validated JSON when they are accepted;
/// a body that fails to parse back means the record is corrupt, and it is shown as `null`.
fn raw_body(body_json: &str) -> Box<RawValue> {
    RawValue::from_string(body_json.to_owned()).unwrap_or_else(|err| {
        tracing::error!(error = %err, "stored message body is not valid JSON");
        RawValue::from_string("null".into()).expect("null is valid JSON")
    })
}

pub(crate) fn message_frame(conv: &ConvId, message: &MessageRecord) -> Arc<str> {
    to_frame(&ServerFrame::Message(message_item(conv, message)))
}

/// Builds the `recall` event of a recalled message, or else the `edit` event of an edited one.
pub(crate) fn change_frame(conv: &ConvId, message: &MessageRecord) -> Arc<str> {
    let frame = match message.recalled_ts_ms {
        Some(recalled) => ServerFrame::Recall {
            conv: conv.to_string(),
            seq: message.seq,
            from: message.from.clone(),
            recalled,
        },
        None => ServerFrame::Edit {
            conv: conv.to_string(),
            seq: message.seq,
            from: message.from.clone(),
            edited: message.edited_ts_ms.unwrap_or(message.ts_ms),
            body: raw_body(&message.body_json),
        },
    };
    to_frame(&frame)
}

pub(crate) fn receipt_frame(conv: &ConvId, user: &UserId, seq: u64) -> Arc<str> {
    to_frame(&ServerFrame::Receipt {
        conv: conv.to_string(),
        user: user.to_string(),
        seq,
    })
}

pub(crate) fn typing_frame(conv: &ConvId, user: &UserId) -> Arc<str> {
    to_frame(&ServerFrame::Typing {
        conv: conv.to_string(),
        user: user.to_string(),
    })
}

fn to_frame(frame: &ServerFrame) -> Arc<str> {
    serde_json::to_string(frame)
        .expect("server frames serialize to JSON")
        .into()
}
