//! A rotation with `overlap_secs: 0` refuses the old key at once; the new key works.

mod common;

use bulkhead_client::{
    proto::{CreateApiKeyRequest, KeyRole, RotateApiKeyRequest},
    ErrorCode,
};
use common::*;

#[tokio::test]
async fn zero_overlap_refuses_old_key_at_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let request = CreateApiKeyRequest {
        role: KeyRole::Auditor,
        name: None,
    };
    let old = acme.rest.create_api_key("acme", &request).await?;
    let old_client = acme.rest.with_credential(old.key.clone());
    old_client.get_tenant("acme").await?;

    let rotation = RotateApiKeyRequest { overlap_secs: Some(0) };
    let new = acme.rest.rotate_api_key("acme", &old.id, &rotation).await?;

    let rejected = old_client.get_tenant("acme").await.unwrap_err();
    assert_eq!(rejected.http_status(), Some(401), "{rejected}");
    assert_eq!(rejected.code(), Some(ErrorCode::Unauthorized), "{rejected}");
    let new_client = acme.rest.with_credential(new.key.clone());
    new_client.get_tenant("acme").await?;
    assert_eq!(new.role, KeyRole::Auditor);
    assert_eq!(new.name, None);
    Ok(())
}

/// The tenant's first admin key can rotate itself: the response's key then carries on.
#[tokio::test]
async fn admin_key_rotates_itself() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &[]).await;
    let keys = acme.rest.list_api_keys("acme").await?;
    let [own] = keys.as_slice() else {
        return Err(format!("expected one key, got {keys:?}").into());
    };

    let rotation = RotateApiKeyRequest { overlap_secs: Some(0) };
    let new = acme.rest.rotate_api_key("acme", &own.id, &rotation).await?;

    assert_eq!(new.role, KeyRole::Admin);
    let rejected = acme.rest.list_api_keys("acme").await.unwrap_err();
    assert_eq!(rejected.http_status(), Some(401), "{rejected}");
    let keys = acme.rest.with_credential(new.key).list_api_keys("acme").await?;
    let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
    assert_eq!(ids, vec![new.id.as_str()]);
    Ok(())
}
