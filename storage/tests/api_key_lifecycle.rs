//! API keys through rotation, recorded use, revocation and tenant deletion, on a real
//! RocksDB that is reopened in between.

mod common;

use bulkhead_storage::{StorageError, TenantId};
use common::*;

#[tokio::test]
async fn rotation_and_last_use_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let acme = TenantId::parse("acme")?;

    {
        let storage = open(&dir);
        create_tenant(&storage, "acme").await;
        assert_eq!(storage.api_key_last_used("key-acme")?, None);
        assert!(storage.record_api_key_use("key-acme", 1_000).await?);
        // An older use does not replace a newer one.
        assert!(storage.record_api_key_use("key-acme", 900).await?);

        let replacement = key_record("acme", "key-new");
        let old = storage.rotate_api_key(&acme, "key-acme", &replacement, 5_000).await?;
        assert_eq!(old.expires_at_ms, Some(5_000));
    }

    let storage = open(&dir);
    assert_eq!(storage.api_key_last_used("key-acme")?, Some(1_000));
    let old = storage.api_key("key-acme")?.ok_or("rotated key is gone")?;
    assert_eq!(old.expires_at_ms, Some(5_000));
    assert!(!old.is_expired(4_999));
    assert!(old.is_expired(5_000));
    let new = storage.api_key("key-new")?.ok_or("replacement is missing")?;
    assert_eq!(new.expires_at_ms, None);
    let mut ids: Vec<String> = storage.api_keys(&acme)?.into_iter().map(|key| key.id).collect();
    ids.sort();
    assert_eq!(ids, vec!["key-acme", "key-new"]);
    Ok(())
}

#[tokio::test]
async fn rotation_is_rejected_for_expiring_and_foreign_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    create_tenant(&storage, "acme").await;
    create_tenant(&storage, "globex").await;
    let acme = TenantId::parse("acme")?;
    let globex = TenantId::parse("globex")?;

    storage.rotate_api_key(&acme, "key-acme", &key_record("acme", "second"), 5_000).await?;
    let again = storage.rotate_api_key(&acme, "key-acme", &key_record("acme", "third"), 9_000).await;
    assert!(
        matches!(again, Err(StorageError::ApiKeyExpiring { expires_at_ms: 5_000, .. })),
        "{again:?}"
    );
    assert!(storage.api_key("third")?.is_none());

    let foreign = storage.rotate_api_key(&globex, "key-acme", &key_record("globex", "stolen"), 9_000).await;
    assert!(matches!(foreign, Err(StorageError::ApiKeyNotFound(_))), "{foreign:?}");
    assert!(storage.api_key("stolen")?.is_none());
    Ok(())
}

#[tokio::test]
async fn revoked_and_deleted_keys_leave_no_last_use() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    create_tenant(&storage, "acme").await;
    create_tenant(&storage, "globex").await;
    let acme = TenantId::parse("acme")?;
    let globex = TenantId::parse("globex")?;

    // Revocation removes the last use, and a use recorded afterwards stores nothing.
    storage.put_api_key(&key_record("acme", "service")).await?;
    assert!(storage.record_api_key_use("service", 1_000).await?);
    assert!(!storage.delete_api_key(&globex, "service").await?, "another tenant revoked the key");
    assert!(storage.delete_api_key(&acme, "service").await?);
    assert_eq!(storage.api_key_last_used("service")?, None);
    assert!(!storage.record_api_key_use("service", 2_000).await?);
    assert_eq!(storage.api_key_last_used("service")?, None);

    // Deleting the tenant removes its keys' last uses too.
    assert!(storage.record_api_key_use("key-globex", 1_000).await?);
    storage.delete_tenant(&globex).await?;
    assert_eq!(storage.api_key("key-globex")?, None);
    assert_eq!(storage.api_key_last_used("key-globex")?, None);
    Ok(())
}
