//! Parsing of client frames into typed requests, with the error each bad frame gets.

use std::collections::BTreeMap;

use bulkhead_storage::ConvId;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{error::ApiError, validate};

/// A parsed request and the `id` to echo in its response.
pub struct Frame {
    pub id: Option<Box<RawValue>>,
    pub request: Request,
}

pub enum Request {
    Send {
        conv: ConvId,
        client_msg_id: String,
        body_json: String,
    },
    History {
        conv: ConvId,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    },
    Sync {
        since: BTreeMap<String, u64>,
        limit: usize,
    },
    Edit {
        conv: ConvId,
        seq: u64,
        body_json: String,
    },
    Recall {
        conv: ConvId,
        seq: u64,
    },
    Read {
        conv: ConvId,
        seq: u64,
    },
    Typing {
        conv: ConvId,
    },
    Ping,
}

/// Every field any request may carry. Unknown fields are ignored, so newer clients can add
/// fields without breaking older servers.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    op: Option<String>,
    conv: Option<String>,
    client_msg_id: Option<String>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
    since: Option<BTreeMap<String, u64>>,
    seq: Option<u64>,
}

/// Only the `id`, to echo it in the error for a frame that fails to parse as a whole.
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// A frame that was rejected, with the `id` to echo when one could be read.
pub struct Rejected {
    pub id: Option<Box<RawValue>>,
    pub error: ApiError,
}

pub fn parse(text: &str) -> Result<Frame, Rejected> {
    let raw: RawFrame = serde_json::from_str(text).map_err(|err| Rejected {
        id: serde_json::from_str::<IdOnly>(text).ok().and_then(|f| f.id.map(to_owned_raw)),
        error: frame_error(text, err),
    })?;
    let id = raw.id.map(to_owned_raw);
    match to_request(raw) {
        Ok(request) => Ok(Frame { id, request }),
        Err(error) => Err(Rejected { id, error }),
    }
}

/// Tells a frame that is not JSON at all from JSON of the wrong shape.
fn frame_error(text: &str, err: serde_json::Error) -> ApiError {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        ApiError::invalid(format!("frame is not valid JSON ({err}); send one JSON object per text frame"))
    } else {
        ApiError::invalid(format!("frame is not a valid request object: {err}"))
    }
}

fn to_owned_raw(raw: &RawValue) -> Box<RawValue> {
    raw.to_owned()
}

fn to_request(raw: RawFrame) -> Result<Request, ApiError> {
    let op = raw.op.as_deref().ok_or_else(|| ApiError::invalid("missing field op"))?;
    match op {
        "send" => {
            let client_msg_id = required(raw.client_msg_id, "client_msg_id")?;
            validate::client_msg_id(&client_msg_id)?;
            let body = raw.body.ok_or_else(|| ApiError::invalid("missing field body"))?;
            Ok(Request::Send {
                conv: conv(raw.conv)?,
                client_msg_id,
                body_json: body.get().to_owned(),
            })
        }
        "history" => Ok(Request::History {
            conv: conv(raw.conv)?,
            before: raw.before,
            after: raw.after,
            limit: validate::page_limit(raw.limit)?,
        }),
        "sync" => Ok(Request::Sync {
            since: raw.since.unwrap_or_default(),
            limit: validate::page_limit(raw.limit)?,
        }),
        "edit" => {
            let body = raw.body.ok_or_else(|| ApiError::invalid("missing field body"))?;
            Ok(Request::Edit {
                conv: conv(raw.conv)?,
                seq: seq(raw.seq)?,
                body_json: body.get().to_owned(),
            })
        }
        "recall" => Ok(Request::Recall {
            conv: conv(raw.conv)?,
            seq: seq(raw.seq)?,
        }),
        "read" => Ok(Request::Read {
            conv: conv(raw.conv)?,
            seq: raw.seq.ok_or_else(|| ApiError::invalid("missing field seq"))?,
        }),
        "typing" => Ok(Request::Typing { conv: conv(raw.conv)? }),
        "ping" => Ok(Request::Ping),
        other => Err(ApiError::invalid(format!(
            "unknown op {other:?}; expected send, edit, recall, history, sync, read, typing or ping"
        ))),
    }
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::invalid(format!("missing field {field}")))
}

fn seq(value: Option<u64>) -> Result<u64, ApiError> {
    value.ok_or_else(|| ApiError::invalid("missing field seq"))
}

fn conv(value: Option<String>) -> Result<ConvId, ApiError> {
    let value = required(value, "conv")?;
    // An id that breaks the rules cannot name an existing conversation.
    ConvId::parse(&value).map_err(|_| ApiError::not_found(format!("conversation {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_proto::ErrorCode;

    fn rejected(text: &str) -> Rejected {
        match parse(text) {
            Ok(_) => panic!("{text} should be rejected"),
            Err(r) => r,
        }
    }

    #[test]
    fn send_frame_parses() {
        let frame = parse(r#"{"id":7,"op":"send","conv":"c1","client_msg_id":"m1","body":{"t":"hi"}}"#)
            .unwrap_or_else(|r| panic!("{}", r.error));
        assert_eq!(frame.id.unwrap().get(), "7");
        match frame.request {
            Request::Send { conv, body_json, .. } => {
                assert_eq!(conv.as_str(), "c1");
                assert_eq!(body_json, r#"{"t":"hi"}"#);
            }
            _ => panic!("expected a send"),
        }
    }

    #[test]
    fn malformed_json_is_invalid_request() {
        let r = rejected("{not json");
        assert_eq!(r.error.code, ErrorCode::InvalidRequest);
        assert!(r.id.is_none());
    }

    #[test]
    fn unknown_op_keeps_the_id() {
        let r = rejected(r#"{"id":"a","op":"dance"}"#);
        assert_eq!(r.error.code, ErrorCode::InvalidRequest);
        assert_eq!(r.id.unwrap().get(), "\"a\"");
        assert!(r.error.message.contains("dance"));
    }

    #[test]
    fn missing_field_is_named() {
        let r = rejected(r#"{"id":1,"op":"send","conv":"c1","body":1}"#);
        assert!(r.error.message.contains("client_msg_id"), "{}", r.error.message);
    }

    #[test]
    fn wrong_type_keeps_the_id() {
        let r = rejected(r#"{"id":3,"op":"read","conv":"c1","seq":"five"}"#);
        assert_eq!(r.id.unwrap().get(), "3");
    }

    #[test]
    fn history_limit_is_bounded() {
        let r = rejected(r#"{"id":1,"op":"history","conv":"c1","limit":1000}"#);
        assert_eq!(r.error.code, ErrorCode::InvalidRequest);
    }
}
