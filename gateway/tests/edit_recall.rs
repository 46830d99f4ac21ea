//! A sender edits and recalls its messages: the other member gets `edit` and `recall` events,
//! history keeps the `seq` with the `edited` and `recalled` markers, a recalled body is gone,
//! and the markers survive a restart. Other members get `forbidden`, and a tenant without
//! `edit_recall` gets `feature_disabled`.

mod common;

use bulkhead_client::{proto::ConversationKind::Group, ErrorCode, MessageItem, ServerFrame, WsClient};
use common::*;
use serde_json::json;

async fn next_event(client: &WsClient) -> ServerFrame {
    client.next_event(EVENT_TIMEOUT).await.expect("an event within the timeout")
}

fn item(items: &[MessageItem], seq: u64) -> &MessageItem {
    items.iter().find(|m| m.seq == seq).expect("item with this seq")
}

#[tokio::test]
async fn edit_and_recall_reach_members_and_history() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;

    for n in 1..=3 {
        alice.send("team", &format!("m{n}"), json!({"text": format!("draft {n}")})).await?;
        next_message(&bob).await;
    }

    let edited_at = alice.edit("team", 1, json!({"text": "final 1"})).await?;
    match next_event(&bob).await {
        ServerFrame::Edit { conv, seq, from, edited, body } => {
            assert_eq!((conv.as_str(), seq, from.as_str()), ("team", 1, "alice"));
            assert_eq!(edited, edited_at);
            assert_eq!(body.get(), r#"{"text":"final 1"}"#);
        }
        other => panic!("expected an edit event, got {other:?}"),
    }

    let recalled_at = alice.recall("team", 2).await?;
    match next_event(&bob).await {
        ServerFrame::Recall { conv, seq, from, recalled } => {
            assert_eq!((conv.as_str(), seq, from.as_str()), ("team", 2, "alice"));
            assert_eq!(recalled, recalled_at);
        }
        other => panic!("expected a recall event, got {other:?}"),
    }
    assert_eq!(alice.recall("team", 2).await?, recalled_at, "a second recall changes nothing");
    assert_no_event(&bob, "bob after a repeated recall").await;

    // Only the sender may change a message.
    let err = bob.edit("team", 3, json!({"text": "not mine"})).await.expect_err("bob edited alice's message");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = bob.recall("team", 3).await.expect_err("bob recalled alice's message");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = alice.edit("team", 2, json!({"text": "again"})).await.expect_err("edited a recalled message");
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    let err = alice.edit("team", 99, json!({"text": "nothing"})).await.expect_err("edited a missing message");
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // No new seq was used: the next send gets 4.
    assert_eq!(alice.send("team", "m4", json!({"text": "after"})).await?.seq, 4);
    check_history(&bob, edited_at, recalled_at).await?;

    // Markers and the missing body survive a restart.
    bob.close().await?;
    alice.close().await?;
    server.terminate_cleanly();
    let server = TestServer::start(dir.path());
    let acme = acme.at(&server);
    let bob = connect(&server, &acme, "bob").await;
    check_history(&bob, edited_at, recalled_at).await?;
    let pages = bob.sync(&Default::default(), None).await?;
    assert_eq!(item(&pages[0].items, 2).recalled, Some(recalled_at), "sync shows the markers too");
    let page = acme.rest.list_messages("acme", "team", None, None, None).await?;
    assert_eq!(item(&page.items, 1).edited, Some(edited_at), "REST history shows the markers too");
    Ok(())
}

async fn check_history(client: &WsClient, edited_at: u64, recalled_at: u64) -> TestResult {
    let (items, _) = client.history("team", None, None, None).await?;
    assert_eq!(seqs(&items), vec![1, 2, 3, 4]);

    let edited = item(&items, 1);
    assert_eq!(body_text(edited), "final 1");
    assert_eq!(edited.edited, Some(edited_at));
    assert_eq!(edited.recalled, None);
    assert_eq!(edited.client_msg_id, "m1");

    let recalled = item(&items, 2);
    assert_eq!(recalled.body.get(), "null", "a recalled body is removed");
    assert_eq!(recalled.recalled, Some(recalled_at));

    let untouched = item(&items, 3);
    assert_eq!(body_text(untouched), "draft 3");
    assert_eq!((untouched.edited, untouched.recalled), (None, None));
    Ok(())
}

#[tokio::test]
async fn edit_respects_max_message_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let quotas = bulkhead_client::proto::QuotasPatch {
        max_message_bytes: Some(64),
        ..Default::default()
    };
    let acme = create_tenant_with_quotas(&server, "acme", &["alice"], Some(quotas)).await;
    create_conversation(&acme, "notes", Group, &["alice"]).await;
    let alice = connect(&server, &acme, "alice").await;
    alice.send("notes", "m1", json!({"text": "short"})).await?;

    let err = alice.edit("notes", 1, json!({"text": "x".repeat(100)})).await.expect_err("oversized edit accepted");
    assert_eq!(err.code(), Some(ErrorCode::PayloadTooLarge));
    let (items, _) = alice.history("notes", None, None, None).await?;
    assert_eq!(body_text(&items[0]), "short");
    assert_eq!(items[0].edited, None);
    Ok(())
}

#[tokio::test]
async fn edit_needs_the_edit_recall_feature() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant_with_features(&server, "acme", &["alice", "bob"], &["history"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    alice.send("team", "m1", json!({"text": "hi"})).await?;

    let err = alice.edit("team", 1, json!({"text": "edited"})).await.expect_err("edit without the feature");
    assert_eq!(err.code(), Some(ErrorCode::FeatureDisabled));
    let err = alice.recall("team", 1).await.expect_err("recall without the feature");
    assert_eq!(err.code(), Some(ErrorCode::FeatureDisabled));
    let (items, _) = alice.history("team", None, None, None).await?;
    assert_eq!(body_text(&items[0]), "hi");
    Ok(())
}
