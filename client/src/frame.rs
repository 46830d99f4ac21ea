//! Decoding of server frames.
//!
//! `ServerFrame` is an internally tagged enum with `Box<RawValue>` fields (`id`, and `body`
//! inside `message` events). serde buffers internally tagged input before picking the
//! variant, and serde_json 1.x cannot build a `RawValue` from that buffer, so
//! `serde_json::from_str::<ServerFrame>` fails on every frame that has a non-null `id` or a
//! message body. This module decodes into a flat struct first and builds the variant by hand.

use bulkhead_proto::{ConversationPage, ErrorCode, MessageItem, ServerFrame};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ClientError;

/// The union of the fields of every server frame. Which ones are required depends on `op`.
#[derive(Deserialize)]
struct FlatFrame {
    op: String,
    #[serde(default)]
    id: Option<Box<RawValue>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    ts: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    conv: Option<String>,
    #[serde(default)]
    items: Vec<MessageItem>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    convs: Vec<ConversationPage>,
    #[serde(default)]
    code: Option<ErrorCode>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    client_msg_id: Option<String>,
    /// `Some` whenever the field is present, so that a JSON `null` body stays a body.
    #[serde(default, deserialize_with = "present_raw_value")]
    body: Option<Box<RawValue>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    edited: Option<u64>,
    #[serde(default)]
    recalled: Option<u64>,
}

fn present_raw_value<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// Decodes one text frame from the server.
///
/// Fails with [`ClientError::Protocol`] when the text is not JSON, names an unknown `op`, has
/// an unknown error `code`, or misses a field that its `op` requires.
pub fn decode_server_frame(text: &str) -> Result<ServerFrame, ClientError> {
    let flat: FlatFrame = serde_json::from_str(text)
        .map_err(|e| ClientError::Protocol(format!("invalid server frame: {e}")))?;
    build_frame(flat).map_err(ClientError::Protocol)
}

fn build_frame(flat: FlatFrame) -> Result<ServerFrame, String> {
    let op = flat.op.as_str();
    let frame = match op {
        "ok" => ServerFrame::Ok {
            id: flat.id,
            seq: flat.seq,
            ts: flat.ts,
            duplicate: flat.duplicate,
        },
        "messages" => ServerFrame::Messages {
            id: flat.id,
            conv: flat.conv,
            items: flat.items,
            more: flat.more,
            convs: flat.convs,
        },
        "pong" => ServerFrame::Pong { id: flat.id },
        "error" => ServerFrame::Error {
            id: flat.id,
            code: required(flat.code, op, "code")?,
            message: required(flat.message, op, "message")?,
            retry_after_ms: flat.retry_after_ms,
            resource: flat.resource,
        },
        "message" => ServerFrame::Message(MessageItem {
            conv: required(flat.conv, op, "conv")?,
            seq: required(flat.seq, op, "seq")?,
            from: required(flat.from, op, "from")?,
            ts: required(flat.ts, op, "ts")?,
            client_msg_id: required(flat.client_msg_id, op, "client_msg_id")?,
            body: required(flat.body, op, "body")?,
            edited: flat.edited,
            recalled: flat.recalled,
        }),
        "edit" => ServerFrame::Edit {
            conv: required(flat.conv, op, "conv")?,
            seq: required(flat.seq, op, "seq")?,
            from: required(flat.from, op, "from")?,
            edited: required(flat.edited, op, "edited")?,
            body: required(flat.body, op, "body")?,
        },
        "recall" => ServerFrame::Recall {
            conv: required(flat.conv, op, "conv")?,
            seq: required(flat.seq, op, "seq")?,
            from: required(flat.from, op, "from")?,
            recalled: required(flat.recalled, op, "recalled")?,
        },
        "receipt" => ServerFrame::Receipt {
            conv: required(flat.conv, op, "conv")?,
            user: required(flat.user, op, "user")?,
            seq: required(flat.seq, op, "seq")?,
        },
        "typing" => ServerFrame::Typing {
            conv: required(flat.conv, op, "conv")?,
            user: required(flat.user, op, "user")?,
        },
        other => return Err(format!("server frame has unknown op {other:?}")),
    };
    Ok(frame)
}

fn required<T>(value: Option<T>, op: &str, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("server frame with op {op:?} is missing field {field:?}"))
}

