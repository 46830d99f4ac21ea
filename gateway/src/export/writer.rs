//! Writing a tenant export page by page, so memory stays bounded for a tenant of any size: at
//! most one page of records and one chunk of encoded lines are held at a time.

use bulkhead_proto::{
    export::{self, End, Header, Line, FORMAT_VERSION},
    ConversationKind,
};
use bulkhead_storage::{
    ConvId, ConversationKind as StoredKind, ConversationRecord, IdError, MessageRecord, StorageError, TenantStore,
    UserId, UserRecord,
};
use serde_json::{value::RawValue, Value};
use thiserror::Error;

use super::mask::{redact_body, Masker};

/// Records read from the store at a time. Pages this size keep one read short while the
/// overhead per page stays small; the values may change with measurements.
const USERS_PAGE: usize = 500;
const CONVERSATIONS_PAGE: usize = 100;
const MESSAGES_PAGE: usize = 500;

/// Encoded lines are handed to the sink in chunks of about this size, so a chunk contains many
/// small lines and the sink is not called once per line.
pub const CHUNK_BYTES: usize = 64 << 10;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// A stored id does not pass the id rules: the data is corrupt.
    #[error("invalid stored id: {0}")]
    InvalidId(#[from] IdError),

    /// A stored body is not JSON: the data is corrupt.
    #[error("the stored body of message {seq} in conversation {conv} is not JSON: {source}")]
    InvalidBody {
        conv: String,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },

    /// The sink stopped taking chunks, for example because the client closed the connection.
    #[error("the receiver of the export stopped reading")]
    SinkClosed,
}

/// Writes the whole export of `store` to `sink` and returns the counts of its `end` line.
/// With a `masker`, ids, names and bodies are masked. `sink` returns `false` when it takes no
/// more chunks. On an error, what was written so far has no `end` line.
pub fn write_export(
    store: &TenantStore,
    masker: Option<&Masker>,
    exported_at_ms: u64,
    sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<End, ExportError> {
    let mut out = LineWriter {
        buffer: Vec::with_capacity(CHUNK_BYTES + 1024),
        sink,
        counts: End::default(),
    };
    out.line(&Line::Header(Header {
        format: FORMAT_VERSION,
        tenant: store.tenant().to_string(),
        masked: masker.is_some(),
        exported_at_ms,
    }))?;

    write_users(store, masker, &mut out)?;
    write_conversations(store, masker, &mut out)?;

    let counts = out.counts.clone();
    out.line(&Line::End(counts.clone()))?;
    out.flush()?;
    Ok(counts)
}

struct LineWriter<S> {
    buffer: Vec<u8>,
    sink: S,
    counts: End,
}

impl<S: FnMut(Vec<u8>) -> bool> LineWriter<S> {
    fn line(&mut self, line: &Line) -> Result<(), ExportError> {
        serde_json::to_writer(&mut self.buffer, line).expect("export lines serialize to JSON");
        self.buffer.push(b'\n');
        match line {
            Line::User(_) => self.counts.users += 1,
            Line::Conversation(_) => self.counts.conversations += 1,
            Line::Message(_) => self.counts.messages += 1,
            Line::ReadMarker(_) => self.counts.read_markers += 1,
            Line::Header(_) | Line::End(_) => {}
        }
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES + 1024));
        if (self.sink)(chunk) {
            Ok(())
        } else {
            Err(ExportError::SinkClosed)
        }
    }
}

