//! A live `PATCH` of `rest_requests_per_sec` applies at once, and the platform admin is not
//! held back by the rate limit of the tenant it manages.

mod common;

use bulkhead_client::{
    proto::{PatchTenantRequest, QuotasPatch},
    ErrorCode,
};
use common::*;

/// Requests sent after the first one while waiting for a 429. At 1 request per second
/// this many requests find the bucket empty unless each one takes over 50 ms.
const REQUESTS_AFTER_BURST: usize = 20;

#[tokio::test]
async fn patch_raises_rest_rate_at_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let quotas = QuotasPatch {
        rest_requests_per_sec: Some(1),
        ..QuotasPatch::default()
    };
    let acme = create_tenant_with_quotas(&server, "acme", &[], Some(quotas)).await;
    // Without retries, so that every 429 reaches the test.
    let key = acme.rest.clone().with_rate_limit_retries(0);
    let admin = admin(&server);

    key.list_users("acme").await?;
    let mut rate_limited = false;
    for _ in 0..REQUESTS_AFTER_BURST {
        if let Err(err) = key.list_users("acme").await {
            assert_eq!(err.code(), Some(ErrorCode::RateLimited), "{err}");
            rate_limited = true;
            break;
        }
    }
    assert!(rate_limited, "no request was rate limited at 1 request per second");

    // The operator still reads and changes the throttled tenant: platform calls take no token.
    for _ in 0..5 {
        admin.get_tenant("acme").await?;
    }
    let patch = PatchTenantRequest {
        quotas: Some(QuotasPatch {
            rest_requests_per_sec: Some(1000),
            ..QuotasPatch::default()
        }),
        ..PatchTenantRequest::default()
    };
    let tenant = admin.patch_tenant("acme", &patch).await?;
    assert_eq!(tenant.quotas.rest_requests_per_sec, 1000);

    // The raised limit starts with a full bucket of 1,000 tokens.
    for _ in 0..50 {
        key.list_users("acme").await?;
    }

    let text = admin.metrics_text().await?;
    assert!(text.contains("bulkhead_tenant_quota{tenant=\"acme\",resource=\"rest_requests\"} 1000\n"), "{text}");
    assert!(text.contains("bulkhead_tenant_rejected_total{tenant=\"acme\",reason=\"rate_limited\"} 1\n"), "{text}");
    Ok(())
}
