//! Builders shared by the storage tests: a database in a temp directory and tenant records.

#![allow(dead_code)]

use std::sync::Arc;

use bulkhead_storage::{
    ApiKeyRecord, ConvId, KeyRole, MessageRecord, QuotaLimits, Storage, StorageOptions, TenantId,
    TenantRecord, TenantStatus, TenantStore, Tier,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn open(dir: &tempfile::TempDir) -> Arc<Storage> {
    Storage::open(dir.path(), &StorageOptions::default()).expect("open storage")
}

pub fn tenant_record(id: &str) -> TenantRecord {
    TenantRecord {
        id: TenantId::parse(id).unwrap(),
        name: format!("Tenant {id}"),
        tier: Tier::Cf,
        status: TenantStatus::Active,
        quotas: QuotaLimits {
            cpu_millicores: 1000,
            memory_bytes: 64 << 20,
            ingress_bytes_per_sec: 1 << 20,
            egress_bytes_per_sec: 1 << 20,
            max_connections: 100,
            max_message_bytes: 16 << 10,
            max_storage_bytes: 1 << 30,
            weight: 1,
            rest_requests_per_sec: 1000,
        },
        features: vec![],
        signing_secret: "secret".into(),
        created_at_ms: 0,
    }
}

pub fn key_record(tenant: &str, key_id: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: key_id.into(),
        tenant: TenantId::parse(tenant).unwrap(),
        role: KeyRole::Admin,
        name: None,
        secret_sha256: [7; 32],
        created_at_ms: 0,
        expires_at_ms: None,
    }
}

pub async fn create_tenant(storage: &Arc<Storage>, id: &str) -> TenantStore {
    create_tenant_on(storage, id, Tier::Cf).await
}

pub async fn create_tenant_on(storage: &Arc<Storage>, id: &str, tier: Tier) -> TenantStore {
    let record = TenantRecord {
        tier,
        ..tenant_record(id)
    };
    storage
        .create_tenant(&record, &key_record(id, &format!("key-{id}")))
        .await
        .expect("create tenant");
    storage
        .tenant_store(&TenantId::parse(id).unwrap())
        .unwrap()
        .expect("tenant store")
}

pub fn message(seq: u64, client_msg_id: &str) -> MessageRecord {
    MessageRecord::new(seq, "alice".into(), client_msg_id.into(), 1, format!("{{\"n\":{seq}}}"))
}

pub async fn append(store: &TenantStore, conv: &ConvId, seqs: std::ops::RangeInclusive<u64>) {
    let mut batch = store.batch();
    for seq in seqs {
        batch.put_message(conv, &message(seq, &format!("m{seq}")));
    }
    store.commit(batch).await.expect("commit messages");
}
