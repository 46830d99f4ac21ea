//! Audit entries link into a hash chain that survives concurrent appends and a reopen, and
//! reads filter by action and page by seq.

mod common;

use bulkhead_storage::audit::{
    sha256, AuditActor, AuditEvent, AuditOutcome, AuditQuery, AuditRole, ChainStatus, ZERO_HASH,
};
use common::*;

fn event(action: &str, object: &str) -> AuditEvent {
    AuditEvent {
        actor: AuditActor::ApiKey("k1".into()),
        role: AuditRole::Admin,
        action: action.into(),
        object: object.into(),
        source: "127.0.0.1".into(),
        outcome: AuditOutcome::Ok,
        detail: None,
    }
}

#[tokio::test]
async fn concurrent_appends_form_one_chain() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let acme = create_tenant(&storage, "acme").await;

    let appends = (0..20).map(|n| {
        let store = acme.clone();
        let action = if n % 2 == 0 { "user.delete" } else { "key.create" };
        tokio::spawn(async move { store.append_audit(event(action, &format!("o{n}"))).await })
    });
    for append in appends {
        append.await??;
    }

    let status = acme.verify_audit()?;
    let ChainStatus::Intact { entries, head: Some(head) } = status else {
        panic!("expected an intact chain, got {status:?}");
    };
    assert_eq!(entries, 20);
    assert_eq!(head.seq, 20);

    let all = acme.audit(&AuditQuery { limit: 100, ..AuditQuery::default() })?;
    assert_eq!(all.items.len(), 20);
    assert_eq!(all.items[0].0.prev_sha256, ZERO_HASH);
    for pair in all.items.windows(2) {
        assert_eq!(pair[1].0.seq, pair[0].0.seq + 1);
        assert_eq!(pair[1].0.prev_sha256, pair[0].1, "entry {} links to its predecessor", pair[1].0.seq);
        assert!(pair[1].0.ts_ms >= pair[0].0.ts_ms);
    }
    assert_eq!(all.items[19].1, head.sha256);
    Ok(())
}

#[tokio::test]
async fn filters_and_pages_by_seq() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let acme = create_tenant(&storage, "acme").await;
    for n in 0..7 {
        let action = if n % 2 == 0 { "user.delete" } else { "key.create" };
        acme.append_audit(event(action, &format!("o{n}"))).await?;
    }

    let query = AuditQuery {
        action: Some("user.delete".into()),
        limit: 3,
        ..AuditQuery::default()
    };
    let first = acme.audit(&query)?;
    let seqs: Vec<u64> = first.items.iter().map(|(e, _)| e.seq).collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    assert!(first.more);

    let second = acme.audit(&AuditQuery { after_seq: 5, ..query.clone() })?;
    let seqs: Vec<u64> = second.items.iter().map(|(e, _)| e.seq).collect();
    assert_eq!(seqs, vec![7]);
    assert!(!second.more);

    let none = acme.audit(&AuditQuery { until_ms: Some(0), limit: 10, ..AuditQuery::default() })?;
    assert!(none.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn platform_chain_survives_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let storage = open(&dir);
        storage.append_platform_audit(event("tenant.create", "acme")).await?;
        storage.append_platform_audit(event("tenant.delete", "acme")).await?;
    }
    let storage = open(&dir);
    let third = storage.append_platform_audit(event("tenant.create", "globex")).await?;
    assert_eq!(third.seq, 3);

    let page = storage.platform_audit(&AuditQuery { limit: 10, ..AuditQuery::default() })?;
    assert_eq!(third.prev_sha256, page.items[1].1);
    assert_eq!(page.items[2].1, sha256(&bulkhead_storage::codec::encode(&third)));
    assert!(matches!(storage.verify_platform_audit()?, ChainStatus::Intact { entries: 3, .. }));
    Ok(())
}
