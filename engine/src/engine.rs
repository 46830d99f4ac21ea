//! The engine: the registry of live tenants and the worker arbiters they run on.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use actix_rt::{Arbiter, ArbiterHandle};
use bulkhead_storage::{ApiKeyRecord, MigrationReport, Storage, StorageError, TenantId, TenantRecord, Tier};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::{
    error::{EngineError, Result},
    metrics::{self, TenantSnapshot},
    quota::{Clock, MonotonicClock},
    scheduler::SchedulerHandle,
    sessions::CloseReason,
    tenant::TenantHandle,
};

/// Engine settings. Defaults are documented in `bulkhead.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Worker arbiters that run conversation actors; 0 means one per CPU core.
    pub workers: usize,
    /// Largest group conversation. Fan-out cost grows with it; 1,000 keeps a delivery to every
    /// member within one scheduler turn on a small server, and may be raised.
    pub max_group_members: usize,
    /// Undelivered bytes after which a session is closed as a slow consumer (code 4008).
    /// 4 MiB is several seconds of a busy group chat on a mobile link.
    pub max_session_pending_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            max_group_members: 1000,
            max_session_pending_bytes: 4 << 20,
        }
    }
}

pub struct Engine {
    storage: Arc<Storage>,
    config: EngineConfig,
    workers: Arc<[ArbiterHandle]>,
    schedulers: Arc<[SchedulerHandle]>,
    clock: Arc<dyn Clock>,
    arbiters: Mutex<Vec<Arbiter>>,
    tenants: RwLock<HashMap<TenantId, TenantHandle>>,
    shutting_down: AtomicBool,
}

impl Engine {
    /// Starts the worker arbiters. Must be called inside a running actix system.
    pub fn start(storage: Arc<Storage>, config: EngineConfig) -> Arc<Self> {
        let count = match config.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let arbiters: Vec<Arbiter> = (0..count).map(|_| Arbiter::new()).collect();
        let workers: Arc<[ArbiterHandle]> = arbiters.iter().map(|a| a.handle()).collect();
        let schedulers: Arc<[SchedulerHandle]> = workers.iter().map(SchedulerHandle::start).collect();
        tracing::info!(workers = count, "engine started");

        Arc::new(Engine {
            storage,
            config,
            workers,
            schedulers,
            clock: Arc::new(MonotonicClock::new()),
            arbiters: Mutex::new(arbiters),
            tenants: RwLock::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Returns the database, for platform-level reads (the tenant registry, API keys).
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Returns the live tenant, starting its supervisor tree on first use.
    pub fn tenant(&self, id: &TenantId) -> Result<Option<TenantHandle>> {
        if let Some(handle) = self.tenants.read().get(id) {
            return Ok(Some(handle.clone()));
        }

        let mut tenants = self.tenants.write();
        if let Some(handle) = tenants.get(id) {
            return Ok(Some(handle.clone()));
        }
        let Some(record) = self.storage.tenant(id)? else {
            return Ok(None);
        };
        let Some(store) = self.storage.tenant_store(id)? else {
            return Ok(None);
        };
        let handle = TenantHandle::start(
            store,
            record,
            self.workers.clone(),
            self.schedulers.clone(),
            self.clock.clone(),
            self.config.clone(),
        );
        tenants.insert(id.clone(), handle.clone());
        Ok(Some(handle))
    }

    /// Starts the supervisor tree of every registered tenant; returns how many there are.
    pub fn start_all_tenants(&self) -> Result<usize> {
        let records = self.storage.tenants()?;
        for record in &records {
            self.tenant(&record.id)?;
        }
        Ok(records.len())
    }

    pub async fn create_tenant(&self, record: TenantRecord, first_key: ApiKeyRecord) -> Result<TenantHandle> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(EngineError::ShuttingDown);
        }
        self.storage.create_tenant(&record, &first_key).await.map_err(|err| match err {
            StorageError::TenantExists(id) => EngineError::Conflict(format!("tenant {id}")),
            StorageError::Unsupported(message) => EngineError::InvalidRequest(message),
            other => other.into(),
        })?;
        let id = record.id.clone();
        self.tenant(&id)?
            .ok_or_else(|| EngineError::NotFound(format!("tenant {id}")))
    }

    /// Stores the new record and applies it to the live tenant (quotas, status, features).
    pub async fn update_tenant(&self, record: TenantRecord) -> Result<()> {
        let stored = self.storage.update_tenant(&record).await?;
        if let Some(handle) = self.tenant(&stored.id)? {
            handle.set_record(stored);
        }
        Ok(())
    }

    /// Moves the tenant's data to another tier while it keeps running; its writes wait during
    /// the copy (see `Storage::migrate_tenant`).
    pub async fn migrate_tenant(&self, id: &TenantId, to: Tier) -> Result<MigrationReport> {
        let report = self.storage.migrate_tenant(id, to).await.map_err(|err| match err {
            StorageError::TenantNotFound(id) => EngineError::NotFound(format!("tenant {id}")),
            StorageError::AlreadyOnTier(id) => EngineError::Conflict(format!("tenant {id} is already on that tier")),
            other => other.into(),
        })?;
        if let Some(handle) = self.tenant(id)? {
            let mut record = handle.record();
            record.tier = report.to;
            handle.set_record(record);
        }
        Ok(report)
    }

    /// Closes the tenant's sessions, stops its actors and deletes its data.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        if let Some(handle) = self.tenants.write().remove(id) {
            handle.close_sessions(CloseReason::TenantDeleted);
            handle.release_actors();
        }
        self.storage.delete_tenant(id).await.map_err(|err| match err {
            StorageError::TenantNotFound(id) => EngineError::NotFound(format!("tenant {id}")),
            other => other.into(),
        })?;
        // TODO: remove the tenant's metric series once the exporter offers removal.
        Ok(())
    }

    /// Stops taking new work and tells every session to close with "going away". Sessions
    /// finish the requests they are waiting on before they close.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for handle in self.tenants.read().values() {
            handle.close_sessions(CloseReason::ServerShutdown);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Appends the tenant series of the metric contract for every live tenant to `out`. A
    /// deleted tenant is no longer live, so its series disappear with it.
    pub fn render_tenant_metrics(&self, out: &mut String) {
        let mut handles: Vec<TenantHandle> = self.tenants.read().values().cloned().collect();
        handles.sort_by(|a, b| a.store().tenant().cmp(b.store().tenant()));
        let ids: Vec<String> = handles.iter().map(|h| h.store().tenant().to_string()).collect();
        let snapshots: Vec<TenantSnapshot<'_>> = handles
            .iter()
            .zip(&ids)
            .map(|(handle, id)| handle.metrics_snapshot(id))
            .collect();
        metrics::render(&snapshots, out);
    }

    /// Open sessions across all live tenants.
    pub fn open_sessions(&self) -> usize {
        self.tenants.read().values().map(|t| t.connection_count()).sum()
    }

    /// Stops the worker arbiters and waits for their threads to end, which drops every actor
    /// and with it every tenant store the actors held. Call after every session has closed.
    pub fn stop_workers(&self) {
        self.tenants.write().clear();
        let arbiters: Vec<Arbiter> = self.arbiters.lock().drain(..).collect();
        for arbiter in &arbiters {
            arbiter.stop();
        }
        for arbiter in arbiters {
            if arbiter.join().is_err() {
                tracing::error!("a worker thread panicked while stopping");
            }
        }
    }
}
