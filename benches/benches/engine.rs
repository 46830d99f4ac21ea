//! In-process send → delivery through the engine, without the network: a member sends into a
//! two-member group conversation and the other member's registered session receives the
//! `message` frame.
//!
//! Each iteration is timed from the send to the last delivered frame. `single` sends one
//! message and waits for its frame before the next. `pipelined` starts a batch of sends at
//! once and waits for all their frames, so the conversation actor commits them in groups.
//! Both run at the two durability settings on a real RocksDB in a temporary directory.
//!
//! Run with `cargo bench -p bulkhead-benches --bench engine`. The fsync numbers depend on the
//! disk; compare them only with runs on the same machine.

mod support;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use bulkhead_engine::{Engine, EngineConfig, Outbound, SendRequest, SessionGuard, TenantHandle};
use bulkhead_storage::{ConvId, ConversationKind, Durability, UserId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use support::{message, open_storage, tenant_record};
use tokio::sync::mpsc::UnboundedReceiver;

/// Sends started at once in the pipelined case: a burst of one busy client.
const PIPELINE_DEPTH: usize = 64;

/// A running engine with one tenant, a conversation of alice and bob, and a session of bob.
struct Fixture {
    engine: Arc<Engine>,
    tenant: TenantHandle,
    conv: ConvId,
    alice: UserId,
    bob_session: SessionGuard,
    bob_frames: UnboundedReceiver<Outbound>,
    body_json: String,
    next_id: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(durability: Durability) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let storage = open_storage(&dir, durability);
        let engine = Engine::start(storage, EngineConfig::default());
        let (record, key) = tenant_record();
        let tenant = engine.create_tenant(record, key).await.expect("create tenant");

        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        tenant.create_user(alice.clone(), None).await.expect("create alice");
        tenant.create_user(bob.clone(), None).await.expect("create bob");
        let conv = ConvId::parse("general").unwrap();
        tenant
            .create_conversation(conv.clone(), ConversationKind::Group, None, vec![alice.clone(), bob.clone()])
            .await
            .expect("create conversation");
        let (bob_session, bob_frames) = tenant.register_session(bob);

        Fixture {
            engine,
            tenant,
            conv,
            alice,
            bob_session,
            bob_frames,
            body_json: message(0).body_json,
            next_id: AtomicU64::new(0),
            _dir: dir,
        }
    }

    fn request(&self) -> SendRequest {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        SendRequest {
            from: self.alice.clone(),
            conv: self.conv.clone(),
            client_msg_id: format!("bench-{id}"),
            body_json: self.body_json.clone(),
            origin: None,
        }
    }

    /// Waits for bob's next frame and returns its bytes to the session's pending count, as
    /// the gateway does once a frame is written, so the session never looks slow.
    async fn receive(&mut self) {
        match self.bob_frames.recv().await {
            Some(Outbound::Frame { text, .. }) => self.bob_session.frame_done(text.len() as u64),
            Some(Outbound::Close(reason)) => panic!("bob's session was closed: {reason:?}"),
            None => panic!("bob's session channel closed"),
        }
    }

    async fn send_and_receive(&mut self, count: usize) {
        let sends = (0..count).map(|_| self.tenant.send(self.request()));
        for outcome in join_all(sends).await {
            outcome.expect("send accepted");
        }
        for _ in 0..count {
            self.receive().await;
        }
    }
}

fn send_to_delivery(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let mut group = c.benchmark_group("engine_send_delivery");

    for durability in [Durability::Fsync, Durability::Wal] {
        let mut fixture = system.block_on(Fixture::start(durability));
        let name = durability.to_string();

        for (case, count) in [("single", 1), ("pipelined", PIPELINE_DEPTH)] {
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(BenchmarkId::new(format!("{name}/{case}"), count), &count, |b, &count| {
                b.iter(|| system.block_on(fixture.send_and_receive(count)))
            });
        }
        fixture.engine.stop_workers();
    }
    group.finish();
}

criterion_group!(benches, send_to_delivery);
criterion_main!(benches);
