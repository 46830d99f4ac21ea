//! An export needs the confirmation header naming the tenant, the `export` feature in the
//! tenant's plan, an admin key or the platform admin token, and a valid body. Each refusal
//! returns its error code and no export data, and is recorded in the tenant's audit log.

mod common;

use bulkhead_client::{
    proto::{
        export::{ExportRequest, CONFIRM_EXPORT_HEADER},
        CreateApiKeyRequest, KeyRole, PatchTenantRequest,
    },
    Method, RestClient,
};
use common::*;
use serde_json::{json, Value};

const PATH: &str = "/v1/tenants/acme/export";

/// Calls the export route and returns the status and the error code of the response.
async fn refused(client: &RestClient, body: Value, confirm: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = confirm.map(|tid| (CONFIRM_EXPORT_HEADER, tid)).into_iter().collect();
    let (status, response) = client.request(Method::POST, PATH, Some(&body), &headers).await.expect("request");
    let code = response["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error: {response}"));
    (status, code.to_owned())
}

#[tokio::test]
async fn confirmation_header_is_required() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;

    let missing = refused(&acme.rest, json!({"mask": false}), None).await;
    assert_eq!(missing, (428, "confirmation_required".to_owned()));
    let wrong = refused(&acme.rest, json!({"mask": false}), Some("globex")).await;
    assert_eq!(wrong, (428, "confirmation_required".to_owned()));

    let log = acme.rest.tenant_audit("acme", &[("action", "tenant.export".into())]).await?.items;
    let results: Vec<&str> = log.iter().map(|entry| entry.result.as_str()).collect();
    assert_eq!(results, ["confirmation_required", "confirmation_required"]);

    // With the header, the same call succeeds; an empty body exports without masking.
    let (status, text) = acme.rest.request(Method::POST, PATH, None, &[(CONFIRM_EXPORT_HEADER, "acme")]).await?;
    assert_eq!(status, 200);
    let text = text.as_str().expect("NDJSON is not one JSON value");
    assert!(text.contains(r#""masked":false"#), "{text}");
    assert!(text.contains(r#""type":"end""#), "{text}");
    Ok(())
}

#[tokio::test]
async fn export_feature_is_required() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant_with_features(&server, "acme", &["alice"], &["history"]).await;

    let disabled = refused(&acme.rest, json!({"mask": true}), Some("acme")).await;
    assert_eq!(disabled, (403, "feature_disabled".to_owned()));
    let as_platform = refused(&admin(&server), json!({"mask": true}), Some("acme")).await;
    assert_eq!(as_platform, (403, "feature_disabled".to_owned()), "the plan binds the platform admin too");

    let patch = PatchTenantRequest {
        features: Some(vec!["history".into(), "export".into()]),
        ..Default::default()
    };
    admin(&server).patch_tenant("acme", &patch).await?;
    let text = acme.rest.export_tenant("acme", &ExportRequest { mask: true }).await?;
    assert!(text.contains(r#""masked":true"#), "{text}");
    Ok(())
}

#[tokio::test]
async fn only_admins_may_export() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let globex = create_tenant(&server, "globex", &[]).await;
    let key = |role| CreateApiKeyRequest { role, name: None };
    let auditor = acme.rest.create_api_key("acme", &key(KeyRole::Auditor)).await?.key;
    let service = acme.rest.create_api_key("acme", &key(KeyRole::Service)).await?.key;
    let user = token(&acme, "alice").await;

    let cases = [
        ("auditor key", auditor.as_str(), 403, "forbidden"),
        ("service key", service.as_str(), 403, "forbidden"),
        ("user token", user.as_str(), 403, "forbidden"),
        ("another tenant's admin key", globex.rest.credential(), 404, "not_found"),
        ("no credential", "", 401, "unauthorized"),
    ];
    for (who, credential, status, code) in cases {
        let client = acme.rest.with_credential(credential);
        let got = refused(&client, json!({"mask": false}), Some("acme")).await;
        assert_eq!(got, (status, code.to_owned()), "{who}");
    }

    let bad_bodies = [json!({"mask": "yes"}), json!({"mask": false, "format": 2}), json!([true])];
    for body in bad_bodies {
        let got = refused(&acme.rest, body.clone(), Some("acme")).await;
        assert_eq!(got, (400, "invalid_request".to_owned()), "{body}");
    }

    // The tenant's own log records the refused keys, but not the other tenant's key.
    let log = acme.rest.tenant_audit("acme", &[("action", "tenant.export".into())]).await?.items;
    let results: Vec<(&str, &str)> = log.iter().map(|e| (e.role.as_str(), e.result.as_str())).collect();
    assert_eq!(
        results[..2],
        [("auditor", "forbidden"), ("service", "forbidden")],
        "{results:?}"
    );
    assert!(log.iter().all(|entry| entry.role != "platform"));
    Ok(())
}
