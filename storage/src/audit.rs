//! Append-only audit logs with a SHA-256 hash chain.
//!
//! There is one log for the platform (in the `sys` column family) and one per tenant (in the
//! tenant's own key space, so it is erased with the tenant). Each entry stores the SHA-256 of
//! the previous entry's encoded bytes, and the first entry links to [`ZERO_HASH`]. A head
//! record, written in the same batch as each entry, holds the seq and hash of the newest
//! entry, so a change to the last entry or a removed tail is detected too.
//!
//! The chain detects an entry that was changed, removed or reordered after it was written.
//! It cannot detect a rewrite of the whole chain by someone with write access to the
//! database; an operator who needs that copies the head hash out of the machine regularly.

use std::{path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    codec,
    placement::{KeySpace, Placement, Write},
    Result, TenantId,
};

/// The `prev_sha256` of the first entry of every log.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// The performer of an audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditActor {
    PlatformAdmin,
    /// A tenant API key, by key id.
    ApiKey(String),
    /// A user of the tenant, by user id.
    User(String),
    // New variants go last: postcard stores the variant's index.
    PlatformOperator,
}

/// The role the actor acted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditRole {
    Platform,
    Admin,
    Auditor,
    Service,
    User,
    // New variants go last: postcard stores the variant's index.
    Operator,
}

/// Whether the action took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    Ok,
    /// The action failed with this wire error code.
    Failed(String),
}

/// An action to append; the log adds the seq, the time and the link to the previous entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub actor: AuditActor,
    pub role: AuditRole,
    /// Dotted action name, such as `user.delete`.
    pub action: String,
    /// The id of the object acted on: a tenant, user or key id.
    pub object: String,
    /// The client's IP address as the gateway resolved it.
    pub source: String,
    pub outcome: AuditOutcome,
    /// What changed, such as `max_connections: 10000 -> 5`.
    pub detail: Option<String>,
}

/// One stored entry of an audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1 and without gaps.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, never lower than the previous entry's.
    pub ts_ms: u64,
    pub actor: AuditActor,
    pub role: AuditRole,
    pub action: String,
    pub object: String,
    pub source: String,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
    /// SHA-256 of the previous entry's encoded bytes, or [`ZERO_HASH`] for the first entry.
    pub prev_sha256: [u8; 32],
}

/// The newest entry of a log: its seq, time and the SHA-256 of its encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub ts_ms: u64,
    pub sha256: [u8; 32],
}

/// Filters and position of an audit log read. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries with this action name.
    pub action: Option<String>,
    /// Only entries at or after this time, in ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Only entries at or before this time, in ms since the Unix epoch.
    pub until_ms: Option<u64>,
    /// Only entries with a greater seq (the last seq of the previous page).
    pub after_seq: u64,
    pub limit: usize,
}

/// One page of entries in ascending seq, each with the SHA-256 of its own encoded bytes.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub items: Vec<(AuditEntry, [u8; 32])>,
    /// True when more matching entries follow the page.
    pub more: bool,
}

/// The result of walking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every link holds. `head` is `None` for an empty log.
    Intact { entries: u64, head: Option<AuditHead> },
    /// The first link that does not hold: the entry with this seq was changed or removed.
    Broken { seq: u64, reason: String },
}

/// Keys of one log: the entries under `entry_prefix` followed by the seq in big-endian, and
/// the head record.
#[derive(Debug, Clone)]
pub(crate) struct AuditKeys {
    pub entry_prefix: Vec<u8>,
    pub head: Vec<u8>,
}

impl AuditKeys {
    fn entry(&self, seq: u64) -> Vec<u8> {
        let mut key = self.entry_prefix.clone();
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }
}

/// One audit log: where it lives and the lock that orders its appends.
#[derive(Clone)]
pub(crate) struct AuditLog {
    placement: Arc<Placement>,
    keys: AuditKeys,
    /// Held from reading the head until the new entry is durable, so two appends cannot link
    /// to the same predecessor. Every handle on the same log shares it.
    append_lock: Arc<tokio::sync::Mutex<()>>,
}

impl AuditLog {
    pub(crate) fn new(placement: Arc<Placement>, keys: AuditKeys, append_lock: Arc<tokio::sync::Mutex<()>>) -> Self {
        AuditLog {
            placement,
            keys,
            append_lock,
        }
    }

    /// Appends `event` as the next entry and returns it once it is durable.
    pub(crate) async fn append(&self, event: AuditEvent) -> Result<AuditEntry> {
        let _guard = self.append_lock.lock().await;

        let head = self.head()?;
        let entry = AuditEntry {
            seq: head.map_or(1, |h| h.seq + 1),
            ts_ms: crate::now_ms().max(head.map_or(0, |h| h.ts_ms)),
            actor: event.actor,
            role: event.role,
            action: event.action,
            object: event.object,
            source: event.source,
            outcome: event.outcome,
            detail: event.detail,
            prev_sha256: head.map_or(ZERO_HASH, |h| h.sha256),
        };

        let bytes = codec::encode(&entry);
        let new_head = AuditHead {
            seq: entry.seq,
            ts_ms: entry.ts_ms,
            sha256: sha256(&bytes),
        };
        let writes = vec![
            Write::Put(self.keys.entry(entry.seq), bytes),
            Write::Put(self.keys.head.clone(), codec::encode(&new_head)),
        ];
        self.placement.commit(writes).await?;
        Ok(entry)
    }

