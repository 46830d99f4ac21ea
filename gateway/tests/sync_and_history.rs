//! A member that was offline catches up with `sync`: exactly the missed messages, in seq
//! order, without gaps or duplicates. `history` pages correctly with `before` and `after`.

mod common;

use std::collections::BTreeMap;

use bulkhead_client::proto::ConversationKind::Group;
use common::*;
use serde_json::json;

#[tokio::test]
async fn offline_member_catches_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    create_conversation(&acme, "quiet", Group, &["alice", "bob"]).await;

    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;
    for n in 1..=3 {
        alice.send("team", &format!("m{n}"), json!({"text": format!("before {n}")})).await?;
    }
    let mut last_seen = 0;
    for _ in 1..=3 {
        last_seen = next_message(&bob).await.seq;
    }
    assert_eq!(last_seen, 3);
    bob.close().await?;

    // Bob is offline while ten more messages arrive.
    for n in 4..=13 {
        alice.send("team", &format!("m{n}"), json!({"text": format!("missed {n}")})).await?;
    }

    let bob = connect(&server, &acme, "bob").await;
    let since = BTreeMap::from([("team".to_string(), last_seen)]);
    let pages = bob.sync(&since, None).await?;
    assert_eq!(pages.len(), 1, "only conversations with news are returned");
    assert_eq!(pages[0].conv, "team");
    assert_eq!(seqs(&pages[0].items), (4..=13).collect::<Vec<_>>());
    assert!(!pages[0].more);
    assert_eq!(body_text(&pages[0].items[0]), "missed 4");

    // With a small limit, `more` tells the client to continue from the last seq received.
    let mut cursor = last_seen;
    let mut collected = Vec::new();
    for _ in 0..10 {
        let pages = bob.sync(&BTreeMap::from([("team".to_string(), cursor)]), Some(4)).await?;
        let Some(page) = pages.into_iter().next() else { break };
        collected.extend(seqs(&page.items));
        cursor = page.items.last().map(|m| m.seq).unwrap_or(cursor);
        if !page.more {
            break;
        }
    }
    assert_eq!(collected, (4..=13).collect::<Vec<_>>(), "paged sync has no gap and no duplicate");

    // An empty `since` starts every conversation from 0.
    let pages = bob.sync(&BTreeMap::new(), None).await?;
    assert_eq!(seqs(&pages[0].items), (1..=13).collect::<Vec<_>>());

    // History pages.
    let (items, more) = bob.history("team", Some(6), None, Some(3)).await?;
    assert_eq!(seqs(&items), vec![3, 4, 5]);
    assert!(more);
    let (items, more) = bob.history("team", Some(3), None, Some(3)).await?;
    assert_eq!(seqs(&items), vec![1, 2]);
    assert!(!more);
    let (items, more) = bob.history("team", None, Some(10), Some(10)).await?;
    assert_eq!(seqs(&items), vec![11, 12, 13]);
    assert!(!more);
    let (items, more) = bob.history("team", None, None, Some(2)).await?;
    assert_eq!(seqs(&items), vec![12, 13], "no cursor returns the newest page");
    assert!(more);
    let (items, _) = bob.history("quiet", None, None, None).await?;
    assert!(items.is_empty());

    // The REST view of the same history agrees.
    let page = acme.rest.list_messages("acme", "team", None, Some(11), None).await?;
    assert_eq!(seqs(&page.items), vec![12, 13]);
    Ok(())
}
