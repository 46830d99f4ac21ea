//! Cost of the fair scheduler's bookkeeping per message: one push, one pop and one charge
//! on a queue shared by many tenants.
//!
//! Run with `cargo bench -p bulkhead-benches --bench scheduler`.

use std::time::Duration;

use bulkhead_engine::quota::fair_queue::FairQueue;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn push_pop_charge(c: &mut Criterion) {
    let mut group = c.benchmark_group("fair_queue");
    group.throughput(Throughput::Elements(1));

    for tenants in [1u32, 100, 10_000] {
        let mut queue: FairQueue<u32, u64> = FairQueue::new(Duration::from_micros(500));
        // Keep every tenant busy with a few queued items, as under load.
        for tenant in 0..tenants {
            for item in 0..4 {
                queue.push(tenant, 1, item);
            }
        }
        let mut next_tenant = 0;

        group.bench_with_input(BenchmarkId::new("tenants", tenants), &tenants, |b, &tenants| {
            b.iter(|| {
                queue.push(next_tenant, 1, 0);
                next_tenant = (next_tenant + 1) % tenants;
                let (tenant, item) = queue.pop(|_| true).expect("work is queued");
                queue.charge(&tenant, Duration::from_micros(50));
                std::hint::black_box(item)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, push_pop_charge);
criterion_main!(benches);
