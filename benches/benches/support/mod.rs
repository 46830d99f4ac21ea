//! Setup shared by the benchmarks: a tenant record with quotas that never throttle, and a
//! message of the benchmark size.

use std::sync::Arc;

use bulkhead_storage::{
    ApiKeyRecord, Durability, KeyRole, MessageRecord, QuotaLimits, Storage, StorageOptions, TenantId,
    TenantRecord, TenantStatus, TenantStore, Tier,
};

/// Body size of a benchmark message, typical of a short chat line with some metadata.
pub const BODY_BYTES: usize = 256;

/// Returns a message from alice with a body of [`BODY_BYTES`] bytes.
#[allow(dead_code)]
pub fn message(seq: u64) -> MessageRecord {
    MessageRecord::new(
        seq,
        "alice".into(),
        format!("bench-{seq}"),
        1_700_000_000_000 + seq,
        format!("{{\"text\":\"{}\"}}", "x".repeat(BODY_BYTES - 11)),
    )
}

/// Returns the tenant `bench` and its first API key. The quotas are far above what a
/// benchmark uses, so the scheduler and the token buckets never hold work back: the numbers
/// measure the code path, not a limit.
pub fn tenant_record() -> (TenantRecord, ApiKeyRecord) {
    let id = TenantId::parse("bench").expect("valid tenant id");
    let record = TenantRecord {
        id: id.clone(),
        name: "bench".into(),
        tier: Tier::Cf,
        status: TenantStatus::Active,
        quotas: QuotaLimits {
            cpu_millicores: 1_000_000,
            memory_bytes: 1 << 30,
            ingress_bytes_per_sec: 1 << 30,
            egress_bytes_per_sec: 1 << 30,
            max_connections: 1000,
            max_message_bytes: 1 << 16,
            max_storage_bytes: 1 << 40,
            weight: 1,
            rest_requests_per_sec: 1_000_000,
        },
        features: vec![],
        signing_secret: "s".into(),
        created_at_ms: 0,
    };
    let key = ApiKeyRecord {
        id: "k".into(),
        tenant: id,
        role: KeyRole::Admin,
        name: None,
        secret_sha256: [0; 32],
        created_at_ms: 0,
        expires_at_ms: None,
    };
    (record, key)
}

/// Opens a database in `dir` with the given durability and creates the tenant of
/// [`tenant_record`] in it.
#[allow(dead_code)]
pub fn open_tenant(
    runtime: &tokio::runtime::Runtime,
    dir: &tempfile::TempDir,
    durability: Durability,
) -> (Arc<Storage>, TenantStore) {
    let storage = open_storage(dir, durability);
    let (record, key) = tenant_record();
    runtime.block_on(storage.create_tenant(&record, &key)).expect("create tenant");
    let store = storage.tenant_store(&record.id).unwrap().expect("tenant store");
    (storage, store)
}

/// Opens an empty database in `dir` with the given durability and default tuning.
pub fn open_storage(dir: &tempfile::TempDir, durability: Durability) -> Arc<Storage> {
    let options = StorageOptions {
        durability,
        ..StorageOptions::default()
    };
    Storage::open(dir.path(), &options).expect("open storage")
}
