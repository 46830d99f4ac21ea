//! Lines of a tenant export (`POST /v1/tenants/{tid}/export`), which `bulkhead import` reads.
//!
//! An export is NDJSON: one JSON object per line, each with a `type` field that names the
//! line's kind. The order is fixed: one [`Header`], every [`User`], then for each conversation
//! its [`Conversation`] line, its [`Message`] lines in ascending `seq` and its [`ReadMarker`]
//! lines, and last one [`End`] with the counts. A stream without the `end` line was cut off.
//! Readers ignore fields they do not know; a change that old readers would misread gets a new
//! [`FORMAT_VERSION`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ConversationKind;

/// Version of the export format that this release writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Media type of an export response.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Header that `POST /v1/tenants/{tid}/export` requires, set to the tenant id.
pub const CONFIRM_EXPORT_HEADER: &str = "X-Confirm-Export";

/// The body of `POST /v1/tenants/{tid}/export`. An empty body exports without masking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Whether ids, names and body strings are replaced with pseudonyms and placeholders (see
    /// docs/EXPORT.md).
    #[serde(default)]
    pub mask: bool,
}

/// The kind of a line: the value of its `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineType {
    Header,
    User,
    Conversation,
    Message,
    ReadMarker,
    End,
}

/// Only the `type` field of a line, to pick the type that the whole line is parsed as.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LineTag {
    #[serde(rename = "type")]
    pub line_type: LineType,
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// The exported tenant's id.
    pub tenant: String,
    /// Whether ids, names and bodies were masked.
    pub masked: bool,
    /// When the export started, ms since the Unix epoch.
    pub exported_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub kind: ConversationKind,
    #[serde(default)]
    pub name: Option<String>,
    /// Member user ids, sorted. A member of a direct conversation may have no `user` line
    /// when the user was deleted after the conversation was created.
    pub members: Vec<String>,
    pub created_at_ms: u64,
}

/// One message of the conversation whose line came last before it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub conv: String,
    pub seq: u64,
    pub from: String,
    pub client_msg_id: String,
    /// Acceptance time, ms since the Unix epoch.
    pub ts: u64,
    /// The body as last sent or edited; `null` once recalled.
    pub body: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<u64>,
}

/// The last seq that `user` has read in `conv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    pub conv: String,
    pub user: String,
    pub seq: u64,
}

/// The last line: how many lines of each kind came before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub users: u64,
    pub conversations: u64,
    pub messages: u64,
    pub read_markers: u64,
}

/// A line as written: the record with its `type` field in front.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    User(User),
    Conversation(Conversation),
    Message(Message),
    ReadMarker(ReadMarker),
    End(End),
}
