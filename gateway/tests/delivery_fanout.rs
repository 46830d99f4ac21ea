//! A send is acknowledged with a seq and delivered once to every online session of every
//! member (both sessions of a user with two), never to non-members and never across tenants.

mod common;

use bulkhead_client::proto::ConversationKind::{Direct, Group};
use common::*;
use serde_json::json;

#[tokio::test]
async fn delivery_reaches_members_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());

    // Both tenants use the same user and conversation ids, so any leak between them shows.
    let users = ["alice", "bob", "carol", "dave"];
    let acme = create_tenant(&server, "acme", &users).await;
    let globex = create_tenant(&server, "globex", &users).await;
    for tenant in [&acme, &globex] {
        create_conversation(tenant, "dm", Direct, &["alice", "bob"]).await;
        create_conversation(tenant, "team", Group, &["alice", "bob", "carol"]).await;
    }

    let alice_1 = connect(&server, &acme, "alice").await;
    let alice_2 = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;
    let carol = connect(&server, &acme, "carol").await;
    let dave = connect(&server, &acme, "dave").await;
    let globex_alice = connect(&server, &globex, "alice").await;
    let globex_bob = connect(&server, &globex, "bob").await;
    let globex_carol = connect(&server, &globex, "carol").await;

    // Group send: alice's other session, bob and carol get it; dave and globex do not.
    let ack = alice_1.send("team", "m-1", json!({"text": "hello team"})).await?;
    assert_eq!(ack.seq, 1);
    assert!(!ack.duplicate);
    for (who, client) in [("alice's second session", &alice_2), ("bob", &bob), ("carol", &carol)] {
        let item = next_message(client).await;
        assert_eq!(item.conv, "team", "{who}");
        assert_eq!(item.seq, 1, "{who}");
        assert_eq!(item.from, "alice", "{who}");
        assert_eq!(item.client_msg_id, "m-1", "{who}");
        assert_eq!(item.ts, ack.ts, "{who}");
        assert_eq!(body_text(&item), "hello team", "{who}");
    }

    // Direct send: only alice's other session and bob.
    let ack = alice_1.send("dm", "m-2", json!({"text": "hi bob"})).await?;
    assert_eq!(ack.seq, 1, "each conversation has its own sequence");
    assert_eq!(next_message(&alice_2).await.conv, "dm");
    assert_eq!(next_message(&bob).await.conv, "dm");

    // The other tenant's conversation with the same id has its own sequence and members.
    let ack = globex_alice.send("team", "m-1", json!({"text": "globex only"})).await?;
    assert_eq!(ack.seq, 1);
    for client in [&globex_bob, &globex_carol] {
        let item = next_message(client).await;
        assert_eq!(body_text(&item), "globex only");
    }

    // Exactly once: nothing more arrives anywhere, and the sender gets no echo of its own sends.
    for (who, client) in [
        ("alice's sending session", &alice_1),
        ("alice's second session", &alice_2),
        ("bob", &bob),
        ("carol", &carol),
        ("dave", &dave),
        ("globex alice", &globex_alice),
        ("globex bob", &globex_bob),
        ("globex carol", &globex_carol),
    ] {
        assert_no_event(client, who).await;
    }
    Ok(())
}