/// Returns whether a frame is the response to a request (and so carries an `id`) rather than
/// an event.
pub(crate) fn is_response(frame: &ServerFrame) -> bool {
    match frame {
        ServerFrame::Ok { .. }
        | ServerFrame::Messages { .. }
        | ServerFrame::Pong { .. }
        | ServerFrame::Error { .. } => true,
        ServerFrame::Message(_)
        | ServerFrame::Edit { .. }
        | ServerFrame::Recall { .. }
        | ServerFrame::Receipt { .. }
        | ServerFrame::Typing { .. } => false,
    }
}

/// Returns the request id of a response when it is an unsigned integer, the only kind of id
/// this client sends. Events, a `null` id and ids of other JSON types return `None`.
pub(crate) fn numeric_response_id(frame: &ServerFrame) -> Option<u64> {
    let id = match frame {
        ServerFrame::Ok { id, .. }
        | ServerFrame::Messages { id, .. }
        | ServerFrame::Pong { id }
        | ServerFrame::Error { id, .. } => id.as_ref()?,
        _ => return None,
    };
    id.get().parse().ok()
}

/// Reads the top-level `id` of a frame that failed to decode, so that the request waiting
/// for it can fail at once instead of timing out.
///
/// Returns `None` when the frame has no `id` field (an event, or not a JSON object), and
/// `Some(None)` when the `id` is not an unsigned integer.
pub(crate) fn salvage_id(text: &str) -> Option<Option<u64>> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default, deserialize_with = "present_value")]
        id: Option<Value>,
    }
    let id = serde_json::from_str::<IdOnly>(text).ok()?.id?;
    Some(id.as_u64())
}

