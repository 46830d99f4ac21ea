//! `bulkhead import`: loading an export into an existing, empty tenant of a stopped server.
//!
//! The file is read twice. The first pass checks every line and the `end` counts and writes
//! nothing, so a cut-off or damaged file leaves the tenant untouched. The second pass writes
//! the records in batches of [`IMPORT_BATCH_RECORDS`]. Every `seq` is kept as exported.

use std::{
    collections::HashSet,
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
};

use bulkhead_proto::{
    export::{self, End, Header, LineTag, LineType, FORMAT_VERSION},
    ConversationKind,
};
use bulkhead_storage::{
    ConvId, ConversationKind as StoredKind, ConversationRecord, MessageRecord, StorageError, TenantStore, UserId,
    UserRecord,
};
use serde::de::DeserializeOwned;
use thiserror::Error;

/// Records written per commit. Large enough that a million-message import does not wait on
/// a WAL sync per message, small enough that one batch stays a few MiB; it may change.
pub const IMPORT_BATCH_RECORDS: usize = 1000;

/// Longest `client_msg_id`, as the server accepts it on a send.
const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

#[derive(Debug, Error)]
pub enum ImportError {
    /// The file breaks the export format; nothing was written.
    #[error("{path}: line {line}: {reason}")]
    InvalidFile { path: String, line: u64, reason: String },

    /// The target tenant already has users or conversations; nothing was written.
    #[error("tenant {0} is not empty: it has users or conversations; import only into a new tenant")]
    TenantNotEmpty(String),

    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A write failed after `written` records were committed.
    #[error("failed to write to the tenant after {written} records were committed: {source}")]
    Write {
        written: u64,
        #[source]
        source: StorageError,
    },

    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Summary of a finished import: the file's header and the counts written.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub header: Header,
    pub counts: End,
}

/// Checks `path` as a whole, then loads it into `store`, which must have no users and no
/// conversations.
pub async fn import_file(store: &TenantStore, path: &Path) -> Result<ImportSummary, ImportError> {
    let no_users = store.users_page(None, 1)?.is_empty();
    let no_conversations = store.conversations_page(None, 1)?.is_empty();
    if !(no_users && no_conversations) {
        return Err(ImportError::TenantNotEmpty(store.tenant().to_string()));
    }

    let summary = check_file(path)?;
    write_file(store, path).await?;
    Ok(summary)
}

/// One parsed line.
enum Record {
    Header(Header),
    User(export::User),
    Conversation(export::Conversation),
    Message(export::Message),
    ReadMarker(export::ReadMarker),
    End(End),
}

/// Reads the lines of an export file, parsed, with their line numbers.
struct Lines {
    path: String,
    reader: BufReader<File>,
    line: u64,
    text: String,
}

impl Lines {
    fn open(path: &Path) -> Result<Lines, ImportError> {
        let display = path.display().to_string();
        let file = File::open(path).map_err(|source| ImportError::Read {
            path: display.clone(),
            source,
        })?;
        Ok(Lines {
            path: display,
            reader: BufReader::new(file),
            line: 0,
            text: String::new(),
        })
    }

    fn invalid(&self, reason: impl Into<String>) -> ImportError {
        ImportError::InvalidFile {
            path: self.path.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }

    /// Returns the next record, or `None` at the end of the file.
    fn next_record(&mut self) -> Result<Option<Record>, ImportError> {
        self.text.clear();
        let read = self.reader.read_line(&mut self.text).map_err(|source| ImportError::Read {
            path: self.path.clone(),
            source,
        })?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;

        let text = self.text.trim_end_matches(['\n', '\r']);
        let tag: LineTag = serde_json::from_str(text).map_err(|e| self.invalid(format!("not an export line: {e}")))?;
        let record = match tag.line_type {
            LineType::Header => Record::Header(self.parse(text)?),
            LineType::User => Record::User(self.parse(text)?),
            LineType::Conversation => Record::Conversation(self.parse(text)?),
            LineType::Message => Record::Message(self.parse(text)?),
            LineType::ReadMarker => Record::ReadMarker(self.parse(text)?),
            LineType::End => Record::End(self.parse(text)?),
        };
        Ok(Some(record))
    }

    fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, ImportError> {
        serde_json::from_str(text).map_err(|e| self.invalid(format!("invalid {} line: {e}", std::any::type_name::<T>())))
    }
}

/// Position of the check in the fixed order of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Start,
    Users,
    Conversations,
    Ended,
}

