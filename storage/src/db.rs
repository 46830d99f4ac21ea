//! Opening the database, the tenant registry, API keys and column family lifecycle.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, Direction, Env, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteBufferManager, WriteOptions,
};
use serde::{Deserialize, Serialize};

use crate::{
    audit::{AuditEntry, AuditEvent, AuditHead, AuditLog, AuditPage, AuditQuery, ChainStatus},
    codec,
    committer::{Committer, Db, Durability, Op},
    keys::{self, TenantKeys, DEDICATED_CF, SHARED_CF, SYS_CF, TENANT_CF_PREFIX},
    placement::{wait_until_unused, KeySpace, Placement},
    ApiKeyRecord, NetworkPolicyRecord, Result, StorageError, TenantId, TenantRecord, TenantStore, Tier,
};

/// The main database's directory inside the data directory.
const MAIN_DB_DIR: &str = "db";
/// The directory with one database per `dedicated` tenant.
const DEDICATED_DIR: &str = "dedicated";
/// The directory where a migration writes its SST files before they are ingested.
const STAGING_DIR: &str = "staging";
/// How long removing a tenant's old data waits for reads that started before the switch.
const READER_PATIENCE: Duration = Duration::from_secs(5);

/// The result of a migration: the key count copied and how long the tenant's writes waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    pub from: Tier,
    pub to: Tier,
    pub keys_copied: u64,
    pub writes_paused: Duration,
}

/// The lock that orders appends to one audit log, shared by every handle on that log.
type AppendLock = Arc<tokio::sync::Mutex<()>>;

/// Tuning of the RocksDB instance. Defaults are sized for a server with a few GiB of memory
/// and a few thousand tenants; every value may change with measurements.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageOptions {
    pub durability: Durability,
    /// Memory shared by the write buffers (memtables) of every column family. When the sum
    /// passes this, RocksDB flushes the largest memtables.
    pub write_buffer_manager_bytes: usize,
    /// Write buffer of one column family. Small, because most tenants are idle most of the time.
    pub cf_write_buffer_bytes: usize,
    /// Cap on the WAL; when it is passed, the column families that pin the oldest WAL file are
    /// flushed, so an idle tenant cannot keep old WAL files alive.
    pub max_total_wal_size_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            durability: Durability::Fsync,
            write_buffer_manager_bytes: 256 << 20,
            cf_write_buffer_bytes: 4 << 20,
            max_total_wal_size_bytes: 256 << 20,
        }
    }
}

/// The opened storage: the main database with the tenant registry, the `shared` column family
/// and one column family per `cf` tenant, plus one database per `dedicated` tenant.
pub struct Storage {
    // Fields drop in order: the placements (and the dedicated databases in them) close first,
    // and `committer` goes after `db` because dropping the last committer handle joins the
    // commit thread, which holds the last reference to the main database.
    placements: parking_lot::Mutex<HashMap<TenantId, Arc<Placement>>>,
    platform_audit: AuditLog,
    db: Arc<Db>,
    committer: Committer,
    cf_options: Options,
    /// Options of a dedicated tenant's database: the main database's, sharing its write
    /// buffer manager, so memtable memory stays bounded across every database.
    dedicated_options: Options,
    dedicated_root: PathBuf,
    staging_dir: PathBuf,
    durability: Durability,
    /// Append locks of the tenant audit logs, created on first use.
    tenant_audit_locks: parking_lot::Mutex<HashMap<TenantId, AppendLock>>,
    /// Held for every read-modify-write of a tenant record, so that a quota change racing a
    /// migration cannot write back the old tier.
    registry_lock: tokio::sync::Mutex<()>,
    /// Held by a tenant's creation, migration and deletion, one at a time per server.
    lifecycle_lock: tokio::sync::Mutex<()>,
    /// Held by every write of API keys. Rotation and recording a use read a key before they
    /// write, and a revocation between the read and the write must not be undone.
    api_keys_lock: tokio::sync::Mutex<()>,
    // Kept alive for as long as the databases; RocksDB holds a reference through the options.
    _write_buffer_manager: WriteBufferManager,
}

