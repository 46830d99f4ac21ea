//! A tenant's plan decides which features it gets: a disabled feature answers
//! `feature_disabled` over WebSocket and REST, unknown feature names are rejected, and a
//! PATCH that enables a feature takes effect on open sessions at once.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, CreateTenantRequest, PatchTenantRequest},
    ClientError, ErrorCode, Method,
};
use common::*;
use serde_json::json;

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.code(),
    }
}

#[tokio::test]
async fn disabled_features_are_rejected_until_enabled() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant_with_features(&server, "acme", &["alice", "bob"], &["read_receipts"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    alice.send("team", "m1", json!({"text": "hi"})).await?;

    assert_eq!(code(alice.typing("team").await), Some(ErrorCode::FeatureDisabled));
    assert_eq!(code(alice.history("team", None, None, None).await), Some(ErrorCode::FeatureDisabled));
    let rest_history = acme.rest.list_messages("acme", "team", None, None, None).await;
    assert_eq!(rest_history.as_ref().err().and_then(|e| e.http_status()), Some(403));
    assert_eq!(code(rest_history), Some(ErrorCode::FeatureDisabled));

    // `sync` recovers missed messages, so it stays available without `history`.
    let pages = alice.sync(&Default::default(), None).await?;
    assert_eq!(seqs(&pages[0].items), vec![1]);

    let patch = PatchTenantRequest {
        features: Some(vec!["read_receipts".into(), "typing".into(), "history".into()]),
        ..Default::default()
    };
    let tenant = admin(&server).patch_tenant("acme", &patch).await?;
    assert_eq!(tenant.features, vec!["history", "read_receipts", "typing"]);

    // The same session, opened before the PATCH, gets both features now.
    alice.typing("team").await?;
    let (items, _) = alice.history("team", None, None, None).await?;
    assert_eq!(seqs(&items), vec![1]);
    let page = acme.rest.list_messages("acme", "team", None, None, None).await?;
    assert_eq!(seqs(&page.items), vec![1]);
    Ok(())
}

#[tokio::test]
async fn unknown_feature_is_invalid_request() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let platform = admin(&server);

    let request = CreateTenantRequest {
        id: "acme".into(),
        name: "Acme".into(),
        tier: None,
        quotas: None,
        features: Some(vec!["typing".into(), "presence".into()]),
    };
    let err = platform.create_tenant(&request).await.expect_err("unknown feature accepted");
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    assert!(err.to_string().contains("presence"), "{err}");

    // Left out, the list is every known feature.
    create_tenant(&server, "acme", &[]).await;
    let tenant = platform.get_tenant("acme").await?;
    assert_eq!(tenant.features, vec!["edit_recall", "export", "history", "read_receipts", "typing"]);

    let (status, body) = platform
        .request(Method::PATCH, "/v1/tenants/acme", Some(&json!({"features": ["history", "Typing"]})), &[])
        .await?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(platform.get_tenant("acme").await?.features.len(), 5, "a rejected PATCH changes nothing");
    Ok(())
}
