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

use std::{path::Path, sync::Arc};

use rocksdb::{IteratorMode, ReadOptions};

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

    /// Visits the keys in `[lower, upper)` in ascending order, or descending with `reverse`,
    /// until `visit` returns false. Both bounds are relative keys, and `upper: None` is the end
    /// of the key space. `visit` gets the relative key and the value.
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

    /// Copies every key of this key space into `target` and returns the number of keys.
    ///
    /// The keys go into SST files of at most [`SST_FILE_BYTES`] in `staging`, which are then
    /// ingested into the target column family. Ingestion adds the files to the LSM tree
    /// directly: the copy writes no WAL and fills no memtable, so it cannot make RocksDB stall
    /// the writes of the other tenants of the target database, as a bulk of ordinary writes
    /// would once the target's memtables fill faster than they flush. Runs on the caller's
    /// thread.
    pub(crate) fn copy_into(&self, target: &KeySpace, staging: &Path) -> Result<u64> {
        let staging_error = |e: std::io::Error| StorageError::io(staging, e);
        std::fs::create_dir_all(staging).map_err(staging_error)?;

        let mut options = rocksdb::Options::default();
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let sst_error = |e: rocksdb::Error| StorageError::rocks(format!("failed to write a copy of {} for {}", self.cf, target.cf), e);

        let mut files = Vec::new();
        let mut writer: Option<rocksdb::SstFileWriter<'_>> = None;
        let mut copied = 0;
        self.scan(&[], None, false, |key, value| {
            if writer.as_ref().is_some_and(|w| w.file_size() >= SST_FILE_BYTES) {
                writer.take().expect("checked above").finish().map_err(sst_error)?;
            }
            if writer.is_none() {
                let path = staging.join(format!("{:06}.sst", files.len()));
                let new = rocksdb::SstFileWriter::create(&options);
                new.open(&path).map_err(sst_error)?;
                files.push(path);
                writer = Some(new);
            }
            // Keys come in ascending order and the target's prefix is the same for all of
            // them, so they stay ascending, as an SST file requires.
            writer
                .as_mut()
                .expect("opened above")
                .put(target.absolute(key), value)
                .map_err(sst_error)?;
            copied += 1;
            Ok(true)
        })?;
        if let Some(mut last) = writer.take() {
            last.finish().map_err(sst_error)?;
        }

        if !files.is_empty() {
            let mut ingest = rocksdb::IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            let target_cf = target.cf_handle()?;
            target
                .db
                .ingest_external_file_cf_opts(&target_cf, &ingest, files.clone())
                .map_err(|e| StorageError::rocks(format!("failed to ingest the copy into {}", target.cf), e))?;
        }
        for file in &files {
            // Moved files are gone already; a file that was copied instead is removed here.
            let _ = std::fs::remove_file(file);
        }
        Ok(copied)
    }
}

/// Size at which a migration starts a new SST file. Ingestion takes any number of files; 64 MiB
/// keeps each file a usual size for RocksDB's lower levels.
const SST_FILE_BYTES: u64 = 64 << 20;

/// A tenant's current key space, shared by every clone of its store.
pub(crate) struct Placement {
    tenant: TenantId,
    /// `None` once the tenant is deleted: every read and write then fails with
    /// `TenantNotFound`.
    space: parking_lot::RwLock<Option<Arc<KeySpace>>>,
    /// Commits take it shared while they resolve keys and wait for durability. A migration
    /// takes it exclusively from the start of the copy until the swap, so no write lands in
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

/// Waits until `space` has no other holder, at most `patience`. Reads that began before a swap
/// finish quickly. Returns the key space when it is free, or `None` when a holder remains, in
/// which case the caller leaves the data for the cleanup at the next start.
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