/// Checks order, ids, seqs and counts without writing anything: the first pass.
// NOTE: the sets of user and conversation ids grow with the tenant, by tens of bytes per id.
// They catch a duplicated record, which order alone cannot because masked ids are unsorted.
fn check_file(path: &Path) -> Result<ImportSummary, ImportError> {
    let mut lines = Lines::open(path)?;
    let mut section = Section::Start;
    let mut header = None;
    let mut counts = End::default();
    let mut users = HashSet::new();
    let mut conversations = HashSet::new();
    // The current conversation and the seq of its last message.
    let mut current: Option<(String, u64)> = None;

    while let Some(record) = lines.next_record()? {
        match (section, record) {
            (Section::Start, Record::Header(h)) => {
                if h.format != FORMAT_VERSION {
                    return Err(lines.invalid(format!(
                        "format version {} is not supported; this release reads {FORMAT_VERSION}",
                        h.format
                    )));
                }
                header = Some(h);
                section = Section::Users;
            }
            (Section::Start, _) => return Err(lines.invalid("the first line must be the header")),
            (Section::Users, Record::User(user)) => {
                UserId::parse(&user.id).map_err(|e| lines.invalid(e.to_string()))?;
                if !users.insert(user.id.clone()) {
                    return Err(lines.invalid(format!("user {} appears twice", user.id)));
                }
                counts.users += 1;
            }
            (Section::Users | Section::Conversations, Record::Conversation(conversation)) => {
                check_conversation(&conversation).map_err(|reason| lines.invalid(reason))?;
                if !conversations.insert(conversation.id.clone()) {
                    return Err(lines.invalid(format!("conversation {} appears twice", conversation.id)));
                }
                current = Some((conversation.id, 0));
                counts.conversations += 1;
                section = Section::Conversations;
            }
            (Section::Conversations, Record::Message(message)) => {
                let (conv, last_seq) = current.as_mut().expect("set by the conversation line");
                check_message(&message, conv, *last_seq).map_err(|reason| lines.invalid(reason))?;
                *last_seq = message.seq;
                counts.messages += 1;
            }
            (Section::Conversations, Record::ReadMarker(marker)) => {
                let (conv, _) = current.as_ref().expect("set by the conversation line");
                if marker.conv != *conv {
                    return Err(lines.invalid(format!(
                        "read marker of conversation {} after the line of conversation {conv}",
                        marker.conv
                    )));
                }
                UserId::parse(&marker.user).map_err(|e| lines.invalid(e.to_string()))?;
                counts.read_markers += 1;
            }
            (Section::Users | Section::Conversations, Record::End(end)) => {
                if end != counts {
                    return Err(lines.invalid(format!(
                        "the end line counts {}, but the file has {}",
                        describe_counts(&end),
                        describe_counts(&counts)
                    )));
                }
                section = Section::Ended;
            }
            (Section::Ended, _) => return Err(lines.invalid("a line follows the end line")),
            (_, Record::Header(_)) => return Err(lines.invalid("a second header line")),
            (Section::Conversations, Record::User(_)) => {
                return Err(lines.invalid("a user line after the first conversation line"))
            }
            (Section::Users, Record::Message(_) | Record::ReadMarker(_)) => {
                return Err(lines.invalid("a message or read marker before any conversation line"))
            }
        }
    }

    if section != Section::Ended {
        return Err(lines.invalid("the file ends without an end line, so it is cut off or incomplete"));
    }
    let header = header.expect("set before the end line");
    Ok(ImportSummary { header, counts })
}

