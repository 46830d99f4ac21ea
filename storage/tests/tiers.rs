//! The three isolation tiers keep a tenant's data apart, survive a reopen, and a migration
//! between them moves everything, keeps writes that race it, and leaves no copy behind.

mod common;

use std::sync::Arc;

use bulkhead_storage::{
    audit::{AuditActor, AuditEvent, AuditOutcome, AuditQuery, AuditRole, ChainStatus},
    ConvId, Storage, StorageError, TenantId, TenantStore, Tier, UserRecord,
};
use common::*;

const TIERS: [Tier; 3] = [Tier::Shared, Tier::Cf, Tier::Dedicated];

fn user(id: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        display_name: Some(format!("User {id}")),
        created_at_ms: 1,
    }
}

fn audit_event(object: &str) -> AuditEvent {
    AuditEvent {
        actor: AuditActor::PlatformAdmin,
        role: AuditRole::Platform,
        action: "test.action".into(),
        object: object.into(),
        source: "127.0.0.1".into(),
        outcome: AuditOutcome::Ok,
        detail: None,
    }
}

/// Writes users, 50 messages, a read marker and an audit entry.
async fn fill(store: &TenantStore) -> TestResult {
    let conv = ConvId::parse("general")?;
    let mut batch = store.batch();
    batch.put_user(&user("alice"));
    batch.put_user(&user("bob"));
    batch.put_membership("alice", "general");
    batch.put_read_marker(&conv, &bulkhead_storage::UserId::parse("alice")?, 7);
    store.commit(batch).await?;
    append(store, &conv, 1..=50).await;
    store.append_audit(audit_event("alice")).await?;
    Ok(())
}

/// Checks everything `fill` wrote, plus `extra` messages after seq 50.
fn check(store: &TenantStore, extra: u64) -> TestResult {
    let conv = ConvId::parse("general")?;
    let alice = bulkhead_storage::UserId::parse("alice")?;
    let users: Vec<String> = store.users()?.into_iter().map(|u| u.id).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(store.conversations_of(&alice)?, vec![conv.clone()]);
    assert_eq!(store.read_marker(&conv, &alice)?, Some(7));
    assert_eq!(store.last_seq(&conv)?, 50 + extra);
    let (messages, more) = store.messages(&conv, 0, u64::MAX, 1000, false)?;
    assert!(!more);
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=50 + extra).collect::<Vec<_>>());
    assert_eq!(store.seq_for_client_msg_id(&conv, "m42")?, Some(42));
    let page = store.audit(&AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    })?;
    assert_eq!(page.items.len(), 1);
    assert!(matches!(store.verify_audit()?, ChainStatus::Intact { entries: 1, .. }));
    Ok(())
}

/// Whether any copy of the tenant's data is left on `tier`.
fn has_data_on(storage: &Storage, tenant: &str, tier: Tier) -> bool {
    match tier {
        Tier::Shared => storage.has_shared_rows(tenant).expect("scan shared rows"),
        Tier::Cf => storage.has_column_family(tenant),
        Tier::Dedicated => storage.dedicated_dir(tenant).exists(),
    }
}

fn store_of(storage: &Arc<Storage>, id: &str) -> TenantStore {
    storage
        .tenant_store(&TenantId::parse(id).unwrap())
        .unwrap()
        .expect("tenant store")
}

#[tokio::test]
async fn every_tier_keeps_its_data_across_a_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let storage = open(&dir);
        for (tier, id) in TIERS.into_iter().zip(["small", "middle", "bank"]) {
            let store = create_tenant_on(&storage, id, tier).await;
            fill(&store).await?;
            check(&store, 0)?;
            assert!(has_data_on(&storage, id, tier));
        }
        // A neighbour on the same tier sees none of it.
        let neighbour = create_tenant_on(&storage, "small2", Tier::Shared).await;
        assert!(neighbour.users()?.is_empty());
        assert_eq!(neighbour.last_seq(&ConvId::parse("general")?)?, 0);
    }

    // The offline walk of `bulkhead audit verify` finds each tenant's log on its tier.
    for id in ["small", "middle", "bank"] {
        let status = bulkhead_storage::audit::verify_offline(dir.path(), Some(&TenantId::parse(id)?))?;
        assert!(matches!(status, ChainStatus::Intact { entries: 1, .. }), "{id}: {status:?}");
    }

    let storage = open(&dir);
    for id in ["small", "middle", "bank"] {
        check(&store_of(&storage, id), 0)?;
    }
    assert!(!has_data_on(&storage, "small", Tier::Cf));
    assert!(!has_data_on(&storage, "bank", Tier::Shared));
    Ok(())
}