    pub(crate) fn head(&self) -> Result<Option<AuditHead>> {
        read_head(&*self.placement.space()?, &self.keys)
    }

    /// Reads the entries after `query.after_seq` that match the filters, in seq order.
    // NOTE: the scan starts at `after_seq` and skips entries before `since_ms` one by one, so
    // a filter that matches little of a long log reads all of it.
    pub(crate) fn read(&self, query: &AuditQuery) -> Result<AuditPage> {
        let mut page = AuditPage {
            items: Vec::new(),
            more: false,
        };
        let space = self.placement.space()?;
        scan(&space, &self.keys, query.after_seq.saturating_add(1), |_, bytes| {
            let entry: AuditEntry = codec::decode("audit entry", bytes)?;
            // Times never decrease along the log, so nothing after this entry matches either.
            if query.until_ms.is_some_and(|until| entry.ts_ms > until) {
                return Ok(false);
            }
            if query.since_ms.is_some_and(|since| entry.ts_ms < since) {
                return Ok(true);
            }
            if query.action.as_ref().is_some_and(|action| *action != entry.action) {
                return Ok(true);
            }
            if page.items.len() == query.limit {
                page.more = true;
                return Ok(false);
            }
            page.items.push((entry, sha256(bytes)));
            Ok(true)
        })?;
        Ok(page)
    }

    pub(crate) fn verify(&self) -> Result<ChainStatus> {
        verify_chain(&*self.placement.space()?, &self.keys)
    }
}

/// SHA-256 of an entry's encoded bytes, the value the next entry links to.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Walks the platform log, or the log of `tenant`, in the data directory `data_dir`, opened
/// read-only. Meant for a stopped server: a running server may append while the walk reads.
pub fn verify_offline(data_dir: &Path, tenant: Option<&TenantId>) -> Result<ChainStatus> {
    let space = crate::db::open_read_only(data_dir, tenant)?;
    let keys = match tenant {
        None => crate::keys::platform_audit_keys(),
        Some(_) => crate::keys::TenantKeys.audit_keys(),
    };
    verify_chain(&space, &keys)
}

fn verify_chain(space: &KeySpace, keys: &AuditKeys) -> Result<ChainStatus> {
    let mut previous: Option<(u64, [u8; 32])> = None;
    let mut status = None;
    scan(space, keys, 1, |key, bytes| {
        let key_seq = seq_from_key(key);
        let expected = previous.map_or(1, |(seq, _)| seq + 1);
        if key_seq != expected {
            status = Some(broken(expected, format!("entry {expected} is missing; the next stored entry is {key_seq}")));
            return Ok(false);
        }

        let entry: AuditEntry = match codec::decode("audit entry", bytes) {
            Ok(entry) => entry,
            Err(err) => {
                status = Some(broken(key_seq, format!("entry {key_seq} does not decode: {err}")));
                return Ok(false);
            }
        };
        if entry.seq != key_seq {
            status = Some(broken(key_seq, format!("entry stored at {key_seq} says seq {}", entry.seq)));
            return Ok(false);
        }
        let expected_link = previous.map_or(ZERO_HASH, |(_, hash)| hash);
        if entry.prev_sha256 != expected_link {
            // The link is stored in this entry but covers the previous one, so a change to
            // either breaks it. A changed previous entry is the usual case.
            let culprit = key_seq.saturating_sub(1).max(1);
            status = Some(broken(
                culprit,
                format!("the SHA-256 of entry {culprit} does not match prev_sha256 of entry {key_seq}"),
            ));
            return Ok(false);
        }
        previous = Some((key_seq, sha256(bytes)));
        Ok(true)
    })?;
    if let Some(status) = status {
        return Ok(status);
    }

    let head = read_head(space, keys)?;
    match (previous, head) {        (None, None) => Ok(ChainStatus::Intact { entries: 0, head: None }),
        (Some((last, _)), None) => Ok(broken(last, "the head record is missing".into())),
        (None, Some(head)) => Ok(broken(1, format!("the head names entry {} but the log is empty", head.seq))),
        (Some((last, hash)), Some(head)) => {
            if head.seq > last {
                Ok(broken(last + 1, format!("entries {} to {} are missing", last + 1, head.seq)))
            } else if head.seq < last || head.sha256 != hash {
                Ok(broken(last, format!("the SHA-256 of entry {last} does not match the head record")))
            } else {
                Ok(ChainStatus::Intact { entries: last, head: Some(head) })
            }
        }
    }
}

fn broken(seq: u64, reason: String) -> ChainStatus {
    ChainStatus::Broken { seq, reason }
}

fn read_head(space: &KeySpace, keys: &AuditKeys) -> Result<Option<AuditHead>> {
    space
        .get(&keys.head)?
        .map(|bytes| codec::decode("audit head", &bytes))
        .transpose()
}

/// Visits the entries of a log from `first_seq` on, in seq order, until `visit` returns false.
fn scan(
    space: &KeySpace,
    keys: &AuditKeys,
    first_seq: u64,
    visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    let end = crate::keys::prefix_end(&keys.entry_prefix);
    space.scan(&keys.entry(first_seq), end.as_deref(), false, visit)
}

fn seq_from_key(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("audit entry keys end with a u64");
    u64::from_be_bytes(tail)
}
