//! Deleting a tenant or a user and changing a network policy need an explicit confirmation
//! header naming the object, on top of the role. Without it, or with another id in it, the
//! server answers 428 `confirmation_required` and changes nothing.

mod common;

use bulkhead_client::{Method, RestClient};
use common::*;
use serde_json::{json, Value};

async fn assert_needs_confirmation(client: &RestClient, method: Method, path: &str, body: Option<&Value>, header: &str, id: &str) -> TestResult {
    for headers in [vec![], vec![(header, "someone-else")]] {
        let (status, response) = client.request(method.clone(), path, body, &headers).await?;
        assert_eq!(status, 428, "{method} {path} with {headers:?}: {response}");
        assert_eq!(response["error"]["code"], "confirmation_required");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{header}: {id}")), "the message names the header: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn high_risk_operations_need_confirmation() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let admin = admin(&server);
    let acme = create_tenant(&server, "acme", &["alice"]).await;

    assert_needs_confirmation(&admin, Method::DELETE, "/v1/tenants/acme", None, "X-Confirm-Delete", "acme").await?;
    assert_needs_confirmation(&acme.rest, Method::DELETE, "/v1/tenants/acme/users/alice", None, "X-Confirm-Delete", "alice").await?;
    let policy = json!({"allow": ["10.0.0.0/8"]});
    let path = "/v1/tenants/acme/network-policy";
    assert_needs_confirmation(&admin, Method::PUT, path, Some(&policy), "X-Confirm-Network-Policy", "acme").await?;

    // Nothing changed.
    assert!(admin.get_tenant("acme").await.is_ok());
    assert!(acme.rest.get_user("acme", "alice").await.is_ok());
    assert!(acme.rest.network_policy("acme").await?.allow.is_empty());

    // With the header, each goes through.
    let (status, body) = admin
        .request(Method::PUT, path, Some(&policy), &[("X-Confirm-Network-Policy", "acme")])
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allow"], json!(["10.0.0.0/8"]));
    admin.set_network_policy("acme", &Default::default()).await?;
    acme.rest.delete_user("acme", "alice").await?;
    admin.delete_tenant("acme").await?;
    Ok(())
}
