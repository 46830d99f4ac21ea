//! Storage benchmarks: appending messages through the group-commit path at both durability
//! settings, and the record codec.
//!
//! Run with `cargo bench -p bulkhead-benches`. The fsync numbers depend on the disk more than
//! on the code; compare them only with runs on the same machine.

mod support;

use bulkhead_storage::{codec, ConvId, Durability};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{message, open_tenant};

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
