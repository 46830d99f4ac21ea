//! Range reads by seq: pages before and after a point, in ascending order, with `more`.

mod common;

use bulkhead_storage::ConvId;
use common::*;

fn seqs(items: &[bulkhead_storage::MessageRecord]) -> Vec<u64> {
    items.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn pages_by_seq() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let store = create_tenant(&storage, "acme").await;
    let conv = ConvId::parse("c1")?;
    let other = ConvId::parse("c10")?;
    append(&store, &conv, 1..=10).await;
    append(&store, &other, 1..=5).await;

    let (items, more) = store.messages(&conv, 0, u64::MAX, 4, false)?;
    assert_eq!(seqs(&items), vec![1, 2, 3, 4]);
    assert!(more);

    let (items, more) = store.messages(&conv, 8, u64::MAX, 4, false)?;
    assert_eq!(seqs(&items), vec![9, 10]);
    assert!(!more);

    let (items, more) = store.messages(&conv, 0, u64::MAX, 3, true)?;
    assert_eq!(seqs(&items), vec![8, 9, 10]);
    assert!(more);

    let (items, more) = store.messages(&conv, 0, 4, 10, true)?;
    assert_eq!(seqs(&items), vec![1, 2, 3]);
    assert!(!more);

    let (items, _) = store.messages(&conv, 3, 4, 10, false)?;
    assert!(items.is_empty());

    assert_eq!(store.last_seq(&other)?, 5);
    Ok(())
}
