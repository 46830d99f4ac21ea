//! With `tenant_host_suffix` set, a request on `<tid>.<suffix>` reaches only tenant `<tid>`:
//! other tenants' REST paths are not found and their WebSocket tokens are refused, exactly
//! as if those tenants did not exist. Requests on other hosts work as before.

mod common;

use common::{raw_http, *};

const SUFFIX: &str = "chat.example.com";

fn start_with_suffix(dir: &tempfile::TempDir) -> TestServer {
    let config = dir.path().join("bulkhead.toml");
    std::fs::write(&config, format!("tenant_host_suffix = \"{SUFFIX}\"\n")).expect("write the config file");
    let config = config.to_str().expect("temp path is UTF-8").to_owned();
    TestServer::start_with_env(&dir.path().join("data"), &[("BULKHEAD_CONFIG", config.as_str())])
}

#[tokio::test]
async fn tenant_host_reaches_only_its_tenant() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = start_with_suffix(&dir);
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let globex = create_tenant(&server, "globex", &["gina"]).await;
    let acme_host = format!("acme.{SUFFIX}");
    let plain_host = server.addr.to_string();
    let addr = server.addr;

    // On acme's host, acme's paths work with acme's key and with the platform admin token.
    for credential in [acme.rest.credential(), ADMIN_TOKEN] {
        let response = raw_http::get(addr, &acme_host, "/v1/tenants/acme/users", credential).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    // globex's paths there get the response of a tenant that does not exist.
    let missing = raw_http::get(addr, &plain_host, "/v1/tenants/nosuch/users", ADMIN_TOKEN).await;
    assert_eq!(missing.status, 404);
    for credential in [globex.rest.credential(), ADMIN_TOKEN] {
        let response = raw_http::get(addr, &acme_host, "/v1/tenants/globex/users", credential).await;
        assert_eq!(response.status, 404, "{}", response.body);
        assert_eq!(response.error_code(), "not_found");
        assert_eq!(response.json()["error"]["message"], missing.json()["error"]["message"].as_str().unwrap().replace("nosuch", "globex"));
    }

    // A host that is not under the suffix is not pinned, and the port is ignored.
    let response = raw_http::get(addr, &plain_host, "/v1/tenants/globex/users", ADMIN_TOKEN).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let globex_host = format!("globex.{SUFFIX}:443");
    let response = raw_http::get(addr, &globex_host, "/v1/tenants/globex/users", ADMIN_TOKEN).await;
    assert_eq!(response.status, 200, "{}", response.body);

    // WebSocket: a globex token on acme's host gets the same 401 as a token whose tenant
    // was deleted.
    let deleted = create_tenant(&server, "deleted", &["ghost"]).await;
    let deleted_token = token(&deleted, "ghost").await;
    admin(&server).delete_tenant("deleted").await?;
    let unknown = raw_http::ws_upgrade(addr, &plain_host, &deleted_token).await;
    assert_eq!(unknown.status, 401, "{}", unknown.body);

    let gina = token(&globex, "gina").await;
    let refused = raw_http::ws_upgrade(addr, &acme_host, &gina).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.error_code(), "unauthorized");
    assert_eq!(refused.json(), unknown.json());

    let accepted = raw_http::ws_upgrade(addr, &format!("globex.{SUFFIX}"), &gina).await;
    assert_eq!(accepted.status, 101, "{}", accepted.body);
    let alice = token(&acme, "alice").await;
    let accepted = raw_http::ws_upgrade(addr, &acme_host, &alice).await;
    assert_eq!(accepted.status, 101, "{}", accepted.body);
    let accepted = raw_http::ws_upgrade(addr, &plain_host, &gina).await;
    assert_eq!(accepted.status, 101, "{}", accepted.body);
    Ok(())
}
