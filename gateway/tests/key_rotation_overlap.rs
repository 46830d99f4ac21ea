//! A rotated key keeps working next to its replacement until the overlap ends, and is rejected
//! with `401 unauthorized` after it. The listing, the audit log and the replacement's role and
//! name show the rotation.

mod common;

use std::time::Duration;

use bulkhead_client::{
    proto::{CreateApiKeyRequest, KeyRole, RotateApiKeyRequest},
    ErrorCode,
};
use common::*;

#[tokio::test]
async fn old_key_works_until_overlap_ends() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let request = CreateApiKeyRequest {
        role: KeyRole::Service,
        name: Some("backend".into()),
    };
    let old = acme.rest.create_api_key("acme", &request).await?;

    let rotation = RotateApiKeyRequest { overlap_secs: Some(2) };
    let before_ms = bulkhead_storage::now_ms();
    let new = acme.rest.rotate_api_key("acme", &old.id, &rotation).await?;
    assert_ne!(new.id, old.id);
    assert_ne!(new.key, old.key);
    assert_eq!(new.role, KeyRole::Service);
    assert_eq!(new.name.as_deref(), Some("backend"));
    assert_eq!(new.replaces.id, old.id);
    assert!(new.replaces.expires_at >= before_ms + 2_000, "expires_at {} is too early", new.replaces.expires_at);

    // During the overlap both keys work, and the listing shows the old key's expiry.
    let old_client = acme.rest.with_credential(old.key.clone());
    let new_client = acme.rest.with_credential(new.key.clone());
    old_client.list_users("acme").await?;
    new_client.list_users("acme").await?;
    let keys = acme.rest.list_api_keys("acme").await?;
    let listed_old = keys.iter().find(|key| key.id == old.id).ok_or("old key is not listed during the overlap")?;
    assert_eq!(listed_old.expires_at, Some(new.replaces.expires_at));
    let listed_new = keys.iter().find(|key| key.id == new.id).ok_or("new key is not listed")?;
    assert_eq!(listed_new.expires_at, None);
    assert_eq!(listed_new.role, KeyRole::Service);

    // After the overlap only the new key works, and the expired key is no longer listed.
    while bulkhead_storage::now_ms() <= new.replaces.expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejected = old_client.list_users("acme").await.unwrap_err();
    assert_eq!(rejected.http_status(), Some(401), "{rejected}");
    assert_eq!(rejected.code(), Some(ErrorCode::Unauthorized), "{rejected}");
    new_client.list_users("acme").await?;
    let keys = acme.rest.list_api_keys("acme").await?;
    assert!(keys.iter().all(|key| key.id != old.id), "expired key is still listed: {keys:?}");
    assert!(keys.iter().any(|key| key.id == new.id));

    // The tenant's audit log has the rotation, with the replacement in its detail.
    let page = acme.rest.tenant_audit("acme", &[("action", "key.rotate".to_string())]).await?;
    assert_eq!(page.items.len(), 1);
    let entry = &page.items[0];
    assert_eq!(entry.object, old.id);
    assert_eq!(entry.result, "ok");
    let detail = entry.detail.as_deref().unwrap_or_default();
    assert!(detail.contains(&new.id), "detail does not name the new key: {detail}");
    Ok(())
}
