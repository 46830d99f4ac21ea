//! A live `PATCH` of a tenant's quotas changes what is enforced, and what `usage` and
//! `/metrics` report, without a reconnect or a restart.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, PatchTenantRequest, QuotasPatch},
    ErrorCode,
};
use common::*;
use serde_json::json;

#[tokio::test]
async fn patch_changes_enforced_quotas() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let quotas = QuotasPatch {
        max_message_bytes: Some(100),
        memory_bytes: Some(1),
        ..QuotasPatch::default()
    };
    let acme = create_tenant_with_quotas(&server, "acme", &["alice", "bob"], Some(quotas)).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    let admin = admin(&server);

    // A 1-byte memory quota admits no send at all.
    let err = alice.send("team", "m1", json!("hi")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded));
    let body = "x".repeat(150);
    let err = alice.send("team", "m2", json!(body)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PayloadTooLarge));

    let patch = PatchTenantRequest {
        quotas: Some(QuotasPatch {
            memory_bytes: Some(1 << 20),
            max_message_bytes: Some(1000),
            ingress_bytes_per_sec: Some(123_456),
            ..QuotasPatch::default()
        }),
        ..PatchTenantRequest::default()
    };
    let tenant = admin.patch_tenant("acme", &patch).await?;
    assert_eq!(tenant.quotas.memory_bytes, 1 << 20);

    // The same session now gets both sends through.
    assert_eq!(alice.send("team", "m1", json!("hi")).await?.seq, 1);
    assert_eq!(alice.send("team", "m2", json!(body)).await?.seq, 2);

    let (status, usage) = acme.rest.request(bulkhead_client::Method::GET, "/v1/tenants/acme/usage", None, &[]).await?;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["resources"]["memory"]["limit"], json!(1048576.0));
    assert_eq!(usage["resources"]["ingress_bandwidth"]["limit"], json!(123456.0));
    assert_eq!(usage["resources"]["connections"]["usage"], json!(1.0));

    let text = admin.metrics_text().await?;
    assert!(text.contains("bulkhead_tenant_quota{tenant=\"acme\",resource=\"ingress_bandwidth\"} 123456\n"), "{text}");
    assert!(text.contains("bulkhead_tenant_quota{tenant=\"acme\",resource=\"memory\"} 1048576\n"));
    assert!(text.contains("bulkhead_tenant_rejected_total{tenant=\"acme\",reason=\"memory\"} 1\n"));
    assert!(text.contains("bulkhead_tenant_rejected_total{tenant=\"acme\",reason=\"payload_too_large\"} 1\n"));
    Ok(())
}
