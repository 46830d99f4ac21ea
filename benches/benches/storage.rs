//! Storage benchmarks: appending messages through the group-commit path at both durability
//! settings, and the record codec.
//!
//! Run with `cargo bench -p bulkhead-benches`. The fsync numbers depend on the disk more than
//! on the code; compare them only with runs on the same machine.

use std::sync::Arc;

use bulkhead_storage::{
    codec, ApiKeyRecord, ConvId, Durability, KeyRole, MessageRecord, QuotaLimits, Storage, StorageOptions,
    TenantId, TenantRecord, TenantStatus, TenantStore, Tier,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Body size of a benchmark message, typical of a short chat line with some metadata.
const BODY_BYTES: usize = 256;

fn message(seq: u64) -> MessageRecord {
    let body_json = format!("{{\"text\":\"{}\"}}", "x".repeat(BODY_BYTES - 11));
    MessageRecord::new(seq, "alice".into(), format!("bench-{seq}"), 1_700_000_000_000 + seq, body_json)
}

fn open_tenant(runtime: &tokio::runtime::Runtime, dir: &tempfile::TempDir, durability: Durability) -> (Arc<Storage>, TenantStore) {
    let options = StorageOptions {
        durability,
        ..StorageOptions::default()
    };
    let storage = Storage::open(dir.path(), &options).expect("open storage");
    let id = TenantId::parse("bench").unwrap();
    let record = TenantRecord {
        id: id.clone(),
        name: "bench".into(),
        tier: Tier::Cf,
        status: TenantStatus::Active,
        quotas: QuotaLimits {
            cpu_millicores: 1000,
            memory_bytes: 1 << 30,
            ingress_bytes_per_sec: 1 << 30,
            egress_bytes_per_sec: 1 << 30,
            max_connections: 1000,
            max_message_bytes: 1 << 16,
            max_storage_bytes: 1 << 40,
            weight: 1,
        },
        features: vec![],
        signing_secret: "s".into(),
        created_at_ms: 0,
    };
    let key = ApiKeyRecord {
        id: "k".into(),
        tenant: id.clone(),
        role: KeyRole::Admin,
        name: None,
        secret_sha256: [0; 32],
        created_at_ms: 0,
    };
    runtime.block_on(storage.create_tenant(&record, &key)).expect("create tenant");
    let store = storage.tenant_store(&id).unwrap().expect("tenant store");
    (storage, store)
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let conv = ConvId::parse("general").unwrap();
    let mut group = c.benchmark_group("storage_append");

    for durability in [Durability::Fsync, Durability::Wal] {
        for batch_size in [1u64, 64, 1024] {
            let dir = tempfile::tempdir().unwrap();
            let (_storage, store) = open_tenant(&runtime, &dir, durability);
            let mut next_seq = 1;

            group.throughput(Throughput::Elements(batch_size));
            let name = format!("{durability:?}").to_lowercase();
            group.bench_with_input(BenchmarkId::new(name, batch_size), &batch_size, |b, &batch_size| {
                b.iter(|| {
                    let mut batch = store.batch();
                    for _ in 0..batch_size {
                        batch.put_message(&conv, &message(next_seq));
                        next_seq += 1;
                    }
                    runtime.block_on(store.commit(batch)).unwrap();
                })
            });
        }
    }
    group.finish();
}

fn codec_roundtrip(c: &mut Criterion) {
    let record = message(42);
    let bytes = codec::encode_message(&record);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode_message", |b| b.iter(|| codec::encode_message(std::hint::black_box(&record))));
    group.bench_function("decode_message", |b| {
        b.iter(|| codec::decode_message(std::hint::black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, append, codec_roundtrip);
criterion_main!(benches);