/// Describes counts as "3 users, 2 conversations, 6 messages, 2 read markers".
pub fn describe_counts(counts: &End) -> String {
    format!(
        "{} users, {} conversations, {} messages, {} read markers",
        counts.users, counts.conversations, counts.messages, counts.read_markers
    )
}

fn check_conversation(conversation: &export::Conversation) -> Result<(), String> {
    ConvId::parse(&conversation.id).map_err(|e| e.to_string())?;
    for member in &conversation.members {
        UserId::parse(member).map_err(|e| e.to_string())?;
    }
    let sorted = conversation.members.windows(2).all(|pair| pair[0] < pair[1]);
    if !sorted {
        return Err(format!("members of conversation {} are not sorted and distinct", conversation.id));
    }
    match conversation.kind {
        ConversationKind::Direct if conversation.members.len() != 2 => {
            Err(format!("direct conversation {} needs exactly two members", conversation.id))
        }
        ConversationKind::Group if conversation.members.is_empty() => {
            Err(format!("group conversation {} has no members", conversation.id))
        }
        _ => Ok(()),
    }
}

fn check_message(message: &export::Message, conv: &str, last_seq: u64) -> Result<(), String> {
    if message.conv != conv {
        return Err(format!("message of conversation {} after the line of conversation {conv}", message.conv));
    }
    if message.seq != last_seq + 1 {
        return Err(format!(
            "message seq {} in conversation {conv} does not follow seq {last_seq}; seqs start at 1 without gaps",
            message.seq
        ));
    }
    UserId::parse(&message.from).map_err(|e| e.to_string())?;
    if message.client_msg_id.is_empty() || message.client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err(format!("client_msg_id must have 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"));
    }
    Ok(())
}

/// Writes a file that [`check_file`] accepted: the second pass.
async fn write_file(store: &TenantStore, path: &Path) -> Result<(), ImportError> {
    let mut lines = Lines::open(path)?;
    let mut batch = store.batch();
    let mut in_batch = 0;
    let mut written = 0u64;

    while let Some(record) = lines.next_record()? {
        match record {
            Record::Header(_) | Record::End(_) => continue,
            Record::User(user) => batch.put_user(&UserRecord {
                id: user.id,
                display_name: user.display_name,
                created_at_ms: user.created_at_ms,
            }),
            Record::Conversation(conversation) => put_conversation(&mut batch, conversation),
            Record::Message(message) => {
                let conv = ConvId::parse(&message.conv).map_err(|e| lines.invalid(e.to_string()))?;
                batch.put_message(&conv, &message_record(message));
            }
            Record::ReadMarker(marker) => {
                let conv = ConvId::parse(&marker.conv).map_err(|e| lines.invalid(e.to_string()))?;
                let user = UserId::parse(&marker.user).map_err(|e| lines.invalid(e.to_string()))?;
                batch.put_read_marker(&conv, &user, marker.seq);
            }
        }
        in_batch += 1;
        if in_batch == IMPORT_BATCH_RECORDS {
            let full = std::mem::replace(&mut batch, store.batch());
            store.commit(full).await.map_err(|source| ImportError::Write { written, source })?;
            written += in_batch as u64;
            in_batch = 0;
        }
    }
    store.commit(batch).await.map_err(|source| ImportError::Write { written, source })?;
    Ok(())
}

fn put_conversation(batch: &mut bulkhead_storage::TenantBatch, conversation: export::Conversation) {
    for member in &conversation.members {
        batch.put_membership(member, &conversation.id);
    }
    batch.put_conversation(&ConversationRecord {
        id: conversation.id,
        kind: match conversation.kind {
            ConversationKind::Direct => StoredKind::Direct,
            ConversationKind::Group => StoredKind::Group,
        },
        name: conversation.name,
        members: conversation.members,
        created_at_ms: conversation.created_at_ms,
    });
}

fn message_record(message: export::Message) -> MessageRecord {
    MessageRecord {
        seq: message.seq,
        from: message.from,
        client_msg_id: message.client_msg_id,
        ts_ms: message.ts,
        body_json: message.body.get().to_owned(),
        edited_ts_ms: message.edited,
        recalled_ts_ms: message.recalled,
    }
}
