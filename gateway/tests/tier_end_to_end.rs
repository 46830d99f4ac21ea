//! A tenant on each isolation tier (shared, cf, dedicated) is served the same way: sends are
//! acked and delivered, history and sync return them, and everything is still there after a
//! restart, while tenants on other tiers with the same ids see none of it.

mod common;

use std::collections::BTreeMap;

use bulkhead_client::proto::{ConversationKind::Group, Tier};
use common::*;
use serde_json::json;

const TIERS: [(&str, Tier); 3] = [("small", Tier::Shared), ("middle", Tier::Cf), ("bank", Tier::Dedicated)];
const MESSAGES: u64 = 10;

#[tokio::test]
async fn every_tier_serves_and_keeps_messages() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());

    let mut tenants = Vec::new();
    for (id, tier) in TIERS {
        let tenant = create_tenant_on_tier(&server, id, &["alice", "bob"], tier).await;
        assert_eq!(tenant.rest.get_tenant(id).await?.tier, tier);
        create_conversation(&tenant, "team", Group, &["alice", "bob"]).await;
        tenants.push(tenant);
    }

    for tenant in &tenants {
        let alice = connect(&server, tenant, "alice").await;
        let bob = connect(&server, tenant, "bob").await;
        for n in 1..=MESSAGES {
            let body = json!({"text": format!("{} says {n}", tenant.id)});
            let ack = alice.send("team", &format!("m{n}"), body).await?;
            assert_eq!(ack.seq, n);
            let delivered = next_message(&bob).await;
            assert_eq!((delivered.seq, body_text(&delivered)), (n, format!("{} says {n}", tenant.id)));
        }
        let (items, _) = alice.history("team", None, None, None).await?;
        assert_eq!(seqs(&items), (1..=MESSAGES).collect::<Vec<_>>());
    }

    server.terminate_cleanly();
    let server = TestServer::start(dir.path());
    for (tenant, (id, tier)) in tenants.iter().map(|t| t.at(&server)).zip(TIERS) {
        assert_eq!(tenant.rest.get_tenant(id).await?.tier, tier);
        let bob = connect(&server, &tenant, "bob").await;
        let pages = bob.sync(&BTreeMap::new(), None).await?;
        assert_eq!(seqs(&pages[0].items), (1..=MESSAGES).collect::<Vec<_>>());
        for item in &pages[0].items {
            assert!(body_text(item).starts_with(&format!("{id} says ")), "no other tenant's text");
        }
        let ack = bob.send("team", "after-restart", json!({"text": "again"})).await?;
        assert_eq!(ack.seq, MESSAGES + 1, "seqs continue after the restart");
    }
    Ok(())
}
