//! `last_used_at` of an API key is `null` until the key authenticates a request, then shows
//! the latest use, also after the server restarts on the same data directory.

mod common;

use bulkhead_client::{
    proto::{ApiKey, CreateApiKeyRequest, KeyRole},
    RestClient,
};
use common::*;

async fn listed(admin_key: &RestClient, key_id: &str) -> Result<ApiKey, Box<dyn std::error::Error>> {
    let keys = admin_key.list_api_keys("acme").await?;
    let key = keys.into_iter().find(|key| key.id == key_id);
    Ok(key.ok_or_else(|| format!("key {key_id} is not listed"))?)
}

fn now_ms() -> u64 {
    bulkhead_storage::now_ms()
}

#[tokio::test]
async fn last_use_is_listed_and_survives_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let request = CreateApiKeyRequest {
        role: KeyRole::Service,
        name: Some("backend".into()),
    };
    let service = acme.rest.create_api_key("acme", &request).await?;

    let unused = listed(&acme.rest, &service.id).await?;
    assert_eq!(unused.last_used_at, None);

    // The first use is stored at once, the second only in memory, within the same minute.
    let service_client = acme.rest.with_credential(service.key.clone());
    let before_ms = now_ms();
    service_client.list_users("acme").await?;
    let first_ms = listed(&acme.rest, &service.id).await?.last_used_at.ok_or("no last use after a request")?;
    assert!(first_ms >= before_ms, "last use {first_ms} is before the request at {before_ms}");
    assert!(first_ms <= now_ms(), "last use {first_ms} is in the future");

    // A later millisecond, so that the second use differs from the stored one.
    while now_ms() <= first_ms {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    service_client.get_user("acme", "alice").await?;
    let second_ms = listed(&acme.rest, &service.id).await?.last_used_at.ok_or("no last use after a second request")?;
    assert!(second_ms > first_ms, "last use did not move on from {first_ms}: {second_ms}");

    // A graceful stop stores the use that was only in memory.
    assert!(server.terminate().success(), "server did not exit cleanly; log:\n{}", server.log());
    let server = TestServer::start(dir.path());
    let acme = acme.at(&server);
    let restarted = listed(&acme.rest, &service.id).await?;
    assert_eq!(restarted.last_used_at, Some(second_ms));
    assert_eq!(restarted.name.as_deref(), Some("backend"));
    assert_eq!(restarted.expires_at, None);
    Ok(())
}
