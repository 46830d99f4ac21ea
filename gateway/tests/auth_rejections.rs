//! Foreign, forged and expired credentials are rejected: 401 for tokens and keys that do not
//! authenticate, 404 for a tenant key on another tenant's path, 403 for a role that may not.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, CreateApiKeyRequest, CreateUserRequest, KeyRole},
    ErrorCode, Method, WsClient,
};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign test token")
}

/// Builds a JWT with `alg: none` and no signature.
fn unsigned(claims: serde_json::Value) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

async fn upgrade_status(server: &TestServer, token: &str) -> Option<u16> {
    match WsClient::connect(&server.ws_url(), token).await {
        Ok(_) => None,
        Err(err) => err.http_status(),
    }
}

#[tokio::test]
async fn foreign_and_forged_credentials_fail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let globex = create_tenant(&server, "globex", &["alice", "gary"]).await;
    create_conversation(&globex, "vault", Group, &["alice", "gary"]).await;
    let exp = now_secs() + 600;

    // A valid token works, so the failures below are about the token alone.
    let valid = sign(json!({"tid": "acme", "sub": "alice", "exp": exp}), &acme.signing_secret);
    assert_eq!(upgrade_status(&server, &valid).await, None);

    let cases = [
        ("no token", String::new()),
        ("garbage", "not-a-jwt".to_string()),
        ("forged secret", sign(json!({"tid": "acme", "sub": "alice", "exp": exp}), "guessed")),
        ("acme-signed token claiming globex", sign(json!({"tid": "globex", "sub": "alice", "exp": exp}), &acme.signing_secret)),
        ("globex-signed token claiming acme", sign(json!({"tid": "acme", "sub": "alice", "exp": exp}), &globex.signing_secret)),
        ("expired", sign(json!({"tid": "acme", "sub": "alice", "exp": now_secs() - 3600}), &acme.signing_secret)),
        ("no exp", sign(json!({"tid": "acme", "sub": "alice"}), &acme.signing_secret)),
        ("alg none", unsigned(json!({"tid": "acme", "sub": "alice", "exp": exp}))),
        ("unknown tenant", sign(json!({"tid": "nobody", "sub": "alice", "exp": exp}), &acme.signing_secret)),
        ("unknown user", sign(json!({"tid": "acme", "sub": "mallory", "exp": exp}), &acme.signing_secret)),
    ];
    for (case, token) in cases {
        assert_eq!(upgrade_status(&server, &token).await, Some(401), "{case}");
    }

    // A user of acme cannot reach globex's conversation, even with a colliding user id.
    let alice = connect(&server, &acme, "alice").await;
    let err = alice.send("vault", "m-1", json!({"text": "hi"})).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let err = alice.history("vault", None, None, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // REST: acme's admin key on globex's paths looks exactly like a missing tenant.
    let routes = [
        (Method::GET, "/v1/tenants/globex"),
        (Method::GET, "/v1/tenants/globex/users"),
        (Method::GET, "/v1/tenants/globex/conversations/vault"),
        (Method::GET, "/v1/tenants/globex/conversations/vault/messages"),
        (Method::GET, "/v1/tenants/globex/keys"),
        (Method::GET, "/v1/tenants/nobody/users"),
    ];
    for (method, path) in routes {
        let (status, body) = acme.rest.request(method.clone(), path, None, &[]).await?;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{method} {path}");
    }
    let (status, _) = acme
        .rest
        .request(Method::POST, "/v1/tenants/globex/users", Some(&json!({"id": "intruder"})), &[])
        .await?;
    assert_eq!(status, 404);
    assert!(globex.rest.get_user("globex", "intruder").await.is_err(), "nothing was created");

    // Keys that do not authenticate.
    for credential in ["", "bhk_0000_1111", "bhk_nounderscore", "test-admin-token-wrong"] {
        let client = acme.rest.with_credential(credential);
        let (status, body) = client.request(Method::GET, "/v1/tenants/acme/users", None, &[]).await?;
        assert_eq!(status, 401, "credential {credential:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    // A tenant key on a platform route, and roles that may not.
    let (status, _) = acme.rest.request(Method::GET, "/v1/tenants", None, &[]).await?;
    assert_eq!(status, 403);
    let auditor = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Auditor, name: None })
        .await?;
    let auditor = acme.rest.with_credential(auditor.key);
    assert!(auditor.get_tenant("acme").await.is_ok());
    let err = auditor.list_users("acme").await.unwrap_err();
    assert_eq!(err.http_status(), Some(403));
    let err = auditor
        .create_user("acme", &CreateUserRequest { id: "x".into(), display_name: None })
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(403));

    // A revoked key stops working at once.
    let service = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Service, name: None })
        .await?;
    let service_client = acme.rest.with_credential(service.key.clone());
    assert!(service_client.list_users("acme").await.is_ok());
    acme.rest.delete_api_key("acme", &service.id).await?;
    let err = service_client.list_users("acme").await.unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    Ok(())
}
