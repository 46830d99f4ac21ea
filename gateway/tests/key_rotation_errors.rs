//! Rotations that cannot happen get a stable error code and change nothing: a key that was
//! already rotated, a revoked or unknown key, another tenant's key and an overlap out of
//! bounds. Without a body, the default overlap of a day applies.

mod common;

use bulkhead_client::{
    proto::{CreateApiKeyRequest, KeyRole, RotateApiKeyRequest},
    ErrorCode, Method,
};
use common::*;
use serde_json::json;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

#[tokio::test]
async fn impossible_rotations_are_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &[]).await;
    let other = create_tenant(&server, "other", &[]).await;
    let service = CreateApiKeyRequest {
        role: KeyRole::Service,
        name: None,
    };
    let rotation = RotateApiKeyRequest { overlap_secs: Some(60) };

    // A key that was already rotated: 409 conflict, and no second replacement.
    let rotated = acme.rest.create_api_key("acme", &service).await?;
    acme.rest.rotate_api_key("acme", &rotated.id, &rotation).await?;
    let keys_before = acme.rest.list_api_keys("acme").await?.len();
    let err = acme.rest.rotate_api_key("acme", &rotated.id, &rotation).await.unwrap_err();
    assert_eq!(err.http_status(), Some(409), "{err}");
    assert_eq!(err.code(), Some(ErrorCode::Conflict), "{err}");
    assert_eq!(acme.rest.list_api_keys("acme").await?.len(), keys_before);

    // A revoked key and an unknown key: 404 not_found.
    let revoked = acme.rest.create_api_key("acme", &service).await?;
    acme.rest.delete_api_key("acme", &revoked.id).await?;
    for key_id in [revoked.id.as_str(), "000000000000"] {
        let err = acme.rest.rotate_api_key("acme", key_id, &rotation).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotFound), "{key_id}: {err}");
    }

    // Another tenant's key on acme's path: 404 not_found, and that key keeps no expiry.
    let foreign = other.rest.create_api_key("other", &service).await?;
    let err = acme.rest.rotate_api_key("acme", &foreign.id, &rotation).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let foreign_keys = other.rest.list_api_keys("other").await?;
    let listed = foreign_keys.iter().find(|key| key.id == foreign.id).ok_or("foreign key is gone")?;
    assert_eq!(listed.expires_at, None);

    // An overlap above 7 days, a negative one and an unknown field: 400 invalid_request.
    let fresh = acme.rest.create_api_key("acme", &service).await?;
    let path = format!("/v1/tenants/acme/keys/{}/rotate", fresh.id);
    for body in [json!({"overlap_secs": 7 * 24 * 3600 + 1}), json!({"overlap_secs": -1}), json!({"overlap": 5})] {
        let (status, response) = acme.rest.request(Method::POST, &path, Some(&body), &[]).await?;
        assert_eq!(status, 400, "{body}: {response}");
        assert_eq!(response["error"]["code"], "invalid_request", "{body}: {response}");
    }

    // Exactly 7 days is allowed.
    let longest = acme.rest.create_api_key("acme", &service).await?;
    let week = RotateApiKeyRequest { overlap_secs: Some(7 * 24 * 3600) };
    acme.rest.rotate_api_key("acme", &longest.id, &week).await?;

    // No body: the default overlap of a day.
    let before_ms = bulkhead_storage::now_ms();
    let (status, response) = acme.rest.request(Method::POST, &path, None, &[]).await?;
    assert_eq!(status, 201, "{response}");
    let expires_at = response["replaces"]["expires_at"].as_u64().ok_or("no expires_at in the response")?;
    assert!(expires_at >= before_ms + DAY_MS, "expires_at {expires_at} is less than a day away");
    assert!(expires_at <= bulkhead_storage::now_ms() + DAY_MS, "expires_at {expires_at} is more than a day away");
    Ok(())
}
