//! WebSocket frames. Every frame is one JSON object with an `op` field. Requests carry a
//! client-chosen `id` that the response echoes; events carry no `id`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ErrorCode;

/// Upper bound on `limit` for `history`, and on the items returned per conversation by `sync`.
/// It keeps one response frame small enough to send without blocking other sessions.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// One stored message as the server returns it in `message` events and in `messages` pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageItem {
    pub conv: String,
    pub seq: u64,
    pub from: String,
    /// Server time of acceptance, milliseconds since the Unix epoch.
    pub ts: u64,
    pub client_msg_id: String,
    /// The body as last sent or edited; `null` once the message is recalled.
    pub body: Box<RawValue>,
    /// When the sender last edited the message, ms since the Unix epoch. Absent when never
    /// edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<u64>,
    /// When the sender recalled the message, ms since the Unix epoch. Absent when not
    /// recalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<u64>,
}

/// One conversation's part of a `sync` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationPage {
    pub conv: String,
    pub items: Vec<MessageItem>,
    /// True when more messages follow the last item; call `sync` again from its `seq`.
    pub more: bool,
}

/// Every frame the server sends.
///
/// NOTE: serde_json cannot deserialize this enum directly, because it is internally tagged
/// and contains `RawValue`s. Decode frames with `bulkhead_client::decode_server_frame`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Success of `send` (with `seq` and `ts`), `edit` and `recall` (with `seq` and the
    /// time of the change in `ts`), `read` and `typing` (without them).
    Ok {
        id: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<u64>,
        /// True when the `client_msg_id` was seen before and `seq` is the original one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// The response to `history` (one conversation in `conv`, `items`, `more`) or to `sync`
    /// (every conversation in `convs`).
    Messages {
        id: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conv: Option<String>,
        /// The page of a `history` response; empty in a `sync` response.
        #[serde(default)]
        items: Vec<MessageItem>,
        /// Whether more messages follow the `history` page. Always false in a `sync` response,
        /// which reports it per conversation.
        #[serde(default)]
        more: bool,
        /// The conversations of a `sync` response; empty in a `history` response.
        #[serde(default)]
        convs: Vec<ConversationPage>,
    },
    Pong {
        id: Option<Box<RawValue>>,
    },
    Error {
        id: Option<Box<RawValue>>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
    },
    /// A new message in a conversation the user is a member of.
    Message(MessageItem),
    /// The sender edited message `seq`: `body` replaces its body, and `edited` is the time of
    /// the edit.
    Edit {
        conv: String,
        seq: u64,
        from: String,
        edited: u64,
        body: Box<RawValue>,
    },
    /// The sender recalled message `seq`: its body is gone, and `recalled` is the time of the
    /// recall.
    Recall {
        conv: String,
        seq: u64,
        from: String,
        recalled: u64,
    },
    /// A member has read the conversation up to `seq`.
    Receipt { conv: String, user: String, seq: u64 },
    /// A member is typing. Never stored, and the first thing shed under pressure.
    Typing { conv: String, user: String },
}