#[tokio::test]
async fn migration_moves_everything_and_leaves_no_copy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let store = create_tenant_on(&storage, "acme", Tier::Cf).await;
    fill(&store).await?;
    let other = create_tenant_on(&storage, "globex", Tier::Shared).await;
    fill(&other).await?;

    let conv = ConvId::parse("general")?;
    let mut extra = 0;
    let acme = TenantId::parse("acme")?;
    for (from, to) in [
        (Tier::Cf, Tier::Shared),
        (Tier::Shared, Tier::Dedicated),
        (Tier::Dedicated, Tier::Cf),
        (Tier::Cf, Tier::Dedicated),
        (Tier::Dedicated, Tier::Shared),
        (Tier::Shared, Tier::Cf),
    ] {
        let report = storage.migrate_tenant(&acme, to).await?;
        assert_eq!((report.from, report.to), (from, to));
        assert!(report.keys_copied > 50);
        assert_eq!(storage.tenant(&acme)?.unwrap().tier, to);
        assert!(has_data_on(&storage, "acme", to));
        assert!(!has_data_on(&storage, "acme", from), "no copy left on {from:?}");

        // The store taken before the migration follows the tenant.
        extra += 1;
        append(&store, &conv, 50 + extra..=50 + extra).await;
        check(&store, extra)?;
        check(&other, 0)?;
    }

    let again = storage.migrate_tenant(&acme, Tier::Cf).await;
    assert!(matches!(again, Err(StorageError::AlreadyOnTier(_))));
    drop((store, other, storage));

    let storage = open(&dir);
    check(&store_of(&storage, "acme"), extra)?;
    check(&store_of(&storage, "globex"), 0)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_migration_all_land() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let store = create_tenant_on(&storage, "acme", Tier::Cf).await;
    fill(&store).await?;
    let acme = TenantId::parse("acme")?;
    let conv = ConvId::parse("general")?;

    // One writer appends seqs 51..=550 one commit at a time while the tenant moves through
    // every tier; each commit that returned Ok must be readable at the end.
    let writer = {
        let store = store.clone();
        let conv = conv.clone();
        tokio::spawn(async move {
            let mut acked = 0;
            for seq in 51..=550 {
                append(&store, &conv, seq..=seq).await;
                acked = seq;
            }
            acked
        })
    };
    for to in [Tier::Dedicated, Tier::Shared, Tier::Cf] {
        storage.migrate_tenant(&acme, to).await?;
    }
    let acked = writer.await?;
    assert_eq!(acked, 550);
    check(&store, 500)?;

    drop(store);
    drop(storage);
    check(&store_of(&open(&dir), "acme"), 500)?;
    Ok(())
}

#[tokio::test]
async fn delete_removes_data_on_every_tier() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let storage = open(&dir);
        for (tier, id) in TIERS.into_iter().zip(["small", "middle", "bank"]) {
            let store = create_tenant_on(&storage, id, tier).await;
            fill(&store).await?;
            drop(store);
            storage.delete_tenant(&TenantId::parse(id)?).await?;
            assert!(!has_data_on(&storage, id, tier), "{id} left data on {tier:?}");
        }
    }
    let storage = open(&dir);
    for id in ["small", "middle", "bank"] {
        assert!(storage.tenant(&TenantId::parse(id)?)?.is_none());
        for tier in TIERS {
            assert!(!has_data_on(&storage, id, tier));
        }
    }
    Ok(())
}

#[tokio::test]
async fn data_no_tenant_owns_is_removed_at_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let storage = open(&dir);
        create_tenant_on(&storage, "acme", Tier::Cf).await;
    }
    // What a crash in the middle of a migration to the dedicated tier leaves behind.
    let leftover = dir.path().join("dedicated").join("acme");
    std::fs::create_dir_all(&leftover)?;
    std::fs::write(leftover.join("CURRENT"), b"partial copy")?;

    let storage = open(&dir);
    assert!(!leftover.exists());
    assert!(storage.has_column_family("acme"));
    Ok(())
}
