//! The tenant-scoped store: the only storage type the engine and the request handlers see.

use std::{fmt, sync::Arc};

use rocksdb::{Direction, IteratorMode, ReadOptions};

use crate::{
    audit::{AuditEntry, AuditEvent, AuditHead, AuditLog, AuditPage, AuditQuery, ChainStatus},
    codec,
    committer::{Committer, Db, Op},
    keys::{prefix_end, TenantKeys},
    BrandingRecord, ConvId, ConversationRecord, MessageRecord, Result, StorageError, TenantId, UserId, UserRecord,
};

/// Storage bound to one tenant. Every key it reads or writes is built by [`TenantKeys`] inside
/// the tenant's column family and prefix. No method takes a tenant id or a raw key, so code that
/// has a `TenantStore` cannot reach another tenant's data.
#[derive(Clone)]
pub struct TenantStore {
    db: Arc<Db>,
    committer: Committer,
    cf: Arc<str>,
    keys: TenantKeys,
    tenant: TenantId,
    audit: AuditLog,
}

impl fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantStore").field("tenant", &self.tenant).finish()
    }
}

/// Writes collected for one durable commit in one tenant's key space.
pub struct TenantBatch {
    cf: Arc<str>,
    keys: TenantKeys,
    ops: Vec<Op>,
}

