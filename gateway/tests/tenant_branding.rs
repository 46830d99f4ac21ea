//! Tenant branding: admins set it, every field is validated with a clear `invalid_request`,
//! the tenant's users read it with their user token, and another tenant's credentials get 404.

mod common;

use bulkhead_client::{
    proto::{Branding, CreateApiKeyRequest, KeyRole},
    ErrorCode, Method, RestClient,
};
use common::*;
use serde_json::{json, Value};

fn branding() -> Branding {
    Branding {
        display_name: Some("Acme Chat".into()),
        logo_url: Some("https://cdn.acme.test/logo.png".into()),
        theme_color: Some("#1A73E8".into()),
        welcome_message: Some("Welcome to Acme.\nBe kind.".into()),
        default_locale: Some("zh-cn".into()),
    }
}

#[tokio::test]
async fn branding_is_set_and_read_by_users() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;

    let empty = acme.rest.get_branding("acme").await?;
    assert_eq!(empty, Branding::default(), "nothing is set before the first PUT");

    let stored = acme.rest.put_branding("acme", &branding()).await?;
    assert_eq!(stored.theme_color.as_deref(), Some("#1a73e8"), "colour is stored in lower case");
    assert_eq!(stored.default_locale.as_deref(), Some("zh-CN"), "locale is stored in canonical case");
    assert_eq!(stored.display_name.as_deref(), Some("Acme Chat"));

    // A user of the tenant reads it with a user token, and may do nothing else over REST.
    let alice = RestClient::new(server.http_url(), token(&acme, "alice").await);
    assert_eq!(alice.get_branding("acme").await?, stored);
    let err = alice.put_branding("acme", &Branding::default()).await.expect_err("user changed branding");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = alice.list_users("acme").await.expect_err("user listed users");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));

    // A service key reads but does not change it; the platform admin does both.
    let service_key = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Service, name: None })
        .await?;
    let service = RestClient::new(server.http_url(), service_key.key);
    assert_eq!(service.get_branding("acme").await?, stored);
    let err = service.put_branding("acme", &branding()).await.expect_err("service key changed branding");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let cleared = admin(&server)
        .put_branding("acme", &Branding { display_name: Some("Acme".into()), ..Default::default() })
        .await?;
    assert_eq!(cleared.logo_url, None, "a PUT replaces every field");
    assert_eq!(alice.get_branding("acme").await?.display_name.as_deref(), Some("Acme"));
    Ok(())
}

#[tokio::test]
async fn foreign_credentials_get_not_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let globex = create_tenant(&server, "globex", &["gina"]).await;
    acme.rest.put_branding("acme", &branding()).await?;

    let gina = RestClient::new(server.http_url(), token(&globex, "gina").await);
    for (who, client) in [("globex user token", &gina), ("globex admin key", &globex.rest)] {
        let err = client.get_branding("acme").await.expect_err("foreign read");
        assert_eq!(err.http_status(), Some(404), "{who}");
        assert_eq!(err.code(), Some(ErrorCode::NotFound), "{who}");
        let err = client.put_branding("acme", &Branding::default()).await.expect_err("foreign write");
        assert_eq!(err.http_status(), Some(404), "{who}");
    }
    assert_eq!(acme.rest.get_branding("acme").await?.display_name.as_deref(), Some("Acme Chat"));

    // A user token signed with the wrong secret is no credential at all.
    let forged = {
        let claims = json!({"tid": "acme", "sub": "alice", "exp": 4_000_000_000u64});
        let key = jsonwebtoken::EncodingKey::from_secret(globex.signing_secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)?
    };
    let err = RestClient::new(server.http_url(), forged).get_branding("acme").await.expect_err("forged token");
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));
    Ok(())
}

#[tokio::test]
async fn invalid_fields_are_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &[]).await;
    acme.rest.put_branding("acme", &branding()).await?;

    let cases: [(&str, Value); 10] = [
        ("logo_url", json!({"logo_url": "http://cdn.acme.test/logo.png"})),
        ("logo_url", json!({"logo_url": "not a url"})),
        ("theme_color", json!({"theme_color": "blue"})),
        ("theme_color", json!({"theme_color": "#12345"})),
        ("default_locale", json!({"default_locale": "en_US"})),
        ("default_locale", json!({"default_locale": "xx-QQQ"})),
        ("display_name", json!({"display_name": "   "})),
        ("display_name", json!({"display_name": "x".repeat(101)})),
        ("welcome_message", json!({"welcome_message": "y".repeat(2001)})),
        ("motto", json!({"motto": "unknown fields are rejected"})),
    ];
    for (field, body) in cases {
        let (status, response) = acme.rest.request(Method::PUT, "/v1/tenants/acme/branding", Some(&body), &[]).await?;
        assert_eq!(status, 400, "{body}");
        assert_eq!(response["error"]["code"], "invalid_request", "{body}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "message for {body} names {field}: {message}");
    }
    assert_eq!(acme.rest.get_branding("acme").await?.display_name.as_deref(), Some("Acme Chat"), "a rejected PUT changes nothing");
    Ok(())
}
