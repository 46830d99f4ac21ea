//! A conversation actor that panics after a commit is restarted by its tenant supervisor,
//! rebuilds its state from RocksDB, and loses no acknowledged message: the send whose ack
//! was lost is retried with the same `client_msg_id` and gets its original seq.

mod common;

use std::collections::BTreeMap;

use bulkhead_client::{proto::ConversationKind::Group, ErrorCode};
use common::*;
use serde_json::json;

const MESSAGES: u64 = 20;

#[tokio::test]
async fn actor_restarts_without_losing_acks() -> TestResult {
    let dir = tempfile::tempdir()?;
    // The sixth commit of any conversation panics once, after the write is durable and before
    // any ack is sent.
    let server = TestServer::start_with_env(dir.path(), &[("FAILPOINTS", "conversation-after-commit=5*off->1*panic->off")]);
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;

    let mut failures = 0;
    let mut acked = Vec::new();
    for n in 1..=MESSAGES {
        let id = format!("m{n}");
        let ack = match alice.send("team", &id, json!({"text": format!("msg {n}")})).await {
            Ok(ack) => ack,
            Err(err) => {
                failures += 1;
                assert_eq!(err.code(), Some(ErrorCode::Internal), "{err}");
                let retry = alice.send("team", &id, json!({"text": format!("msg {n}")})).await?;
                assert!(retry.duplicate, "the failed send was stored, so the retry is a duplicate");
                retry
            }
        };
        assert_eq!(ack.seq, n, "seqs continue across the restart");
        acked.push(ack.seq);
    }
    assert_eq!(failures, 1, "the fail point fires exactly once");

    let (items, _) = alice.history("team", None, None, None).await?;
    assert_eq!(seqs(&items), acked);
    let pages = bob.sync(&BTreeMap::new(), None).await?;
    assert_eq!(seqs(&pages[0].items), acked, "bob can sync every message, including the undelivered one");

    let metrics = admin(&server).metrics_text().await?;
    let restarts = metrics
        .lines()
        .find(|l| l.starts_with("bulkhead_actor_restarts_total{actor=\"conversation\"}"))
        .unwrap_or_else(|| panic!("restart counter missing:\n{metrics}"));
    assert!(restarts.ends_with(" 1"), "{restarts}");
    assert!(server.log().contains("actor panicked; restarting it"));
    Ok(())
}
