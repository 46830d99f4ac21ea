//! The tenant-scoped store: the only storage type the engine and the request handlers see.

use std::{fmt, sync::Arc};

use crate::{
    audit::{AuditEntry, AuditEvent, AuditHead, AuditLog, AuditPage, AuditQuery, ChainStatus},
    codec,
    keys::{prefix_end, TenantKeys},
    placement::{Placement, Write},
    BrandingRecord, ConvId, ConversationRecord, MessageRecord, Result, StorageError, TenantId, UserId, UserRecord,
};

/// Storage bound to one tenant. Every key it reads or writes is built by [`TenantKeys`] inside
/// the tenant's key space, whichever tier it is on. No method takes a tenant id or a raw key, so
/// code that has a `TenantStore` cannot reach another tenant's data.
#[derive(Clone)]
pub struct TenantStore {
    placement: Arc<Placement>,
    keys: TenantKeys,
    tenant: TenantId,
    audit: AuditLog,
}

impl fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantStore").field("tenant", &self.tenant).finish()
    }
}

/// Writes collected for one durable commit in one tenant's key space. The keys are relative:
/// the commit places them in whatever key space the tenant is on at that moment, so a batch
/// built before a migration lands after it.
pub struct TenantBatch {
    keys: TenantKeys,
    writes: Vec<Write>,
}

impl TenantBatch {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push(Write::Put(key, value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.push(Write::Delete(key));
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
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
    pub(crate) fn new(placement: Arc<Placement>, tenant: TenantId, audit: AuditLog) -> Self {
        TenantStore {
            placement,
            keys: TenantKeys,
            tenant,
            audit,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn batch(&self) -> TenantBatch {
        TenantBatch {
            keys: self.keys,
            writes: Vec::new(),
        }
    }

    /// Writes the batch with the database's durability; returns once it is durable. While the
    /// tenant is being migrated, this waits for the migration to finish.
    pub async fn commit(&self, batch: TenantBatch) -> Result<()> {
        if batch.writes.is_empty() {
            return Ok(());
        }
        self.placement.commit(batch.writes).await
    }

    // ---- users ----

    pub fn user(&self, user: &UserId) -> Result<Option<UserRecord>> {
        self.get_decoded("user record", &self.keys.user(user.as_str()))
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.decode_prefix("user record", &self.keys.users_prefix())
    }

    // ---- conversations ----

    pub fn conversation(&self, conv: &ConvId) -> Result<Option<ConversationRecord>> {
        self.get_decoded("conversation record", &self.keys.conversation(conv.as_str()))
    }

    pub fn conversations(&self) -> Result<Vec<ConversationRecord>> {
        self.decode_prefix("conversation record", &self.keys.conversations_prefix())
    }

    /// Ids of the conversations `user` is a member of, in id order.
    pub fn conversations_of(&self, user: &UserId) -> Result<Vec<ConvId>> {
        let prefix = self.keys.memberships_prefix(user.as_str());
        let mut ids = Vec::new();
        self.placement.space()?.scan_prefix(&prefix, |key, _| {
            let decode_error = |reason: String| StorageError::Decode {
                what: "membership key",
                reason,
            };
            let id = std::str::from_utf8(&key[prefix.len()..]).map_err(|e| decode_error(e.to_string()))?;
            ids.push(ConvId::parse(id).map_err(|e| decode_error(e.to_string()))?);
            Ok(true)
        })?;
        Ok(ids)
    }

    // ---- messages ----

    /// Returns the seq of the newest message in `conv`, or 0 when it has none.
    pub fn last_seq(&self, conv: &ConvId) -> Result<u64> {
        let prefix = self.keys.messages_prefix(conv.as_str());
        let upper = prefix_end(&prefix);
        let mut last = 0;
        self.placement.space()?.scan(&prefix, upper.as_deref(), true, |key, _| {
            last = seq_from_key(key);
            Ok(false)
        })?;
        Ok(last)
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

        let mut items = Vec::with_capacity(limit.min(128));
        let mut more = false;
        self.placement
            .space()?
            .scan(&lower, Some(&upper), newest_first, |_, value| {
                if items.len() == limit {
                    more = true;
                    return Ok(false);
                }
                items.push(codec::decode_message(value)?);
                Ok(true)
            })?;
        if newest_first {
            items.reverse();
        }
        Ok((items, more))
    }

    /// Returns the message `seq` of `conv`, if it is stored.
    pub fn message(&self, conv: &ConvId, seq: u64) -> Result<Option<MessageRecord>> {
        let bytes = self.placement.space()?.get(&self.keys.message(conv.as_str(), seq))?;
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

    /// Estimated live size of the tenant's data. RocksDB's estimate lags compaction, so
    /// deleted data may still count for a while.
    pub fn approximate_size_bytes(&self) -> Result<u64> {
        self.placement.space()?.approximate_size_bytes()
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

    fn get_decoded<T: serde::de::DeserializeOwned>(&self, what: &'static str, key: &[u8]) -> Result<Option<T>> {
        let bytes = self.placement.space()?.get(key)?;
        bytes.map(|b| codec::decode(what, &b)).transpose()
    }

    fn decode_prefix<T: serde::de::DeserializeOwned>(&self, what: &'static str, prefix: &[u8]) -> Result<Vec<T>> {
        let mut records = Vec::new();
        self.placement.space()?.scan_prefix(prefix, |_, value| {
            records.push(codec::decode(what, value)?);
            Ok(true)
        })?;
        Ok(records)
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
    fn scan_page(&self, prefix: &[u8], start_after: Option<Vec<u8>>, limit: usize) -> Result<Vec<Vec<u8>>> {
        // The smallest key after `start_after` is `start_after` followed by a zero byte.
        let start = match start_after {
            Some(mut key) => {
                key.push(0);
                key
            }
            None => prefix.to_vec(),
        };
        let end = prefix_end(prefix);
        let mut values = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(values);
        }
        self.placement.space()?.scan(&start, end.as_deref(), false, |_, value| {
            values.push(value.to_vec());
            Ok(values.len() < limit)
        })?;
        Ok(values)
    }
}

impl TenantBatch {
    /// Stores the masking key. Replacing an existing key changes every pseudonym of later
    /// masked exports, so callers write it only when [`TenantStore::masking_key`] found none.
    pub fn put_masking_key(&mut self, key: &[u8; MASKING_KEY_BYTES]) {
        self.put(self.keys.masking_key(), codec::encode(key));
    }
}
