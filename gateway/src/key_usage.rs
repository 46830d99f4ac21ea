//! When each tenant API key last authenticated a request.
//!
//! A durable write per REST call would cost a WAL sync per request, so the latest use of each
//! key is kept in memory and stored only when the stored value is older than
//! [`STORE_INTERVAL_MS`]. The stored value may therefore lag the real last use by up to that
//! interval. A graceful shutdown stores every value that is still only in memory, so only a
//! crash loses up to one interval of uses.

use std::{collections::HashMap, sync::Arc};

use bulkhead_storage::Storage;
use parking_lot::Mutex;

/// Maximum age of a key's stored last use before a new use is written. A minute is
/// exact enough to tell a key in use from a forgotten one. It caps the writes at one per key
/// per minute, and the value may change.
pub const STORE_INTERVAL_MS: u64 = 60_000;

/// The last uses of API keys that this process has seen, and the stored values it has read
/// or written.
#[derive(Default)]
pub struct KeyUsage {
    keys: Mutex<HashMap<String, KeyUse>>,
}

#[derive(Debug, Clone, Copy)]
struct KeyUse {
    latest_ms: u64,
    /// The stored last use, or `None` when nothing is stored.
    stored_ms: Option<u64>,
}

impl KeyUsage {
    /// Returns whether this process has seen the key since it started (or since it was
    /// forgotten), so its stored last use is known.
    pub fn is_tracked(&self, key_id: &str) -> bool {
        self.keys.lock().contains_key(key_id)
    }

    /// Starts tracking a key whose stored last use is `stored_ms`. Does nothing when the key
    /// is tracked already.
    pub fn track(&self, key_id: &str, stored_ms: Option<u64>) {
        self.keys.lock().entry(key_id.to_owned()).or_insert(KeyUse {
            latest_ms: stored_ms.unwrap_or(0),
            stored_ms,
        });
    }

    /// Records a use of the key at `now_ms`. Returns `true` when the stored value is missing
    /// or older than [`STORE_INTERVAL_MS`]; the caller then stores `now_ms`, and this value
    /// counts as stored from here on so that concurrent requests do not write it again.
    pub fn record(&self, key_id: &str, now_ms: u64) -> bool {
        let mut keys = self.keys.lock();
        let entry = keys.entry(key_id.to_owned()).or_insert(KeyUse {
            latest_ms: 0,
            stored_ms: None,
        });
        entry.latest_ms = entry.latest_ms.max(now_ms);

        let due = entry
            .stored_ms
            .is_none_or(|stored_ms| now_ms.saturating_sub(stored_ms) >= STORE_INTERVAL_MS);
        if due {
            entry.stored_ms = Some(now_ms);
        }
        due
    }

    /// Marks the write of `used_at_ms` as failed, so that the next use of the key tries
    /// again.
    pub fn store_failed(&self, key_id: &str, used_at_ms: u64) {
        if let Some(entry) = self.keys.lock().get_mut(key_id) {
            if entry.stored_ms == Some(used_at_ms) {
                entry.stored_ms = None;
            }
        }
    }

    /// Returns the latest use of the key seen by this process, if any.
    pub fn latest(&self, key_id: &str) -> Option<u64> {
        self.keys
            .lock()
            .get(key_id)
            .map(|entry| entry.latest_ms)
            .filter(|&latest_ms| latest_ms > 0)
    }

    /// Stops tracking a revoked or expired key.
    pub fn forget(&self, key_id: &str) {
        self.keys.lock().remove(key_id);
    }

    /// Takes the latest uses that are newer than their stored values, and marks them as
    /// stored.
    fn take_unstored(&self) -> Vec<(String, u64)> {
        let mut keys = self.keys.lock();
        let mut unstored = Vec::new();
        for (key_id, entry) in keys.iter_mut() {
            if entry.latest_ms > 0 && entry.stored_ms.is_none_or(|stored_ms| stored_ms < entry.latest_ms) {
                entry.stored_ms = Some(entry.latest_ms);
                unstored.push((key_id.clone(), entry.latest_ms));
            }
        }
        unstored
    }

    /// Stores every last use that is only in memory. Called once the server has stopped
    /// taking requests.
    pub async fn store_all(&self, storage: &Storage) {
        let unstored = self.take_unstored();
        let count = unstored.len();
        for (key_id, used_at_ms) in unstored {
            if let Err(err) = storage.record_api_key_use(&key_id, used_at_ms).await {
                tracing::error!(key_id = %key_id, error = %err, "failed to store the last use of an API key");
            }
        }
        tracing::debug!(keys = count, "stored the last use of API keys");
    }
}

/// Stores `used_at_ms` as the key's last use on a task of its own, so that the request does
/// not wait for the write.
pub fn store_in_background(usage: Arc<KeyUsage>, storage: Arc<Storage>, key_id: String, used_at_ms: u64) {
    actix_web::rt::spawn(async move {
        if let Err(err) = storage.record_api_key_use(&key_id, used_at_ms).await {
            usage.store_failed(&key_id, used_at_ms);
            tracing::warn!(key_id = %key_id, error = %err, "failed to store the last use of an API key; the next use retries");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn first_use_of_unstored_key_is_due() {
        let usage = KeyUsage::default();
        usage.track("k", None);

        assert!(usage.record("k", T0));
        assert_eq!(usage.latest("k"), Some(T0));
    }

    #[test]
    fn uses_within_interval_are_not_due() {
        let usage = KeyUsage::default();
        usage.track("k", None);
        assert!(usage.record("k", T0));

        assert!(!usage.record("k", T0 + 1));
        assert!(!usage.record("k", T0 + STORE_INTERVAL_MS - 1));
        assert_eq!(usage.latest("k"), Some(T0 + STORE_INTERVAL_MS - 1));
        assert!(usage.record("k", T0 + STORE_INTERVAL_MS));
    }

    #[test]
    fn recent_stored_value_defers_write() {
        let usage = KeyUsage::default();
        usage.track("k", Some(T0));

        assert!(!usage.record("k", T0 + 10_000));
        assert!(usage.record("k", T0 + STORE_INTERVAL_MS + 1));
    }

    #[test]
    fn failed_store_retries_on_next_use() {
        let usage = KeyUsage::default();
        usage.track("k", None);
        assert!(usage.record("k", T0));

        usage.store_failed("k", T0);

        assert!(usage.record("k", T0 + 1));
    }

    #[test]
    fn take_unstored_returns_only_newer_uses() {
        let usage = KeyUsage::default();
        usage.track("stored", None);
        usage.track("pending", None);
        usage.track("unused", Some(T0));
        assert!(usage.record("stored", T0));
        assert!(usage.record("pending", T0));
        assert!(!usage.record("pending", T0 + 5));

        let unstored = usage.take_unstored();

        assert_eq!(unstored, vec![("pending".to_owned(), T0 + 5)]);
        assert!(usage.take_unstored().is_empty());
    }

    #[test]
    fn forgotten_key_has_no_latest_use() {
        let usage = KeyUsage::default();
        usage.track("k", None);
        usage.record("k", T0);

        usage.forget("k");

        assert_eq!(usage.latest("k"), None);
        assert!(!usage.is_tracked("k"));
    }
}
