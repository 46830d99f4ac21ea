//! SIGTERM closes sessions with 1001 after their in-flight sends are acknowledged and exits
//! with status 0; after a restart on the same data directory, every acknowledged message is
//! in the history and the next send continues the sequence.

mod common;

use bulkhead_client::proto::ConversationKind::Group;
use common::*;
use serde_json::json;

/// Sends fired without waiting right before SIGTERM; some are in flight when it arrives.
const BURST: u64 = 200;

#[tokio::test]
async fn history_survives_sigterm_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;

    for n in 1..=5 {
        let ack = alice.send("team", &format!("m{n}"), json!({"text": format!("msg {n}")})).await?;
        assert_eq!(ack.seq, n);
    }

    // A burst still in flight when the signal arrives: whatever is acknowledged must survive.
    let mut pending = Vec::new();
    for n in 6..6 + BURST {
        pending.push(alice.send_nowait("team", &format!("m{n}"), json!({"text": format!("msg {n}")}))?);
    }
    // Wait for the first ack of the burst, so the rest is in flight when the signal arrives.
    let first = pending.remove(0).await?;
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}\n{}", server.log());

    let mut acked = vec![1, 2, 3, 4, 5, first.seq];
    for ack in pending {
        if let Ok(ack) = ack.await {
            acked.push(ack.seq);
        }
    }
    eprintln!("{} of {BURST} burst sends were acknowledged before the server stopped", acked.len() - 5);
    assert!(acked.len() > 6, "no send was in flight at SIGTERM, so the test proved nothing");
    let close = bob.wait_closed(EVENT_TIMEOUT).await.expect("bob's session is closed");
    assert_eq!(close.0, 1001, "close code on shutdown");

    let server = TestServer::start(dir.path());
    let acme = acme.at(&server);
    let alice = connect(&server, &acme, "alice").await;

    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let (items, more) = alice.history("team", None, Some(after), Some(100)).await?;
        stored.extend(seqs(&items));
        after = stored.last().copied().unwrap_or(0);
        if !more {
            break;
        }
    }
    let expected: Vec<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(stored, expected, "stored seqs are gap-free from 1");
    for seq in &acked {
        assert!(stored.contains(seq), "acknowledged seq {seq} was lost");
    }

    let next = alice.send("team", "after-restart", json!({"text": "still counting"})).await?;
    assert_eq!(next.seq, stored.len() as u64 + 1);
    Ok(())
}
