//! History reads: one page of 50 or 100 messages from a conversation of 10,000, through
//! `TenantStore::messages` on a real RocksDB in a temporary directory.
//!
//! Three positions are measured. `newest` is a `history` without `before`, which a client
//! requests when it opens a conversation. `before_middle` scrolls back from the middle with
//! `before`, and `after_middle` reads forward from it, as `sync` or `history` with `after` do.
//!
//! Run with `cargo bench -p bulkhead-benches --bench history`.

mod support;

use bulkhead_storage::{ConvId, Durability};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{message, open_tenant};

/// Messages in the conversation that the pages are read from.
const CONVERSATION_MESSAGES: u64 = 10_000;

/// Messages written per commit while the conversation is filled.
const FILL_BATCH: u64 = 1_000;

fn history_page(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Reads do not depend on the durability setting; `wal` only makes the fill faster.
    let (_storage, store) = open_tenant(&runtime, &dir, Durability::Wal);
    let conv = ConvId::parse("general").unwrap();

    for first in (1..=CONVERSATION_MESSAGES).step_by(FILL_BATCH as usize) {
        let mut batch = store.batch();
        for seq in first..first + FILL_BATCH {
            batch.put_message(&conv, &message(seq));
        }
        runtime.block_on(store.commit(batch)).expect("fill the conversation");
    }

    let middle = CONVERSATION_MESSAGES / 2;
    let mut group = c.benchmark_group("history_page");
    for limit in [50usize, 100] {
        group.throughput(Throughput::Elements(limit as u64));

        group.bench_with_input(BenchmarkId::new("newest", limit), &limit, |b, &limit| {
            b.iter(|| {
                let (items, more) = store.messages(&conv, 0, u64::MAX, limit, true).unwrap();
                assert_eq!(items.len(), limit);
                assert!(more);
                items
            })
        });
        group.bench_with_input(BenchmarkId::new("before_middle", limit), &limit, |b, &limit| {
            b.iter(|| {
                let (items, _) = store.messages(&conv, 0, middle, limit, true).unwrap();
                assert_eq!(items.last().map(|m| m.seq), Some(middle - 1));
                items
            })
        });
        group.bench_with_input(BenchmarkId::new("after_middle", limit), &limit, |b, &limit| {
            b.iter(|| {
                let (items, _) = store.messages(&conv, middle, u64::MAX, limit, false).unwrap();
                assert_eq!(items.first().map(|m| m.seq), Some(middle + 1));
                items
            })
        });
    }
    group.finish();
}

criterion_group!(benches, history_page);
criterion_main!(benches);
