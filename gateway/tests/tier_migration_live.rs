//! A tenant moves through every tier while a member keeps sending: no acked message is lost,
//! seqs stay continuous, the other member receives every message once, and a tenant on
//! another tier keeps being served during the moves. Each move is in the tenant's audit log.

mod common;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use bulkhead_client::proto::{ConversationKind::Group, Tier};
use common::*;
use serde_json::json;

/// The sender stops after this many messages even if the moves are not done.
const MAX_MESSAGES: u64 = 3000;

#[tokio::test]
async fn migration_under_traffic_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant_on_tier(&server, "acme", &["alice", "bob"], Tier::Cf).await;
    let globex = create_tenant_on_tier(&server, "globex", &["carol"], Tier::Shared).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    create_conversation(&globex, "solo", Group, &["carol"]).await;

    let alice = connect(&server, &acme, "alice").await;
    let bob = connect(&server, &acme, "bob").await;
    let carol = connect(&server, &globex, "carol").await;

    // Alice sends one message after another until 20 more are acked after the moves.
    let moves_done = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicU64::new(0));
    let sender = {
        let moves_done = moves_done.clone();
        let acked_count = acked_count.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut after_moves = 0;
            for n in 1..=MAX_MESSAGES {
                let ack = alice.send("team", &format!("m{n}"), json!({"n": n})).await.expect("send during migration");
                acked.push(ack.seq);
                acked_count.store(n, Ordering::Relaxed);
                if moves_done.load(Ordering::Relaxed) {
                    after_moves += 1;
                    if after_moves == 20 {
                        break;
                    }
                }
            }
            acked
        })
    };
    // The first move starts once traffic flows.
    for _ in 0..1000 {
        if acked_count.load(Ordering::Relaxed) >= 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let admin = admin(&server);
    let mut carol_acks = 0;
    for (from, to) in [(Tier::Cf, Tier::Shared), (Tier::Shared, Tier::Dedicated), (Tier::Dedicated, Tier::Cf)] {
        let migration = admin.migrate_tenant("acme", to).await?;
        assert_eq!((migration.from, migration.to, migration.tenant.tier), (from, to, to));
        assert!(migration.keys_copied > 0);
        // The neighbour is served between the moves.
        carol.send("solo", &format!("c{to:?}"), json!({"n": 1})).await?;
        carol_acks += 1;
    }
    moves_done.store(true, Ordering::Relaxed);
    let acked = sender.await?;
    let count = acked.len() as u64;
    eprintln!("{count} messages acked while acme moved through three tiers");
    assert_eq!(acked, (1..=count).collect::<Vec<_>>(), "acked seqs are continuous");

    let mut delivered = Vec::new();
    while (delivered.len() as u64) < count {
        delivered.push(next_message(&bob).await.seq);
    }
    assert_eq!(delivered, acked, "bob receives every message once, in order");
    assert_no_event(&bob, "bob").await;

    let pages = bob.sync(&BTreeMap::new(), None).await?;
    let mut stored = seqs(&pages[0].items);
    let mut after = stored.last().copied();
    while stored.len() < count as usize {
        let (items, _) = bob.history("team", None, after, Some(100)).await?;
        assert!(!items.is_empty(), "history ends before every acked message");
        after = items.last().map(|i| i.seq);
        stored.extend(seqs(&items));
    }
    assert_eq!(stored, acked, "every acked message is stored");

    let (solo, _) = carol.history("solo", None, None, None).await?;
    assert_eq!(solo.len(), carol_acks);

    let log = acme.rest.tenant_audit("acme", &[("action", "tenant.migrate".into())]).await?;
    let details: Vec<String> = log.items.into_iter().filter_map(|e| e.detail).collect();
    assert_eq!(details, ["cf -> shared", "shared -> dedicated", "dedicated -> cf"]);
    Ok(())
}
