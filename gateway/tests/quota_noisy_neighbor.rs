//! A noisy tenant flooding far above its quotas gets backpressure and `quota_exceeded`, loses
//! none of its acknowledged messages, and its throttled and rejected counters rise; a quiet
//! tenant sending at the same time gets every message acknowledged and delivered, and its
//! counters stay at zero.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, PatchTenantRequest, QuotasPatch},
    ErrorCode,
};
use common::*;
use serde_json::json;

/// Flood size: 400 sends of about 1 KB, four times the noisy tenant's ingress burst.
const FLOOD_MESSAGES: usize = 400;
const FLOOD_BODY_BYTES: usize = 1000;
const QUIET_MESSAGES: u64 = 30;
/// Three times the noisy tenant's ingress burst of 100 KB.
const SECOND_FLOOD_MESSAGES: usize = 300;

#[tokio::test]
async fn noisy_tenant_does_not_hurt_quiet_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());

    // Room for about three queued sends, and 100 KB/s of ingress.
    let noisy_quotas = QuotasPatch {
        memory_bytes: Some(4 << 10),
        ingress_bytes_per_sec: Some(100_000),
        ..QuotasPatch::default()
    };
    let noisy = create_tenant_with_quotas(&server, "noisy", &["n1", "n2", "reader"], Some(noisy_quotas)).await;
    let quiet = create_tenant(&server, "quiet", &["alice", "bob"]).await;
    create_conversation(&noisy, "flood", Group, &["n1", "n2", "reader"]).await;
    create_conversation(&quiet, "chat", Group, &["alice", "bob"]).await;

    let flooders = [connect(&server, &noisy, "n1").await, connect(&server, &noisy, "n2").await];
    let alice = connect(&server, &quiet, "alice").await;
    let bob = connect(&server, &quiet, "bob").await;

    // The flood is open loop: every send goes out without waiting for an ack.
    let padding = "x".repeat(FLOOD_BODY_BYTES);
    let mut flood = Vec::new();
    for n in 0..FLOOD_MESSAGES {
        let client = &flooders[n % 2];
        flood.push(client.send_nowait("flood", &format!("f{n}"), json!({ "p": padding }))?);
    }

    // Meanwhile the quiet tenant sends one message at a time and waits for each ack.
    for n in 1..=QUIET_MESSAGES {
        let ack = alice.send("chat", &format!("q{n}"), json!({ "text": format!("quiet {n}") })).await?;
        assert_eq!(ack.seq, n);
    }
    for n in 1..=QUIET_MESSAGES {
        let item = next_message(&bob).await;
        assert_eq!(item.seq, n, "quiet deliveries arrive complete and in order");
    }

    let mut acked = Vec::new();
    let mut memory_rejections = 0;
    for pending in flood {
        match pending.await {
            Ok(ack) => acked.push(ack.seq),
            Err(err) => {
                assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded), "{err}");
                memory_rejections += 1;
            }
        }
    }
    assert!(memory_rejections > 0, "the flood must hit the memory quota");
    assert!(!acked.is_empty(), "the noisy tenant still makes progress");

    // Every acknowledged noisy message is stored, and the stored seqs have no gap.
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = noisy.rest.list_messages("noisy", "flood", None, Some(after), Some(100)).await?;
        stored.extend(seqs(&page.items));
        after = stored.last().copied().unwrap_or(0);
        if !page.more {
            break;
        }
    }
    assert_eq!(stored, (1..=stored.len() as u64).collect::<Vec<_>>());
    acked.sort_unstable();
    assert_eq!(acked, stored, "exactly the acknowledged messages are stored");

    // With room in memory, a second flood of three times the ingress burst can only be read
    // at the ingress rate, so reading must pause. None of it is rejected.
    let patch = PatchTenantRequest {
        quotas: Some(QuotasPatch {
            memory_bytes: Some(64 << 20),
            ..QuotasPatch::default()
        }),
        ..PatchTenantRequest::default()
    };
    admin(&server).patch_tenant("noisy", &patch).await?;
    let mut second_flood = Vec::new();
    for n in 0..SECOND_FLOOD_MESSAGES {
        second_flood.push(flooders[0].send_nowait("flood", &format!("g{n}"), json!({ "p": padding }))?);
    }
    for pending in second_flood {
        pending.await?;
    }

    let text = admin(&server).metrics_text().await?;
    let noisy_throttled = metric(&text, "bulkhead_tenant_throttled_seconds_total", "tenant=\"noisy\",resource=\"ingress_bandwidth\"");
    let noisy_rejected = metric(&text, "bulkhead_tenant_rejected_total", "tenant=\"noisy\",reason=\"memory\"");
    assert!(noisy_throttled > 0.0, "noisy ingress throttled {noisy_throttled}");
    assert_eq!(noisy_rejected, memory_rejections as f64);
    for resource in ["cpu", "ingress_bandwidth", "egress_bandwidth"] {
        let labels = format!("tenant=\"quiet\",resource=\"{resource}\"");
        assert_eq!(metric(&text, "bulkhead_tenant_throttled_seconds_total", &labels), 0.0, "quiet {resource}");
    }
    for reason in ["memory", "storage", "connections", "slow_consumer"] {
        let labels = format!("tenant=\"quiet\",reason=\"{reason}\"");
        assert_eq!(metric(&text, "bulkhead_tenant_rejected_total", &labels), 0.0, "quiet {reason}");
    }
    assert_eq!(metric(&text, "bulkhead_tenant_messages_total", "tenant=\"quiet\",direction=\"in\""), QUIET_MESSAGES as f64);
    Ok(())
}
