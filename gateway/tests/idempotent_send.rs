//! Resending a `client_msg_id` returns the original seq and stores nothing new, over
//! WebSocket, over REST, and when the retry races the original's commit.

mod common;

use bulkhead_client::proto::{ConversationKind::Group, PostMessageRequest};
use common::*;
use serde_json::{json, value::RawValue};

#[tokio::test]
async fn resend_returns_original_seq() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;

    let first = alice.send("team", "m-1", json!({"text": "once"})).await?;
    let again = alice.send("team", "m-1", json!({"text": "a different body"})).await?;
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.ts, first.ts);
    assert!(again.duplicate);

    let second = alice.send("team", "m-2", json!({"text": "twice"})).await?;
    assert_eq!(second.seq, first.seq + 1);

    // A retry sent before the original is acknowledged gets the same seq.
    let racing_a = alice.send_nowait("team", "m-3", json!({"text": "race"}))?;
    let racing_b = alice.send_nowait("team", "m-3", json!({"text": "race"}))?;
    let (a, b) = (racing_a.await?, racing_b.await?);
    assert_eq!(a.seq, b.seq);
    assert!(a.duplicate != b.duplicate, "exactly one of the two is the original");

    // REST sends share the same idempotency index.
    let request = PostMessageRequest {
        from: "alice".into(),
        client_msg_id: "m-2".into(),
        body: RawValue::from_string("{\"text\":\"rest retry\"}".into())?,
    };
    let rest_retry = acme.rest.post_message("acme", "team", &request).await?;
    assert_eq!(rest_retry.seq, second.seq);
    assert!(rest_retry.duplicate);

    let (items, _) = bob.history("team", None, None, None).await?;
    assert_eq!(seqs(&items), vec![1, 2, 3], "duplicates stored nothing");
    assert_eq!(body_text(&items[0]), "once", "the original body is kept");

    // Bob got each message exactly once.
    let delivered: Vec<u64> = [next_message(&bob).await, next_message(&bob).await, next_message(&bob).await]
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(delivered, vec![1, 2, 3]);
    assert_no_event(&bob, "bob").await;
    Ok(())
}