fn present_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> ServerFrame {
        decode_server_frame(text).unwrap_or_else(|e| panic!("failed to decode {text}: {e}"))
    }

    #[test]
    fn proto_derive_cannot_decode_ids() {
        // Documents why this module exists. If serde or proto changes so that this decodes,
        // the flat decoder can be replaced by serde_json::from_str.
        let text = r#"{"id":1,"op":"pong"}"#;
        assert!(serde_json::from_str::<ServerFrame>(text).is_err());
    }

    #[test]
    fn decode_ok_with_seq_and_duplicate() {
        let frame = decode(r#"{"id":7,"op":"ok","seq":5,"ts":1700000000000,"duplicate":true}"#);

        let ServerFrame::Ok {
            id,
            seq,
            ts,
            duplicate,
        } = &frame
        else {
            panic!("expected ok, got {frame:?}");
        };
        assert_eq!(id.as_ref().map(|id| id.get()), Some("7"));
        assert_eq!(*seq, Some(5));
        assert_eq!(*ts, Some(1_700_000_000_000));
        assert!(*duplicate);
        assert_eq!(numeric_response_id(&frame), Some(7));
    }

    #[test]
    fn decode_message_event_keeps_raw_body() {
        let text = r#"{"op":"message","conv":"c1","seq":3,"from":"u1","ts":9,
            "client_msg_id":"m1","body":{"text":"hi","n":[1,2]}}"#;

        let frame = decode(text);

        let ServerFrame::Message(item) = &frame else {
            panic!("expected message, got {frame:?}");
        };
        assert_eq!(item.conv, "c1");
        assert_eq!(item.seq, 3);
        assert_eq!(item.from, "u1");
        assert_eq!(item.client_msg_id, "m1");
        assert_eq!(item.body.get(), r#"{"text":"hi","n":[1,2]}"#);
        assert!(!is_response(&frame));
        assert_eq!(numeric_response_id(&frame), None);
    }

    #[test]
    fn decode_message_with_null_body() {
        let text = r#"{"op":"message","conv":"c1","seq":3,"from":"u1","ts":9,
            "client_msg_id":"m1","body":null}"#;

        let ServerFrame::Message(item) = decode(text) else {
            panic!("expected message");
        };
        assert_eq!(item.body.get(), "null");
    }

    #[test]
    fn decode_message_without_body_fails() {
        let text =
            r#"{"op":"message","conv":"c1","seq":3,"from":"u1","ts":9,"client_msg_id":"m1"}"#;

        let error = decode_server_frame(text).unwrap_err();

        assert!(error.to_string().contains("body"), "{error}");
    }

    #[test]
    fn decode_history_and_sync_pages() {
        let history = decode(
            r#"{"id":2,"op":"messages","conv":"c1","more":true,"items":[
                {"conv":"c1","seq":1,"from":"u","ts":1,"client_msg_id":"a","body":1}]}"#,
        );
        let ServerFrame::Messages {
            conv,
            items,
            more,
            convs,
            ..
        } = history
        else {
            panic!("expected messages");
        };
        assert_eq!(conv.as_deref(), Some("c1"));
        assert_eq!(items.len(), 1);
        assert!(more);
        assert!(convs.is_empty());

        let sync =
            decode(r#"{"id":3,"op":"messages","convs":[{"conv":"c1","items":[],"more":false}]}"#);
        let ServerFrame::Messages { convs, items, .. } = sync else {
            panic!("expected messages");
        };
        assert!(items.is_empty());
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].conv, "c1");
    }

    #[test]
    fn decode_error_with_null_id() {
        let frame = decode(
            r#"{"id":null,"op":"error","code":"rate_limited","message":"slow down",
                "retry_after_ms":250,"resource":"messages"}"#,
        );

        let ServerFrame::Error {
            id,
            code,
            retry_after_ms,
            resource,
            ..
        } = &frame
        else {
            panic!("expected error, got {frame:?}");
        };
        assert!(id.is_none());
        assert_eq!(*code, ErrorCode::RateLimited);
        assert_eq!(*retry_after_ms, Some(250));
        assert_eq!(resource.as_deref(), Some("messages"));
        assert!(is_response(&frame));
        assert_eq!(numeric_response_id(&frame), None);
    }

    #[test]
    fn decode_edit_and_recall_events() {
        let edit = decode(r#"{"op":"edit","conv":"c1","seq":4,"from":"u1","edited":12,"body":{"text":"fixed"}}"#);
        let ServerFrame::Edit { seq, edited, body, .. } = &edit else {
            panic!("expected edit, got {edit:?}");
        };
        assert_eq!((*seq, *edited), (4, 12));
        assert_eq!(body.get(), r#"{"text":"fixed"}"#);
        assert!(!is_response(&edit));

        let recall = decode(r#"{"op":"recall","conv":"c1","seq":4,"from":"u1","recalled":13}"#);
        assert!(matches!(recall, ServerFrame::Recall { seq: 4, recalled: 13, .. }));

        let missing = decode_server_frame(r#"{"op":"recall","conv":"c1","seq":4,"from":"u1"}"#).unwrap_err();
        assert!(missing.to_string().contains("recalled"), "{missing}");
    }

    #[test]
    fn decode_history_item_markers() {
        let page = decode(
            r#"{"id":2,"op":"messages","conv":"c1","more":false,"items":[
                {"conv":"c1","seq":1,"from":"u","ts":1,"client_msg_id":"a","body":null,"recalled":5},
                {"conv":"c1","seq":2,"from":"u","ts":2,"client_msg_id":"b","body":2,"edited":6}]}"#,
        );
        let ServerFrame::Messages { items, .. } = page else {
            panic!("expected messages");
        };
        assert_eq!((items[0].edited, items[0].recalled), (None, Some(5)));
        assert_eq!((items[1].edited, items[1].recalled), (Some(6), None));
    }

    #[test]
    fn decode_receipt_and_typing() {
        let receipt = decode(r#"{"op":"receipt","conv":"c1","user":"u2","seq":4}"#);
        assert!(matches!(receipt, ServerFrame::Receipt { seq: 4, .. }));

        let typing = decode(r#"{"op":"typing","conv":"c1","user":"u2"}"#);
        assert!(matches!(typing, ServerFrame::Typing { .. }));
    }

    #[test]
    fn decode_rejects_unknown_op_and_code() {
        let unknown_op = decode_server_frame(r#"{"op":"presence","user":"u"}"#).unwrap_err();
        assert!(unknown_op.to_string().contains("presence"), "{unknown_op}");

        let unknown_code =
            decode_server_frame(r#"{"id":4,"op":"error","code":"new_code","message":""}"#);
        assert!(unknown_code.is_err());
        let text = r#"{"id":4,"op":"error","code":"new_code","message":""}"#;
        assert_eq!(salvage_id(text), Some(Some(4)));
    }

    #[test]
    fn salvage_id_distinguishes_missing_and_null() {
        let event = r#"{"op":"presence","body":{"id":3}}"#;
        assert_eq!(
            salvage_id(event),
            None,
            "an id inside the body is not the frame's id"
        );
        assert_eq!(salvage_id(r#"{"id":null,"op":"error"}"#), Some(None));
        assert_eq!(salvage_id("not json"), None);
    }

    #[test]
    fn string_ids_are_not_numeric() {
        let frame = decode(r#"{"id":"abc","op":"pong"}"#);
        assert_eq!(numeric_response_id(&frame), None);
    }
}