impl Storage {
    /// Opens (or creates) the storage in `data_dir`: the main database in `db/` and the
    /// dedicated tenants' databases in `dedicated/<tenant>/`. Data that no tenant record points
    /// to is the remains of a deletion or migration interrupted by a crash; it is removed.
    pub fn open(data_dir: &Path, options: &StorageOptions) -> Result<Arc<Self>> {
        let path = data_dir.join(MAIN_DB_DIR);
        let write_buffer_manager =
            WriteBufferManager::new_write_buffer_manager(options.write_buffer_manager_bytes, false);

        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_write_buffer_manager(&write_buffer_manager);
        db_options.set_env(&background_env()?);
        db_options.set_max_total_wal_size(options.max_total_wal_size_bytes);
        db_options.set_compression_type(DBCompressionType::Lz4);

        let cf_options = column_family_options(options);

        let existing = match Db::list_cf(&db_options, &path) {
            Ok(names) => names,
            // A new database has no column family list yet.
            Err(_) => Vec::new(),
        };
        let mut names: Vec<String> = existing;
        for required in ["default", SYS_CF, SHARED_CF] {
            if !names.iter().any(|n| n == required) {
                names.push(required.to_owned());
            }
        }
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options.clone()));

        let db = Db::open_cf_descriptors(&db_options, &path, descriptors).map_err(|e| {
            let hint = if e.to_string().contains("LOCK") {
                " (is another bulkhead server using this data directory?)"
            } else {
                ""
            };
            StorageError::rocks(format!("failed to open database at {}{hint}", path.display()), e)
        })?;
        let db = Arc::new(db);
        let committer = Committer::start(db.clone(), options.durability);

        let sys_space = KeySpace::new(db.clone(), committer.clone(), SYS_CF.into(), Vec::new());
        let platform_audit = AuditLog::new(
            Arc::new(Placement::new(TenantId::parse("platform").expect("a valid id"), sys_space)),
            keys::platform_audit_keys(),
            AppendLock::default(),
        );
        let storage = Arc::new(Storage {
            placements: parking_lot::Mutex::new(HashMap::new()),
            platform_audit,
            db,
            committer,
            cf_options,
            dedicated_options: db_options,
            dedicated_root: data_dir.join(DEDICATED_DIR),
            staging_dir: data_dir.join(STAGING_DIR),
            durability: options.durability,
            tenant_audit_locks: parking_lot::Mutex::new(HashMap::new()),
            registry_lock: tokio::sync::Mutex::new(()),
            lifecycle_lock: tokio::sync::Mutex::new(()),
            api_keys_lock: tokio::sync::Mutex::new(()),
            _write_buffer_manager: write_buffer_manager,
        });
        storage.remove_orphans(&names)?;
        Ok(storage)
    }

    /// Removes data that no tenant record points to. That is a column family of a tenant not on
    /// the `cf` tier, `shared` rows of a tenant not on the `shared` tier, and a dedicated
    /// database of a tenant not on the `dedicated` tier.
    fn remove_orphans(&self, names: &[String]) -> Result<()> {
        let tiers: HashMap<String, Tier> = self
            .tenants()?
            .into_iter()
            .map(|record| (record.id.to_string(), record.tier))
            .collect();
        let on_tier = |tenant: &str, tier: Tier| tiers.get(tenant) == Some(&tier);

        for name in names {
            let Some(tenant) = name.strip_prefix(TENANT_CF_PREFIX) else {
                continue;
            };
            if !on_tier(tenant, Tier::Cf) {
                tracing::warn!(tenant, "dropping a column family that no tenant on the cf tier owns");
                self.db
                    .drop_cf(name)
                    .map_err(|e| StorageError::rocks(format!("failed to drop column family {name}"), e))?;
            }
        }

        for tenant in self.shared_tenants()? {
            if !on_tier(&tenant, Tier::Shared) {
                tracing::warn!(tenant, "removing shared rows that no tenant on the shared tier owns");
                let space = self.shared_space(&tenant);
                remove_shared_rows(&space)?;
            }
        }

        // SST files of a migration that was interrupted: its tenant stayed on the old tier.
        match std::fs::remove_dir_all(&self.staging_dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(StorageError::io(&self.staging_dir, err)),
            _ => {}
        }

        let entries = match std::fs::read_dir(&self.dedicated_root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(StorageError::io(&self.dedicated_root, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&self.dedicated_root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !on_tier(&name, Tier::Dedicated) {
                tracing::warn!(tenant = %name, "removing a dedicated database that no tenant on the dedicated tier owns");
                std::fs::remove_dir_all(entry.path()).map_err(|e| StorageError::io(&entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// Lists the tenant ids found in the `shared` column family, each once.
    fn shared_tenants(&self) -> Result<Vec<String>> {
        let cf = self.db.cf_handle(SHARED_CF).expect("the shared column family is created at open");
        let mut tenants = Vec::new();
        let mut iter = self.db.raw_iterator_cf(&cf);
        iter.seek_to_first();
        while let Some(key) = iter.key() {
            let Some(tenant) = keys::tenant_of_shared_key(key) else {
                return Err(StorageError::Decode {
                    what: "shared key",
                    reason: "the key does not start with a tenant id".into(),
                });
            };
            let tenant = tenant.to_owned();
            // Skip the rest of this tenant's rows.
            match keys::prefix_end(&keys::shared_tenant_prefix(&tenant)) {
                Some(next) => iter.seek(next),
                None => break,
            }
            tenants.push(tenant);
        }
        iter.status()
            .map_err(|e| StorageError::rocks("failed to scan the shared column family", e))?;
        Ok(tenants)
    }

    // ---- tenant registry ----

    /// Creates the tenant's key space on its tier, then registers the tenant and its first
    /// API key in one durable write.
    pub async fn create_tenant(&self, record: &TenantRecord, first_key: &ApiKeyRecord) -> Result<()> {
        let _lifecycle = self.lifecycle_lock.lock().await;
        if self.tenant(&record.id)?.is_some() {
            return Err(StorageError::TenantExists(record.id.to_string()));
        }

        let space = self.create_space(&record.id, record.tier)?;
        let mut ops = vec![sys_put(keys::sys_tenant(record.id.as_str()), codec::encode_tenant(record))];
        ops.extend(api_key_ops(first_key));
        self.committer.commit(ops).await?;

        self.placements
            .lock()
            .insert(record.id.clone(), Arc::new(Placement::new(record.id.clone(), space)));
        Ok(())
    }

    /// Replaces the registry entry of an existing tenant (name, quotas, status, features). The
    /// tier is kept as stored: only [`Storage::migrate_tenant`] changes it.
    pub async fn update_tenant(&self, record: &TenantRecord) -> Result<TenantRecord> {
        let _registry = self.registry_lock.lock().await;
        let Some(stored) = self.tenant(&record.id)? else {
            return Err(StorageError::TenantNotFound(record.id.to_string()));
        };
        let record = TenantRecord {
            tier: stored.tier,
            ..record.clone()
        };
        self.committer
            .commit(vec![sys_put(keys::sys_tenant(record.id.as_str()), codec::encode_tenant(&record))])
            .await?;
        Ok(record)
    }

    pub fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>> {
        self.sys_get(&keys::sys_tenant(id.as_str()))?
            .map(|bytes| codec::decode_tenant(&bytes))
            .transpose()
    }

    pub fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.sys_scan(keys::SYS_TENANT_PREFIX)?
            .into_iter()
            .map(|(_, value)| codec::decode_tenant(&value))
            .collect()
    }

    /// Deletes the tenant: its registry entry and API keys in one durable write, then its data:
    /// the column family is dropped, the dedicated database's directory removed, or the shared
    /// rows deleted with one range deletion and compacted away. A crash between the two steps
    /// leaves data that the next [`Storage::open`] removes.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        let _lifecycle = self.lifecycle_lock.lock().await;
        let tenant = id.as_str();
        let Some(record) = self.tenant(id)? else {
            return Err(StorageError::TenantNotFound(tenant.to_owned()));
        };
        let placement = self.placement(&record)?;

        let keys_guard = self.api_keys_lock.lock().await;
        let mut ops = vec![
            sys_delete(keys::sys_tenant(tenant)),
            sys_delete(keys::sys_network_policy(tenant)),
        ];
        for key in self.api_keys(id)? {
            ops.extend(api_key_delete_ops(tenant, &key.id));
        }
        self.committer.commit(ops).await?;
        drop(keys_guard);
        self.tenant_audit_locks.lock().remove(id);
        self.placements.lock().remove(id);

        match placement.replace(None) {
            Some(space) => self.remove_space(id, record.tier, space).await,
            None => Ok(()),
        }
    }

    /// Moves the tenant to `to` while the server runs. The tenant's writes wait from the start
    /// of the copy until its store points at the new key space. Its reads go on from the old
    /// one, because nothing writes to it meanwhile, and other tenants do not wait. The old data
    /// is removed after the switch. A crash before the new tier is recorded leaves the tenant
    /// on the old tier, and a crash after it leaves the old data, which the next start removes.
    pub async fn migrate_tenant(&self, id: &TenantId, to: Tier) -> Result<MigrationReport> {
        let _lifecycle = self.lifecycle_lock.lock().await;
        let Some(record) = self.tenant(id)? else {
            return Err(StorageError::TenantNotFound(id.to_string()));
        };
        let from = record.tier;
        if from == to {
            return Err(StorageError::AlreadyOnTier(id.to_string()));
        }
        let placement = self.placement(&record)?;
        self.discard_leftovers(id, to)?;
        let target = self.create_space(id, to)?;

        let paused_at = Instant::now();
        let writes_paused = placement.pause_writes().await;
        let source = placement.space()?;
        let staging = self.staging_dir.join(id.as_str());
        let (source, target, copied) = run_blocking(move || {
            let copied = source.copy_into(&target, &staging);
            let _ = std::fs::remove_dir_all(&staging);
            (source, target, copied)
        })
        .await;
        let keys_copied = match copied {
            Ok(copied) => copied,
            Err(err) => {
                drop(writes_paused);
                self.remove_space(id, to, Arc::new(target)).await?;
                return Err(err);
            }
        };

        if let Err(err) = self.record_tier(id, to).await {
            tracing::error!(tenant = %id, error = %err, "failed to record the new tier; the tenant stays where it was");
            drop(writes_paused);
            self.remove_space(id, to, Arc::new(target)).await?;
            return Err(err);
        }
        placement.replace(Some(target));
        drop(writes_paused);
        let writes_paused = paused_at.elapsed();

        self.remove_space(id, from, source).await?;
        tracing::info!(tenant = %id, ?from, ?to, keys_copied, paused_ms = writes_paused.as_millis() as u64, "tenant migrated");
        Ok(MigrationReport {
            from,
            to,
            keys_copied,
            writes_paused,
        })
    }

    /// Rewrites the tenant record with `tier`, keeping every other field as stored.
    async fn record_tier(&self, id: &TenantId, tier: Tier) -> Result<()> {
        let _registry = self.registry_lock.lock().await;
        let mut current = self.tenant(id)?.ok_or_else(|| StorageError::TenantNotFound(id.to_string()))?;
        current.tier = tier;
        self.committer
            .commit(vec![sys_put(keys::sys_tenant(id.as_str()), codec::encode_tenant(&current))])
            .await
    }

    /// Removes what an interrupted migration to `tier` may have left there, so that a new copy
    /// does not mix with keys the tenant has deleted since.
    fn discard_leftovers(&self, id: &TenantId, tier: Tier) -> Result<()> {
        let tenant = id.as_str();
        match tier {
            Tier::Cf => {
                let cf_name = keys::tenant_cf_name(tenant);
                if self.db.cf_handle(&cf_name).is_some() {
                    self.db
                        .drop_cf(&cf_name)
                        .map_err(|e| StorageError::rocks(format!("failed to drop column family {cf_name}"), e))?;
                }
                Ok(())
            }
            Tier::Shared => remove_shared_rows(&self.shared_space(tenant)),
            Tier::Dedicated => {
                let dir = self.dedicated_dir(tenant);
                match std::fs::remove_dir_all(&dir) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(&dir, err)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Returns the store bound to `id`, or `None` when the tenant does not exist.
    pub fn tenant_store(self: &Arc<Self>, id: &TenantId) -> Result<Option<TenantStore>> {
        let Some(record) = self.tenant(id)? else {
            return Ok(None);
        };
        let placement = self.placement(&record)?;
        let append_lock = self.tenant_audit_locks.lock().entry(id.clone()).or_default().clone();
        let audit = AuditLog::new(placement.clone(), TenantKeys.audit_keys(), append_lock);
        Ok(Some(TenantStore::new(placement, id.clone(), audit)))
    }

    /// Returns whether the tenant's column family exists; used by tests and by `readyz`.
    pub fn has_column_family(&self, tenant: &str) -> bool {
        self.db.cf_handle(&keys::tenant_cf_name(tenant)).is_some()
    }

    /// Returns the directory of the tenant's database on the `dedicated` tier.
    pub fn dedicated_dir(&self, tenant: &str) -> PathBuf {
        self.dedicated_root.join(tenant)
    }

    /// Returns whether any row of the tenant is in the `shared` column family; used by tests.
    pub fn has_shared_rows(&self, tenant: &str) -> Result<bool> {
        let mut found = false;
        self.shared_space(tenant).scan(&[], None, false, |_, _| {
            found = true;
            Ok(false)
        })?;
        Ok(found)
    }

    // ---- key spaces of the tiers ----

    /// Returns the tenant's placement, opened from its record on first use.
    fn placement(&self, record: &TenantRecord) -> Result<Arc<Placement>> {
        let mut placements = self.placements.lock();
        if let Some(placement) = placements.get(&record.id) {
            return Ok(placement.clone());
        }
        let space = self.open_space(&record.id, record.tier)?;
        let placement = Arc::new(Placement::new(record.id.clone(), space));
        placements.insert(record.id.clone(), placement.clone());
        Ok(placement)
    }

    /// Creates the tenant's key space on `tier`; an existing one is reused.
    fn create_space(&self, id: &TenantId, tier: Tier) -> Result<KeySpace> {
        if tier == Tier::Cf {
            let cf_name = keys::tenant_cf_name(id.as_str());
            if self.db.cf_handle(&cf_name).is_none() {
                self.db.create_cf(&cf_name, &self.cf_options).map_err(|e| {
                    StorageError::rocks(format!("failed to create column family for tenant {id}"), e)
                })?;
            }
        }
        self.open_space(id, tier)
    }

    fn open_space(&self, id: &TenantId, tier: Tier) -> Result<KeySpace> {
        let tenant = id.as_str();
        Ok(match tier {
            Tier::Shared => self.shared_space(tenant),
            Tier::Cf => KeySpace::new(
                self.db.clone(),
                self.committer.clone(),
                keys::tenant_cf_name(tenant).into(),
                Vec::new(),
            ),
            Tier::Dedicated => {
                let path = self.dedicated_dir(tenant);
                let mut options = self.dedicated_options.clone();
                options.set_compression_type(DBCompressionType::Lz4);
                let db = Db::open_cf(&options, &path, [DEDICATED_CF]).map_err(|e| {
                    StorageError::rocks(format!("failed to open the dedicated database at {}", path.display()), e)
                })?;
                let db = Arc::new(db);
                let committer = Committer::start(db.clone(), self.durability);
                KeySpace::new(db, committer, DEDICATED_CF.into(), Vec::new())
            }
        })
    }

    fn shared_space(&self, tenant: &str) -> KeySpace {
        KeySpace::new(
            self.db.clone(),
            self.committer.clone(),
            SHARED_CF.into(),
            keys::shared_tenant_prefix(tenant),
        )
    }

    /// Removes a key space's data once the reads that still use it finished. When a read uses
    /// it longer than [`READER_PATIENCE`], the data stays for the next start to remove.
    async fn remove_space(&self, id: &TenantId, tier: Tier, space: Arc<KeySpace>) -> Result<()> {
        let dedicated_dir = self.dedicated_dir(id.as_str());
        let tenant = id.to_string();
        run_blocking(move || {
            let Some(space) = wait_until_unused(space, READER_PATIENCE) else {
                tracing::warn!(tenant, ?tier, "old data still in use; the next start removes it");
                return Ok(());
            };
            match tier {
                Tier::Cf => space
                    .db()
                    .drop_cf(space.cf_name())
                    .map_err(|e| StorageError::rocks(format!("failed to drop column family of tenant {tenant}"), e)),
                Tier::Shared => remove_shared_rows(&space),
                Tier::Dedicated => {
                    // Dropping the key space joins its commit thread and closes the database.
                    drop(space);
                    std::fs::remove_dir_all(&dedicated_dir).map_err(|e| StorageError::io(&dedicated_dir, e))
                }
            }
        })
        .await
    }

    /// Syncs the write-ahead log to disk.
    pub fn sync_wal(&self) -> Result<()> {
        self.db
            .flush_wal(true)
            .map_err(|e| StorageError::rocks("failed to sync the WAL", e))
    }

    // ---- network policies ----

    /// Returns the tenant's network policy, or `None` when none was set.
    pub fn network_policy(&self, id: &TenantId) -> Result<Option<NetworkPolicyRecord>> {
        self.sys_get(&keys::sys_network_policy(id.as_str()))?
            .map(|bytes| codec::decode("network policy record", &bytes))
            .transpose()
    }

    /// Stores the tenant's network policy. It is deleted together with the tenant.
    pub async fn set_network_policy(&self, id: &TenantId, record: &NetworkPolicyRecord) -> Result<()> {
        if self.tenant(id)?.is_none() {
            return Err(StorageError::TenantNotFound(id.to_string()));
        }
        self.committer
            .commit(vec![sys_put(keys::sys_network_policy(id.as_str()), codec::encode(record))])
            .await
    }

    // ---- platform audit log ----

    /// Appends to the platform audit log and returns the entry once it is durable.
    pub async fn append_platform_audit(&self, event: AuditEvent) -> Result<AuditEntry> {
        self.platform_audit.append(event).await
    }

    pub fn platform_audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        self.platform_audit.read(query)
    }

    pub fn platform_audit_head(&self) -> Result<Option<AuditHead>> {
        self.platform_audit.head()
    }

    /// Walks the platform audit log's hash chain.
    pub fn verify_platform_audit(&self) -> Result<ChainStatus> {
        self.platform_audit.verify()
    }

    // ---- API keys ----

    pub async fn put_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let _guard = self.api_keys_lock.lock().await;
        self.committer.commit(api_key_ops(key).collect()).await
    }

    pub fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.sys_get(&keys::sys_key(key_id))?
            .map(|bytes| codec::decode_api_key(&bytes))
            .transpose()
    }

    pub fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        let prefix = keys::sys_tenant_key_index_prefix(tenant.as_str());
        let mut records = Vec::new();
        for (key, _) in self.sys_scan(&prefix)? {
            let key_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(record) = self.api_key(&key_id)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Returns the stored time of the key's last use, in ms since the Unix epoch, or `None`
    /// when no use was stored.
    pub fn api_key_last_used(&self, key_id: &str) -> Result<Option<u64>> {
        self.sys_get(&keys::sys_key_last_used(key_id))?
            .map(|bytes| codec::decode("API key last use", &bytes))
            .transpose()
    }

    /// Stores `used_at_ms` as the key's last use, unless a later use is stored already.
    /// Returns `false`, and stores nothing, when the key no longer exists, so that a use
    /// recorded while the key is revoked leaves nothing behind.
    pub async fn record_api_key_use(&self, key_id: &str, used_at_ms: u64) -> Result<bool> {
        let _guard = self.api_keys_lock.lock().await;
        if self.api_key(key_id)?.is_none() {
            return Ok(false);
        }
        if self.api_key_last_used(key_id)?.is_some_and(|stored| stored >= used_at_ms) {
            return Ok(true);
        }
        let op = sys_put(keys::sys_key_last_used(key_id), codec::encode(&used_at_ms));
        self.committer.commit(vec![op]).await?;
        Ok(true)
    }

    /// Rotates the key `key_id` of `tenant`: stores `replacement` and gives the old key
    /// `expires_at_ms`, in one write. Returns the old key as it is stored now.
    ///
    /// Fails with [`StorageError::ApiKeyNotFound`] when `tenant` has no such key, and with
    /// [`StorageError::ApiKeyExpiring`] when the key already has an expiry.
    pub async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        replacement: &ApiKeyRecord,
        expires_at_ms: u64,
    ) -> Result<ApiKeyRecord> {
        assert_eq!(&replacement.tenant, tenant, "a key is replaced by a key of the same tenant");
        let _guard = self.api_keys_lock.lock().await;
        let mut old = self
            .api_key(key_id)?
            .filter(|key| &key.tenant == tenant)
            .ok_or_else(|| StorageError::ApiKeyNotFound(key_id.to_owned()))?;
        if let Some(expires_at_ms) = old.expires_at_ms {
            return Err(StorageError::ApiKeyExpiring {
                key_id: key_id.to_owned(),
                expires_at_ms,
            });
        }

        old.expires_at_ms = Some(expires_at_ms);
        let mut ops = vec![sys_put(keys::sys_key(&old.id), codec::encode_api_key(&old))];
        ops.extend(api_key_ops(replacement));
        self.committer.commit(ops).await?;
        Ok(old)
    }

    /// Deletes the key `key_id` of `tenant` with its index entry and its last use. Returns
    /// `false` when `tenant` has no such key.
    pub async fn delete_api_key(&self, tenant: &TenantId, key_id: &str) -> Result<bool> {
        let _guard = self.api_keys_lock.lock().await;
        let owned = self.api_key(key_id)?.is_some_and(|key| &key.tenant == tenant);
        if !owned {
            return Ok(false);
        }
        self.committer.commit(api_key_delete_ops(tenant.as_str(), key_id).collect()).await?;
        Ok(true)
    }

    // ---- helpers on the sys column family ----

    fn sys_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.db.cf_handle(SYS_CF).expect("the sys column family is created at open");
        self.db
            .get_cf(&cf, key)
            .map_err(|e| StorageError::rocks("failed to read the tenant registry", e))
    }

    fn sys_scan(&self, prefix: &[u8]) -> Result<Vec<(Box<[u8]>, Box<[u8]>)>> {
        let cf = self.db.cf_handle(SYS_CF).expect("the sys column family is created at open");
        let mut read_options = ReadOptions::default();
        if let Some(end) = keys::prefix_end(prefix) {
            read_options.set_iterate_upper_bound(end);
        }
        self.db
            .iterator_cf_opt(&cf, read_options, IteratorMode::From(prefix, Direction::Forward))
            .map(|item| item.map_err(|e| StorageError::rocks("failed to scan the tenant registry", e)))
            .collect()
    }
}

/// Deletes a shared tenant's rows with one range tombstone and compacts the range, so that the
/// bytes leave the SST files too.
fn remove_shared_rows(space: &KeySpace) -> Result<()> {
    let start = space.prefix().to_vec();
    let end = keys::prefix_end(&start).expect("a tenant prefix is never all 0xFF");
    let cf = space
        .db()
        .cf_handle(space.cf_name())
        .expect("the shared column family is created at open");

    let mut batch = WriteBatch::default();
    batch.delete_range_cf(&cf, &start, &end);
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    space
        .db()
        .write_opt(batch, &synced)
        .map_err(|e| StorageError::rocks("failed to delete a tenant's shared rows", e))?;
    space.db().compact_range_cf(&cf, Some(&start), Some(&end));
    Ok(())
}

/// Runs `work` on its own thread and waits for it without blocking the caller's thread, which
/// may be serving other tenants.
async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bulkhead-tier".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .expect("failed to spawn a storage thread");
    rx.await.expect("the storage thread does not panic")
}

/// Opens the key space of the platform audit log (`tenant: None`) or of a tenant's data,
/// read-only, for offline tools such as `bulkhead audit verify`.
pub(crate) fn open_read_only(data_dir: &Path, tenant: Option<&TenantId>) -> Result<KeySpace> {
    let path = data_dir.join(MAIN_DB_DIR);
    let options = Options::default();
    let names = Db::list_cf(&options, &path)
        .map_err(|e| StorageError::rocks(format!("failed to list column families in {}", path.display()), e))?;
    let db = Db::open_cf_for_read_only(&options, &path, &names, false)
        .map_err(|e| StorageError::rocks(format!("failed to open {} read-only", path.display()), e))?;
    let db = Arc::new(db);
    let read_only = |db: Arc<Db>, cf: &str, prefix: Vec<u8>| {
        let committer = Committer::start(db.clone(), Durability::Wal);
        KeySpace::new(db, committer, cf.into(), prefix)
    };

    let Some(tenant) = tenant else {
        return Ok(read_only(db, SYS_CF, Vec::new()));
    };
    let sys = db.cf_handle(SYS_CF).ok_or_else(|| StorageError::TenantNotFound(tenant.to_string()))?;
    let record: TenantRecord = db
        .get_cf(&sys, keys::sys_tenant(tenant.as_str()))
        .map_err(|e| StorageError::rocks("failed to read the tenant registry", e))?
        .map(|bytes| codec::decode_tenant(&bytes))
        .transpose()?
        .ok_or_else(|| StorageError::TenantNotFound(tenant.to_string()))?;
    drop(sys);

    Ok(match record.tier {
        Tier::Cf => read_only(db, &keys::tenant_cf_name(tenant.as_str()), Vec::new()),
        Tier::Shared => read_only(db, SHARED_CF, keys::shared_tenant_prefix(tenant.as_str())),
        Tier::Dedicated => {
            let path = data_dir.join(DEDICATED_DIR).join(tenant.as_str());
            let dedicated = Db::open_cf_for_read_only(&options, &path, [DEDICATED_CF], false)
                .map_err(|e| StorageError::rocks(format!("failed to open {} read-only", path.display()), e))?;
            read_only(Arc::new(dedicated), DEDICATED_CF, Vec::new())
        }
    })
}

/// Returns RocksDB's default environment with its flush and compaction threads at the lowest
/// CPU priority (nice 19). That work is charged to no tenant, so it must not delay the
/// threads that serve every tenant's sends. The setting is process-wide, as the default
/// environment is, and the options that use it keep it alive.
fn background_env() -> Result<Env> {
    let mut env = Env::new().map_err(|e| StorageError::rocks("create the RocksDB environment", e))?;
    env.lower_thread_pool_cpu_priority();
    env.lower_high_priority_thread_pool_cpu_priority();
    Ok(env)
}

fn column_family_options(options: &StorageOptions) -> Options {
    let mut cf_options = Options::default();
    cf_options.set_write_buffer_size(options.cf_write_buffer_bytes);
    cf_options.set_compression_type(DBCompressionType::Lz4);
    cf_options
}

fn sys_put(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        cf: SYS_CF.into(),
        key,
        value,
    }
}

fn sys_delete(key: Vec<u8>) -> Op {
    Op::Delete {
        cf: SYS_CF.into(),
        key,
    }
}

fn api_key_ops(key: &ApiKeyRecord) -> impl Iterator<Item = Op> {
    [
        sys_put(keys::sys_key(&key.id), codec::encode_api_key(key)),
        sys_put(keys::sys_tenant_key_index(key.tenant.as_str(), &key.id), Vec::new()),
    ]
    .into_iter()
}

fn api_key_delete_ops(tenant: &str, key_id: &str) -> impl Iterator<Item = Op> {
    [
        sys_delete(keys::sys_key(key_id)),
        sys_delete(keys::sys_tenant_key_index(tenant, key_id)),
        sys_delete(keys::sys_key_last_used(key_id)),
    ]
    .into_iter()
}
