//! Where a tenant's data lives, and the switch that moves it to another tier while the server
//! runs.
//!
//! A [`KeySpace`] is one column family of one database plus a key prefix. The three tiers are
//! three kinds of key space:
//!
//! | tier | database | column family | prefix |
//! |---|---|---|---|
//! | `shared` | the main one | `shared` | the tenant id, length-prefixed |
//! | `cf` | the main one | `t.<tenant>` | none |
//! | `dedicated` | `<data_dir>/dedicated/<tenant>` | `tenant` | none |
//!
//! Code above this module builds keys relative to the tenant's key space; the key space adds
//! the prefix and picks the column family. A [`Placement`] is a tenant's current key space.
//! Every clone of the tenant's store shares one placement, so a migration that swaps the key
//! space moves all of them at once.

use std::sync::Arc;

use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use crate::{
    committer::{Committer, Db, Op},
    keys::prefix_end,
    Result, StorageError, TenantId,
};

/// One write relative to a tenant's key space.
pub(crate) enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// A column family of one database, and the prefix every key of the tenant starts with.
pub(crate) struct KeySpace {
    // Fields drop in order: for a dedicated database the committer goes last, because joining
    // its thread drops the thread's reference and closes the database.
    db: Arc<Db>,
    cf: Arc<str>,
    prefix: Vec<u8>,
    committer: Committer,
}

impl KeySpace {
    pub(crate) fn new(db: Arc<Db>, committer: Committer, cf: Arc<str>, prefix: Vec<u8>) -> Self {
        KeySpace {
            db,
            cf,
            prefix,
            committer,
        }
    }

    pub(crate) fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub(crate) fn cf_name(&self) -> &str {
        &self.cf
    }

    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn absolute(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    fn cf_handle(&self) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StorageError::TenantNotFound(self.cf.to_string()))
    }

    fn read_error(&self, context: &str, err: rocksdb::Error) -> StorageError {
        StorageError::rocks(format!("{context} in {}", self.cf), err)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.cf_handle()?;
        self.db
            .get_pinned_cf(&cf, self.absolute(key))
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|e| self.read_error("failed to read", e))
    }

    /// Visits the keys in `[lower, upper)` (relative keys; `upper: None` is the end of the key
    /// space) in ascending order, or descending with `reverse`, until `visit` returns false.
    /// `visit` gets the relative key and the value.
    pub(crate) fn scan(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(self.absolute(lower));
        let upper = match upper {
            Some(upper) => Some(self.absolute(upper)),
            None => prefix_end(&self.prefix),
        };
        if let Some(upper) = upper {
            read_options.set_iterate_upper_bound(upper);
        }
        let mode = if reverse { IteratorMode::End } else { IteratorMode::Start };

        let cf = self.cf_handle()?;
        for item in self.db.iterator_cf_opt(&cf, read_options, mode) {
            let (key, value) = item.map_err(|e| self.read_error("failed to scan", e))?;
            if !visit(&key[self.prefix.len()..], &value)? {
                break;
            }
        }
        Ok(())
    }

    /// Visits every key that starts with `prefix` (relative), in ascending order.
    pub(crate) fn scan_prefix(&self, prefix: &[u8], visit: impl FnMut(&[u8], &[u8]) -> Result<bool>) -> Result<()> {
        let end = prefix_end(prefix);
        self.scan(prefix, end.as_deref(), false, visit)
    }

    /// Writes through the database's committer and returns once the writes are durable.
    pub(crate) async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let ops = writes
            .into_iter()
            .map(|write| match write {
                Write::Put(key, value) => Op::Put {
                    cf: self.cf.clone(),
                    key: self.absolute(&key),
                    value,
                },
                Write::Delete(key) => Op::Delete {
                    cf: self.cf.clone(),
                    key: self.absolute(&key),
                },
            })
            .collect();
        self.committer.commit(ops).await
    }

    /// Estimated live size of the key space in bytes.
    pub(crate) fn approximate_size_bytes(&self) -> Result<u64> {
        let cf = self.cf_handle()?;
        if self.prefix.is_empty() {
            // The whole column family is the tenant's: RocksDB keeps the estimate for it.
            let mut total = 0;
            for property in ["rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables"] {
                let value = self
                    .db
                    .property_int_value_cf(&cf, property)
                    .map_err(|e| self.read_error("failed to read the size estimate", e))?;
                total += value.unwrap_or(0);
            }
            return Ok(total);
        }

        // NOTE: in a shared column family only the flushed part of the tenant's range is
        // counted; RocksDB does not estimate the memtable share of one key range.
        let end = prefix_end(&self.prefix).expect("a tenant prefix is never all 0xFF");
        let sizes = self
            .db
            .get_approximate_sizes_cf(&cf, &[rocksdb::Range::new(&self.prefix, &end)]);
        Ok(sizes.first().copied().unwrap_or(0))
    }

    /// Copies every key of this key space into `target`, in batches of about 1 MiB, and syncs
    /// the target's WAL at the end. Runs on the caller's thread; returns the number of keys.
    pub(crate) fn copy_into(&self, target: &KeySpace) -> Result<u64> {
        const BATCH_BYTES: usize = 1 << 20;

        let target_cf = target.cf_handle()?;
        let mut unsynced = WriteOptions::default();
        unsynced.set_sync(false);
        let mut batch = WriteBatch::default();
        let mut copied = 0;

        self.scan(&[], None, false, |key, value| {
            batch.put_cf(&target_cf, target.absolute(key), value);
            copied += 1;
            if batch.size_in_bytes() >= BATCH_BYTES {
                let full = std::mem::take(&mut batch);
                target
                    .db
                    .write_opt(full, &unsynced)
                    .map_err(|e| StorageError::rocks(format!("failed to copy into {}", target.cf), e))?;
            }
            Ok(true)
        })?;

        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        target
            .db
            .write_opt(batch, &synced)
            .map_err(|e| StorageError::rocks(format!("failed to copy into {}", target.cf), e))?;
        Ok(copied)
    }
}