impl TenantBatch {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put {
            cf: self.cf.clone(),
            key,
            value,
        });
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(Op::Delete {
            cf: self.cf.clone(),
            key,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn put_user(&mut self, user: &UserRecord) {
        self.put(self.keys.user(&user.id), codec::encode(user));
    }

    pub fn delete_user(&mut self, user: &UserId) {
        self.delete(self.keys.user(user.as_str()));
    }

    pub fn put_conversation(&mut self, conversation: &ConversationRecord) {
        self.put(self.keys.conversation(&conversation.id), codec::encode(conversation));
    }

    pub fn put_membership(&mut self, user: &str, conv: &str) {
        self.put(self.keys.membership(user, conv), Vec::new());
    }

    pub fn delete_membership(&mut self, user: &str, conv: &str) {
        self.delete(self.keys.membership(user, conv));
    }

    /// Stores the message and its idempotency index entry.
    pub fn put_message(&mut self, conv: &ConvId, message: &MessageRecord) {
        self.put(self.keys.message(conv.as_str(), message.seq), codec::encode_message(message));
        self.put(
            self.keys.idempotency(conv.as_str(), &message.client_msg_id),
            codec::encode(&message.seq),
        );
    }

    /// Overwrites a stored message in place, after an edit or a recall, and leaves its
    /// idempotency entry as it is.
    // NOTE: no read returns the old body after this commit, but its bytes stay in the WAL
    // and in older SST files until RocksDB recycles the WAL and compacts the key.
    pub fn replace_message(&mut self, conv: &ConvId, message: &MessageRecord) {
        self.put(self.keys.message(conv.as_str(), message.seq), codec::encode_message(message));
    }

    pub fn put_branding(&mut self, branding: &BrandingRecord) {
        self.put(self.keys.branding(), codec::encode(branding));
    }

    pub fn put_read_marker(&mut self, conv: &ConvId, user: &UserId, seq: u64) {
        self.put(self.keys.read_marker(conv.as_str(), user.as_str()), codec::encode(&seq));
    }
}

impl TenantStore {
    pub(crate) fn new(
        db: Arc<Db>,
        committer: Committer,
        cf: Arc<str>,
        prefix: Vec<u8>,
        tenant: TenantId,
        audit: AuditLog,
    ) -> Self {
        TenantStore {
            db,
            committer,
            cf,
            keys: TenantKeys::new(prefix),
            tenant,
            audit,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn batch(&self) -> TenantBatch {
        TenantBatch {
            cf: self.cf.clone(),
            keys: self.keys.clone(),
            ops: Vec::new(),
        }
    }

    /// Writes the batch with the database's durability; returns once it is durable.
    pub async fn commit(&self, batch: TenantBatch) -> Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.committer.commit(batch.ops).await
    }

    // ---- users ----

    pub fn user(&self, user: &UserId) -> Result<Option<UserRecord>> {
        self.get_decoded("user record", &self.keys.user(user.as_str()))
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.scan_prefix(&self.keys.users_prefix(), usize::MAX)?
            .into_iter()
            .map(|(_, value)| codec::decode("user record", &value))
            .collect()
    }

    // ---- conversations ----

    pub fn conversation(&self, conv: &ConvId) -> Result<Option<ConversationRecord>> {
        self.get_decoded("conversation record", &self.keys.conversation(conv.as_str()))
    }

    pub fn conversations(&self) -> Result<Vec<ConversationRecord>> {
        self.scan_prefix(&self.keys.conversations_prefix(), usize::MAX)?
            .into_iter()
            .map(|(_, value)| codec::decode("conversation record", &value))
            .collect()
    }

    /// Ids of the conversations `user` is a member of, in id order.
    pub fn conversations_of(&self, user: &UserId) -> Result<Vec<ConvId>> {
        let prefix = self.keys.memberships_prefix(user.as_str());
        self.scan_prefix(&prefix, usize::MAX)?
            .into_iter()
            .map(|(key, _)| {
                let id = std::str::from_utf8(&key[prefix.len()..]).map_err(|e| StorageError::Decode {
                    what: "membership key",
                    reason: e.to_string(),
                })?;
                ConvId::parse(id).map_err(|e| StorageError::Decode {
                    what: "membership key",
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    // ---- messages ----

    /// Returns the seq of the newest message in `conv`, or 0 when it has none.
    pub fn last_seq(&self, conv: &ConvId) -> Result<u64> {
        let prefix = self.keys.messages_prefix(conv.as_str());
        let upper = self.keys.message(conv.as_str(), u64::MAX);

        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(prefix.clone());
        let cf = self.cf_handle()?;
        let mut iter = self
            .db
            .iterator_cf_opt(&cf, read_options, IteratorMode::From(&upper, Direction::Reverse));
        match iter.next() {
            None => Ok(0),
            Some(item) => {
                let (key, _) = item.map_err(|e| self.read_error("failed to find the last seq", e))?;
                Ok(seq_from_key(&key))
            }
        }
    }

    /// Messages with `after < seq < before`, at most `limit`. With `newest_first` the scan
    /// starts at `before` and walks down (a `history` page before a point); otherwise it starts
    /// at `after` and walks up. The result is always in ascending `seq` order. The returned
    /// flag is true when more messages exist beyond the page in the direction of the scan.
    pub fn messages(
        &self,
        conv: &ConvId,
        after: u64,
        before: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<(Vec<MessageRecord>, bool)> {
        if before <= after.saturating_add(1) || limit == 0 {
            return Ok((Vec::new(), false));
        }
        let lower = self.keys.message(conv.as_str(), after + 1);
        let upper = self.keys.message(conv.as_str(), before);

        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(lower.clone());
        read_options.set_iterate_upper_bound(upper.clone());
        let mode = if newest_first {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };

        let cf = self.cf_handle()?;
        let mut items = Vec::with_capacity(limit.min(128));
        let mut more = false;
        for item in self.db.iterator_cf_opt(&cf, read_options, mode) {
            let (_, value) = item.map_err(|e| self.read_error("failed to read messages", e))?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(codec::decode_message(&value)?);
        }
        if newest_first {
            items.reverse();
        }
        Ok((items, more))
    }

    /// Returns the message `seq` of `conv`, if it is stored.
    pub fn message(&self, conv: &ConvId, seq: u64) -> Result<Option<MessageRecord>> {
        let cf = self.cf_handle()?;
        let bytes = self
            .db
            .get_pinned_cf(&cf, self.keys.message(conv.as_str(), seq))
            .map_err(|e| self.read_error("failed to read a message", e))?;
        bytes.map(|b| codec::decode_message(&b)).transpose()
    }

    /// Returns the seq that an earlier send with `client_msg_id` got in `conv`, if any.
    pub fn seq_for_client_msg_id(&self, conv: &ConvId, client_msg_id: &str) -> Result<Option<u64>> {
        self.get_decoded("idempotency entry", &self.keys.idempotency(conv.as_str(), client_msg_id))
    }

    pub fn read_marker(&self, conv: &ConvId, user: &UserId) -> Result<Option<u64>> {
        self.get_decoded("read marker", &self.keys.read_marker(conv.as_str(), user.as_str()))
    }

    pub fn branding(&self) -> Result<Option<BrandingRecord>> {
        self.get_decoded("branding record", &self.keys.branding())
    }

    /// Estimated live size of the tenant's data: SST files plus memtables. RocksDB's estimate
    /// lags compaction, so deleted data may still count for a while.
    pub fn approximate_size_bytes(&self) -> Result<u64> {
        let cf = self.cf_handle()?;
        let mut total = 0;
        for property in ["rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables"] {
            let value = self
                .db
                .property_int_value_cf(&cf, property)
                .map_err(|e| self.read_error("failed to read the size estimate", e))?;
            total += value.unwrap_or(0);
        }
        Ok(total)
    }

    // ---- audit log ----

    /// Appends to the tenant's audit log and returns the entry once it is durable.
    pub async fn append_audit(&self, event: AuditEvent) -> Result<AuditEntry> {
        self.audit.append(event).await
    }

    pub fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        self.audit.read(query)
    }

    pub fn audit_head(&self) -> Result<Option<AuditHead>> {
        self.audit.head()
    }

    /// Walks the tenant audit log's hash chain.
    pub fn verify_audit(&self) -> Result<ChainStatus> {
        self.audit.verify()
    }

    // ---- helpers ----

    fn cf_handle(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StorageError::TenantNotFound(self.tenant.to_string()))
    }

    fn read_error(&self, context: &str, err: rocksdb::Error) -> StorageError {
        StorageError::rocks(format!("{context} for tenant {}", self.tenant), err)
    }

    fn get_decoded<T: serde::de::DeserializeOwned>(&self, what: &'static str, key: &[u8]) -> Result<Option<T>> {
        let cf = self.cf_handle()?;
        let bytes = self
            .db
            .get_pinned_cf(&cf, key)
            .map_err(|e| self.read_error("failed to read", e))?;
        bytes.map(|b| codec::decode(what, &b)).transpose()
    }

    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Box<[u8]>, Box<[u8]>)>> {
        let mut read_options = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            read_options.set_iterate_upper_bound(end);
        }
        let cf = self.cf_handle()?;
        self.db
            .iterator_cf_opt(&cf, read_options, IteratorMode::From(prefix, Direction::Forward))
            .take(limit)
            .map(|item| item.map_err(|e| self.read_error("failed to scan", e)))
            .collect()
    }
}

fn seq_from_key(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("message keys end with a u64");
    u64::from_be_bytes(tail)
}

// ---- export and import ----
//
// Paged reads, so that an export of a large tenant keeps one page in memory at a time, and the key that
// masked exports derive their pseudonyms from.

/// Length of the masking key. RFC 2104 recommends an HMAC key at least as long as the hash
/// output, which is 32 bytes for SHA-256.
pub const MASKING_KEY_BYTES: usize = 32;

impl TenantStore {
    /// Returns up to `limit` users with ids greater than `after` (from the first when `None`),
    /// in id order.
    pub fn users_page(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<UserRecord>> {
        let prefix = self.keys.users_prefix();
        let start = after.map(|id| self.keys.user(id.as_str()));
        self.scan_page(&prefix, start, limit)?
            .into_iter()
            .map(|value| codec::decode("user record", &value))
            .collect()
    }

    /// Returns up to `limit` conversations with ids greater than `after` (from the first when
    /// `None`), in id order.
    pub fn conversations_page(&self, after: Option<&ConvId>, limit: usize) -> Result<Vec<ConversationRecord>> {
        let prefix = self.keys.conversations_prefix();
        let start = after.map(|id| self.keys.conversation(id.as_str()));
        self.scan_page(&prefix, start, limit)?
            .into_iter()
            .map(|value| codec::decode("conversation record", &value))
            .collect()
    }

    /// Returns the tenant's masking key, if one was stored.
    pub fn masking_key(&self) -> Result<Option<[u8; MASKING_KEY_BYTES]>> {
        self.get_decoded("masking key", &self.keys.masking_key())
    }

    /// Values of the keys under `prefix` that sort after `start_after` (or from the start of the
    /// prefix), at most `limit`.
    fn scan_page(&self, prefix: &[u8], start_after: Option<Vec<u8>>, limit: usize) -> Result<Vec<Box<[u8]>>> {
        let mut read_options = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            read_options.set_iterate_upper_bound(end);
        }
        // The smallest key after `start_after` is `start_after` followed by a zero byte.
        let start = match start_after {
            Some(mut key) => {
                key.push(0);
                key
            }
            None => prefix.to_vec(),
        };
        let cf = self.cf_handle()?;
        self.db
            .iterator_cf_opt(&cf, read_options, IteratorMode::From(&start, Direction::Forward))
            .take(limit)
            .map(|item| {
                item.map(|(_, value)| value)
                    .map_err(|e| self.read_error("failed to scan a page", e))
            })
            .collect()
    }
}

impl TenantBatch {
    /// Stores the masking key. Replacing an existing key changes every pseudonym of later
    /// masked exports, so callers write it only when [`TenantStore::masking_key`] found none.
    pub fn put_masking_key(&mut self, key: &[u8; MASKING_KEY_BYTES]) {
        self.put(self.keys.masking_key(), codec::encode(key));
    }
}
