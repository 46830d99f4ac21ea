//! Opening the database, the tenant registry, API keys and column family lifecycle.

use std::{collections::HashMap, path::Path, sync::Arc};

use rocksdb::{
    ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteBufferManager,
};
use serde::{Deserialize, Serialize};

use crate::{
    audit::{AuditEntry, AuditEvent, AuditHead, AuditLog, AuditPage, AuditQuery, ChainStatus},
    codec,
    committer::{Committer, Db, Durability, Op},
    keys::{self, TenantKeys, SYS_CF, TENANT_CF_PREFIX},
    ApiKeyRecord, NetworkPolicyRecord, Result, StorageError, TenantId, TenantRecord, TenantStore, Tier,
};

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

/// The opened database: the tenant registry plus one column family per tenant.
pub struct Storage {
    // Fields drop in order: `committer` goes after `db` because dropping the last committer
    // handle joins the commit thread, which holds the last reference to the database.
    db: Arc<Db>,
    committer: Committer,
    cf_options: Options,
    platform_audit: AuditLog,
    /// Append locks of the tenant audit logs, created on first use.
    tenant_audit_locks: parking_lot::Mutex<HashMap<TenantId, AppendLock>>,
    // Kept alive for as long as the database; RocksDB holds a reference through the options.
    _write_buffer_manager: WriteBufferManager,
}