/// A tenant's current key space, shared by every clone of its store.
pub(crate) struct Placement {
    tenant: TenantId,
    /// `None` once the tenant is deleted: every read and write then fails with
    /// `TenantNotFound`.
    space: parking_lot::RwLock<Option<Arc<KeySpace>>>,
    /// Commits hold it shared while they resolve keys and wait for durability; a migration
    /// holds it exclusively from the start of the copy until the swap, so no write lands in
    /// the old key space after the copy began. Reads do not take it: until the swap they read
    /// the old key space, which nothing writes to during the copy.
    write_gate: tokio::sync::RwLock<()>,
}

impl Placement {
    pub(crate) fn new(tenant: TenantId, space: KeySpace) -> Self {
        Placement {
            tenant,
            space: parking_lot::RwLock::new(Some(Arc::new(space))),
            write_gate: tokio::sync::RwLock::new(()),
        }
    }

    /// The current key space.
    pub(crate) fn space(&self) -> Result<Arc<KeySpace>> {
        self.space
            .read()
            .clone()
            .ok_or_else(|| StorageError::TenantNotFound(self.tenant.to_string()))
    }

    /// Writes into the current key space, waiting while a migration copies the tenant.
    pub(crate) async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let _shared = self.write_gate.read().await;
        self.space()?.commit(writes).await
    }

    /// Stops new writes and waits for the ones in progress; writes resume when the guard is
    /// dropped.
    pub(crate) async fn pause_writes(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.write_gate.write().await
    }

    /// Puts `space` in place of the current key space (or removes it with `None`) and returns
    /// the old one.
    pub(crate) fn replace(&self, space: Option<KeySpace>) -> Option<Arc<KeySpace>> {
        std::mem::replace(&mut *self.space.write(), space.map(Arc::new))
    }
}

/// Waits until `space` has no other holder (reads that began before a swap finish quickly),
/// at most `patience`. Returns the key space when it is free, or `None` when a holder remains;
/// then the caller leaves the data for the cleanup at the next start.
pub(crate) fn wait_until_unused(space: Arc<KeySpace>, patience: std::time::Duration) -> Option<KeySpace> {
    let deadline = std::time::Instant::now() + patience;
    let mut space = space;
    loop {
        match Arc::try_unwrap(space) {
            Ok(free) => return Some(free),
            Err(held) => {
                if std::time::Instant::now() >= deadline {
                    return None;
                }
                space = held;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}
