//! Revoking either key of a rotation during its overlap takes effect at once and leaves the
//! other key working.

mod common;

use bulkhead_client::proto::{CreateApiKeyRequest, KeyRole, RotateApiKeyRequest};
use common::*;

#[tokio::test]
async fn revoke_either_key_during_overlap() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let request = CreateApiKeyRequest {
        role: KeyRole::Service,
        name: None,
    };
    let rotation = RotateApiKeyRequest { overlap_secs: Some(3600) };

    // Revoking the old key ends it before its expiry.
    let old = acme.rest.create_api_key("acme", &request).await?;
    let new = acme.rest.rotate_api_key("acme", &old.id, &rotation).await?;
    acme.rest.delete_api_key("acme", &old.id).await?;
    let rejected = acme.rest.with_credential(old.key.clone()).list_users("acme").await.unwrap_err();
    assert_eq!(rejected.http_status(), Some(401), "{rejected}");
    acme.rest.with_credential(new.key.clone()).list_users("acme").await?;

    // Revoking the new key leaves the old one working until its expiry.
    let old = acme.rest.create_api_key("acme", &request).await?;
    let new = acme.rest.rotate_api_key("acme", &old.id, &rotation).await?;
    acme.rest.delete_api_key("acme", &new.id).await?;
    let rejected = acme.rest.with_credential(new.key.clone()).list_users("acme").await.unwrap_err();
    assert_eq!(rejected.http_status(), Some(401), "{rejected}");
    acme.rest.with_credential(old.key.clone()).list_users("acme").await?;

    let keys = acme.rest.list_api_keys("acme").await?;
    assert!(keys.iter().all(|key| key.id != new.id), "revoked key is still listed: {keys:?}");
    let listed_old = keys.iter().find(|key| key.id == old.id).ok_or("old key is not listed")?;
    assert!(listed_old.expires_at.is_some());
    Ok(())
}
