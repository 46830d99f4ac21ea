//! A client that stops reading is closed with 4008 once its undelivered frames pass
//! `max_session_pending_bytes`, and after reconnecting it catches up by `sync` with no gap.

mod common;

use std::collections::BTreeMap;

use bulkhead_client::proto::ConversationKind::Group;
use common::*;
use serde_json::json;

/// Pending limit of the test server: small, so a short flood trips it.
const MAX_PENDING_BYTES: u64 = 64 << 10;

/// Enough data to fill the kernel's socket buffers on both ends of a loopback connection
/// (a few MiB with autotuning) and then the pending limit: 200 messages of 50 KB.
const MESSAGES: u64 = 200;
const BODY_BYTES: usize = 50_000;

#[tokio::test]
async fn stalled_reader_is_closed_then_syncs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("bulkhead.toml");
    std::fs::write(&config, format!("[engine]\nmax_session_pending_bytes = {MAX_PENDING_BYTES}\n"))?;
    let data = dir.path().join("data");
    let server = TestServer::start_with_env(&data, &[("BULKHEAD_CONFIG", config.to_str().unwrap())]);

    let acme = create_tenant(&server, "acme", &["alice", "bob", "carol"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob", "carol"]).await;
    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;
    let carol = connect(&server, &acme, "carol").await;

    bob.pause_reading();
    let padding = "x".repeat(BODY_BYTES);
    for n in 1..=MESSAGES {
        let ack = alice.send("team", &format!("m{n}"), json!({ "n": n, "p": padding })).await?;
        assert_eq!(ack.seq, n);
        // Carol keeps reading, so she is not affected by bob's stall.
        assert_eq!(next_message(&carol).await.seq, n);
    }

    // Bob reads again: he gets what was buffered before the stall was detected, then 4008.
    bob.resume_reading();
    // `next_event` returns `None` once the connection is closed and every event was read.
    let mut last_seen = 0;
    while let Some(event) = bob.next_event(EVENT_TIMEOUT).await {
        if let bulkhead_client::ServerFrame::Message(item) = event {
            assert_eq!(item.seq, last_seen + 1, "no gap before the close");
            last_seen = item.seq;
        }
    }
    let close = bob.wait_closed(EVENT_TIMEOUT).await.expect("bob is closed");
    assert_eq!(close.0, 4008, "{close:?}");
    assert!(last_seen < MESSAGES, "the stall was detected before the end of the flood");

    let text = admin(&server).metrics_text().await?;
    assert!(text.contains("bulkhead_tenant_rejected_total{tenant=\"acme\",reason=\"slow_consumer\"} 1\n"));
    assert!(text.contains("bulkhead_tenant_backlog_bytes{tenant=\"acme\"} 0\n"), "the closed session's frames are released");

    // After reconnecting, sync fills exactly the gap.
    let bob = connect(&server, &acme, "bob").await;
    let mut cursor = last_seen;
    let mut caught_up = Vec::new();
    for _ in 0..MESSAGES {
        let pages = bob.sync(&BTreeMap::from([("team".to_string(), cursor)]), Some(20)).await?;
        let Some(page) = pages.into_iter().next() else { break };
        caught_up.extend(seqs(&page.items));
        cursor = *caught_up.last().unwrap();
        if !page.more {
            break;
        }
    }
    assert_eq!(caught_up, (last_seen + 1..=MESSAGES).collect::<Vec<_>>());
    Ok(())
}
