//! The last seq of a conversation is found again after the database is closed and reopened.

mod common;

use bulkhead_storage::{ConvId, TenantId};
use common::*;

#[tokio::test]
async fn last_seq_after_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conv = ConvId::parse("general")?;

    {
        let storage = open(&dir);
        let store = create_tenant(&storage, "acme").await;
        assert_eq!(store.last_seq(&conv)?, 0);
        append(&store, &conv, 1..=300).await;
        assert_eq!(store.last_seq(&conv)?, 300);
    }

    let storage = open(&dir);
    let store = storage.tenant_store(&TenantId::parse("acme")?)?.expect("tenant after reopen");
    assert_eq!(store.last_seq(&conv)?, 300);
    assert_eq!(store.seq_for_client_msg_id(&conv, "m42")?, Some(42));
    assert_eq!(store.seq_for_client_msg_id(&conv, "m301")?, None);
    Ok(())
}
