//! The platform operator token reads tenants and their usage and nothing else. Every change,
//! every tenant's users, messages, keys and audit log, and the platform audit log return 403.
//! Without a configured operator token, the same token is an invalid credential (401).

mod common;

use bulkhead_client::{Method, RestClient};
use common::*;

const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";

#[tokio::test]
async fn operator_reads_tenants_and_usage_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_env(dir.path(), &[("BULKHEAD_OPERATOR_TOKEN", OPERATOR_TOKEN)]);
    create_tenant(&server, "acme", &["alice", "bob"]).await;
    let operator = RestClient::new(server.http_url(), OPERATOR_TOKEN);

    let tenants = operator.list_tenants().await?;
    assert_eq!(tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["acme"]);
    assert_eq!(operator.get_tenant("acme").await?.id, "acme");
    let (status, usage) = operator.request(Method::GET, "/v1/tenants/acme/usage", None, &[]).await?;
    assert_eq!(status, 200, "{usage}");

    let forbidden_routes = [
        (Method::POST, "/v1/tenants", Some(r#"{"id":"other","name":"Other"}"#)),
        (Method::PATCH, "/v1/tenants/acme", Some(r#"{"name":"Renamed"}"#)),
        (Method::POST, "/v1/tenants/acme/suspend", None),
        (Method::GET, "/v1/tenants/acme/users", None),
        (Method::GET, "/v1/tenants/acme/conversations", None),
        (Method::GET, "/v1/tenants/acme/keys", None),
        (Method::POST, "/v1/tenants/acme/tokens", Some(r#"{"user":"alice","ttl_secs":60}"#)),
        (Method::GET, "/v1/tenants/acme/audit", None),
        (Method::GET, "/v1/tenants/acme/network-policy", None),
        (Method::GET, "/v1/audit", None),
    ];
    for (method, path, body) in forbidden_routes {
        let body = body.map(serde_json::from_str).transpose()?;
        let (status, response) = operator.request(method.clone(), path, body.as_ref(), &[]).await?;
        assert_eq!(status, 403, "{method} {path}: {response}");
    }
    let delete = operator.delete_tenant("acme").await.unwrap_err();
    assert_eq!(delete.http_status(), Some(403), "{delete}");

    // Nothing changed: the tenant is still there with its name and quotas.
    let tenant = admin(&server).get_tenant("acme").await?;
    assert_eq!(tenant.name, "Tenant acme");
    assert_eq!(tenant.quotas.cpu_millicores, 1000);
    Ok(())
}

#[tokio::test]
async fn operator_token_is_invalid_when_not_configured() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let error = RestClient::new(server.http_url(), OPERATOR_TOKEN).list_tenants().await.unwrap_err();
    assert_eq!(error.http_status(), Some(401), "{error}");
    Ok(())
}