// NOTE: users and conversations are written in the order of their original ids, also when
// masked, because sorting by pseudonym would need every id in memory at once. The order of
// masked lines therefore still shows which original id sorts before which.
fn write_users<S: FnMut(Vec<u8>) -> bool>(
    store: &TenantStore,
    masker: Option<&Masker>,
    out: &mut LineWriter<S>,
) -> Result<(), ExportError> {
    let mut after: Option<UserId> = None;
    loop {
        let page = store.users_page(after.as_ref(), USERS_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(UserId::parse(&last.id)?);
        for user in page {
            out.line(&Line::User(user_line(user, masker)))?;
        }
    }
}

fn write_conversations<S: FnMut(Vec<u8>) -> bool>(
    store: &TenantStore,
    masker: Option<&Masker>,
    out: &mut LineWriter<S>,
) -> Result<(), ExportError> {
    let mut after: Option<ConvId> = None;
    loop {
        let page = store.conversations_page(after.as_ref(), CONVERSATIONS_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(ConvId::parse(&last.id)?);
        for conversation in page {
            write_conversation(store, masker, conversation, out)?;
        }
    }
}

/// Writes the conversation's line, its messages in seq order and its members' read markers.
fn write_conversation<S: FnMut(Vec<u8>) -> bool>(
    store: &TenantStore,
    masker: Option<&Masker>,
    record: ConversationRecord,
    out: &mut LineWriter<S>,
) -> Result<(), ExportError> {
    let conv = ConvId::parse(&record.id)?;
    let conv_out = match masker {
        Some(masker) => masker.conversation_id(&record.id),
        None => record.id.clone(),
    };
    let members = record.members.clone();
    out.line(&Line::Conversation(conversation_line(record, &conv_out, masker)))?;

    let mut after = 0;
    loop {
        let (page, more) = store.messages(&conv, after, u64::MAX, MESSAGES_PAGE, false)?;
        for message in page {
            after = message.seq;
            out.line(&Line::Message(message_line(message, conv.as_str(), &conv_out, masker)?))?;
        }
        if !more {
            break;
        }
    }

    // At most `max_group_members` markers. Sorted by the written user id, so that a masked
    // export does not list them in the order of the original ids.
    let mut markers = Vec::new();
    for member in members {
        let user = UserId::parse(&member)?;
        if let Some(seq) = store.read_marker(&conv, &user)? {
            let user = masker.map_or(member, |masker| masker.user_id(user.as_str()));
            markers.push(export::ReadMarker {
                conv: conv_out.clone(),
                user,
                seq,
            });
        }
    }
    markers.sort_by(|a, b| a.user.cmp(&b.user));
    for marker in markers {
        out.line(&Line::ReadMarker(marker))?;
    }
    Ok(())
}

fn user_line(record: UserRecord, masker: Option<&Masker>) -> export::User {
    let Some(masker) = masker else {
        return export::User {
            id: record.id,
            display_name: record.display_name,
            created_at_ms: record.created_at_ms,
        };
    };
    export::User {
        id: masker.user_id(&record.id),
        display_name: record.display_name.as_deref().map(|name| masker.display_name(name)),
        created_at_ms: record.created_at_ms,
    }
}

fn conversation_line(record: ConversationRecord, conv_out: &str, masker: Option<&Masker>) -> export::Conversation {
    let kind = match record.kind {
        StoredKind::Direct => ConversationKind::Direct,
        StoredKind::Group => ConversationKind::Group,
    };
    let (name, members) = match masker {
        None => (record.name, record.members),
        Some(masker) => {
            let name = record.name.as_deref().map(|name| masker.conversation_name(name));
            // Stored members are sorted, and readers expect the pseudonyms sorted too.
            let mut members: Vec<String> = record.members.iter().map(|m| masker.user_id(m)).collect();
            members.sort();
            (name, members)
        }
    };
    export::Conversation {
        id: conv_out.to_owned(),
        kind,
        name,
        members,
        created_at_ms: record.created_at_ms,
    }
}

fn message_line(
    record: MessageRecord,
    conv: &str,
    conv_out: &str,
    masker: Option<&Masker>,
) -> Result<export::Message, ExportError> {
    let invalid_body = |source| ExportError::InvalidBody {
        conv: conv.to_owned(),
        seq: record.seq,
        source,
    };
    let (from, client_msg_id, body) = match masker {
        None => {
            let body = RawValue::from_string(record.body_json.clone()).map_err(invalid_body)?;
            (record.from.clone(), record.client_msg_id.clone(), body)
        }
        Some(masker) => {
            let mut value: Value = serde_json::from_str(&record.body_json).map_err(invalid_body)?;
            redact_body(&mut value);
            let body = RawValue::from_string(value.to_string()).expect("serialized JSON is valid JSON");
            (masker.user_id(&record.from), masker.client_msg_id(&record.client_msg_id), body)
        }
    };
    Ok(export::Message {
        conv: conv_out.to_owned(),
        seq: record.seq,
        from,
        client_msg_id,
        ts: record.ts_ms,
        body,
        edited: record.edited_ts_ms,
        recalled: record.recalled_ts_ms,
    })
}