impl Storage {
    /// Opens (or creates) the database in `path`. Column families of tenants whose registry
    /// entry is missing are the remains of a deletion interrupted by a crash; they are dropped.
    pub fn open(path: &Path, options: &StorageOptions) -> Result<Arc<Self>> {
        let write_buffer_manager =
            WriteBufferManager::new_write_buffer_manager(options.write_buffer_manager_bytes, false);

        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_write_buffer_manager(&write_buffer_manager);
        db_options.set_max_total_wal_size(options.max_total_wal_size_bytes);
        db_options.set_compression_type(DBCompressionType::Lz4);

        let cf_options = column_family_options(options);

        let existing = match Db::list_cf(&db_options, path) {
            Ok(names) => names,
            // A new database has no column family list yet.
            Err(_) => Vec::new(),
        };
        let mut names: Vec<String> = existing;
        for required in ["default", SYS_CF] {
            if !names.iter().any(|n| n == required) {
                names.push(required.to_owned());
            }
        }
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options.clone()));

        let db = Db::open_cf_descriptors(&db_options, path, descriptors).map_err(|e| {
            let hint = if e.to_string().contains("LOCK") {
                " (is another bulkhead server using this data directory?)"
            } else {
                ""
            };
            StorageError::rocks(format!("failed to open database at {}{hint}", path.display()), e)
        })?;
        let db = Arc::new(db);
        let committer = Committer::start(db.clone(), options.durability);

        let platform_audit = AuditLog::new(
            db.clone(),
            committer.clone(),
            SYS_CF.into(),
            keys::platform_audit_keys(),
            AppendLock::default(),
        );
        let storage = Arc::new(Storage {
            db,
            committer,
            cf_options,
            platform_audit,
            tenant_audit_locks: parking_lot::Mutex::new(HashMap::new()),
            _write_buffer_manager: write_buffer_manager,
        });
        storage.drop_orphan_column_families(&names)?;
        Ok(storage)
    }

    fn drop_orphan_column_families(&self, names: &[String]) -> Result<()> {
        for name in names {
            let Some(tenant) = name.strip_prefix(TENANT_CF_PREFIX) else {
                continue;
            };
            if self.sys_get(&keys::sys_tenant(tenant))?.is_none() {
                tracing::warn!(tenant, "dropping the column family of a deleted tenant");
                self.db
                    .drop_cf(name)
                    .map_err(|e| StorageError::rocks(format!("failed to drop column family {name}"), e))?;
            }
        }
        Ok(())
    }

    // ---- tenant registry ----

    /// Creates the tenant's column family, then registers the tenant and its first API key in
    /// one durable write.
    pub async fn create_tenant(&self, record: &TenantRecord, first_key: &ApiKeyRecord) -> Result<()> {
        let tenant = record.id.as_str();
        if record.tier != Tier::Cf {
            // NOTE: the `shared` and `dedicated` tiers are stored in the tenant record but not
            // served yet; the key layout already carries a tenant prefix for `shared`.
            return Err(StorageError::Unsupported(format!(
                "tier {:?} is not available in this release; use \"cf\"",
                record.tier
            )));
        }
        if self.tenant(&record.id)?.is_some() {
            return Err(StorageError::TenantExists(tenant.to_owned()));
        }

        let cf_name = keys::tenant_cf_name(tenant);
        if self.db.cf_handle(&cf_name).is_none() {
            self.db
                .create_cf(&cf_name, &self.cf_options)
                .map_err(|e| StorageError::rocks(format!("failed to create column family for tenant {tenant}"), e))?;
        }

        let mut ops = vec![sys_put(keys::sys_tenant(tenant), codec::encode_tenant(record))];
        ops.extend(api_key_ops(first_key));
        self.committer.commit(ops).await
    }

    /// Replaces the registry entry of an existing tenant (name, quotas, status, features).
    pub async fn update_tenant(&self, record: &TenantRecord) -> Result<()> {
        if self.tenant(&record.id)?.is_none() {
            return Err(StorageError::TenantNotFound(record.id.to_string()));
        }
        self.committer
            .commit(vec![sys_put(keys::sys_tenant(record.id.as_str()), codec::encode_tenant(record))])
            .await
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

    /// Deletes the tenant: its registry entry and API keys in one durable write, then its column
    /// family, which erases all its data in constant time. A crash between the two steps leaves
    /// an orphan column family that the next [`Storage::open`] drops.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        let tenant = id.as_str();
        if self.tenant(id)?.is_none() {
            return Err(StorageError::TenantNotFound(tenant.to_owned()));
        }

        let mut ops = vec![
            sys_delete(keys::sys_tenant(tenant)),
            sys_delete(keys::sys_network_policy(tenant)),
        ];
        for key in self.api_keys(id)? {
            ops.push(sys_delete(keys::sys_key(&key.id)));
            ops.push(sys_delete(keys::sys_tenant_key_index(tenant, &key.id)));
        }
        self.committer.commit(ops).await?;
        self.tenant_audit_locks.lock().remove(id);

        let cf_name = keys::tenant_cf_name(tenant);
        self.db
            .drop_cf(&cf_name)
            .map_err(|e| StorageError::rocks(format!("failed to drop column family of tenant {tenant}"), e))
    }

    /// Returns the store bound to `id`, or `None` when the tenant does not exist.
    pub fn tenant_store(self: &Arc<Self>, id: &TenantId) -> Result<Option<TenantStore>> {
        if self.tenant(id)?.is_none() {
            return Ok(None);
        }
        let cf: Arc<str> = keys::tenant_cf_name(id.as_str()).into();
        let prefix = Vec::new();
        let append_lock = self.tenant_audit_locks.lock().entry(id.clone()).or_default().clone();
        let audit = AuditLog::new(
            self.db.clone(),
            self.committer.clone(),
            cf.clone(),
            TenantKeys::new(prefix.clone()).audit_keys(),
            append_lock,
        );
        Ok(Some(TenantStore::new(
            self.db.clone(),
            self.committer.clone(),
            cf,
            prefix,
            id.clone(),
            audit,
        )))
    }

    /// Returns whether the tenant's column family exists; used by tests and by `readyz`.
    pub fn has_column_family(&self, tenant: &str) -> bool {
        self.db.cf_handle(&keys::tenant_cf_name(tenant)).is_some()
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
        self.committer.commit(api_key_ops(key).collect()).await
    }

    pub fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.sys_get(&keys::sys_key(key_id))?
            .map(|bytes| codec::decode("api key record", &bytes))
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

    pub async fn delete_api_key(&self, tenant: &TenantId, key_id: &str) -> Result<()> {
        self.committer
            .commit(vec![
                sys_delete(keys::sys_key(key_id)),
                sys_delete(keys::sys_tenant_key_index(tenant.as_str(), key_id)),
            ])
            .await
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
        sys_put(keys::sys_key(&key.id), codec::encode(key)),
        sys_put(keys::sys_tenant_key_index(key.tenant.as_str(), &key.id), Vec::new()),
    ]
    .into_iter()
}
