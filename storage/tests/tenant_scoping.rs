//! Two tenants with the same conversation id never see each other's data, and deleting one
//! drops its column family while the other is untouched, also after a reopen.

mod common;

use bulkhead_storage::{ConvId, StorageError, TenantId};
use common::*;

#[tokio::test]
async fn tenants_do_not_mix() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let acme = create_tenant(&storage, "acme").await;
    let globex = create_tenant(&storage, "globex").await;
    let conv = ConvId::parse("general")?;

    append(&acme, &conv, 1..=3).await;
    append(&globex, &conv, 1..=1).await;

    assert_eq!(acme.last_seq(&conv)?, 3);
    assert_eq!(globex.last_seq(&conv)?, 1);
    let (items, _) = globex.messages(&conv, 0, u64::MAX, 100, false)?;
    assert_eq!(items.len(), 1);
    Ok(())
}

#[tokio::test]
async fn delete_drops_only_that_tenant() -> TestResult {
    let dir = tempfile::tempdir()?;
    let conv = ConvId::parse("general")?;
    let acme_id = TenantId::parse("acme")?;
    let globex_id = TenantId::parse("globex")?;

    {
        let storage = open(&dir);
        let acme = create_tenant(&storage, "acme").await;
        let globex = create_tenant(&storage, "globex").await;
        append(&acme, &conv, 1..=3).await;
        append(&globex, &conv, 1..=2).await;

        storage.delete_tenant(&acme_id).await?;
        assert!(!storage.has_column_family("acme"));
        assert!(storage.api_key("key-acme")?.is_none());

        // A store handed out before the deletion fails instead of reaching other data.
        let err = acme.last_seq(&conv).unwrap_err();
        assert!(matches!(err, StorageError::TenantNotFound(_)), "{err}");
    }

    let storage = open(&dir);
    assert!(storage.tenant(&acme_id)?.is_none());
    assert!(!storage.has_column_family("acme"));
    let globex = storage.tenant_store(&globex_id)?.expect("globex survives");
    assert_eq!(globex.last_seq(&conv)?, 2);
    assert!(storage.api_key("key-globex")?.is_some());
    Ok(())
}

#[tokio::test]
async fn create_twice_is_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    create_tenant(&storage, "acme").await;
    let err = storage
        .create_tenant(&tenant_record("acme"), &key_record("acme", "k2"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TenantExists(_)), "{err}");
    Ok(())
}
