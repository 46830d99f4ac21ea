//! A tenant over its `rest_requests_per_sec` gets 429 `rate_limited` with `Retry-After`,
//! while another tenant's requests at the same moment succeed. The rejections show in
//! `usage` and `/metrics`, and the series go away with the tenant.

mod common;

use bulkhead_client::proto::QuotasPatch;
use common::{raw_http, *};
use serde_json::json;

/// Requests sent after the burst while waiting for the first 429. At 2 requests per second
/// the bucket refills one token per 500 ms, so this many requests find it empty unless
/// each one takes over 100 ms.
const REQUESTS_AFTER_BURST: usize = 20;

#[tokio::test]
async fn tenant_over_rest_rate_gets_429() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let slow_quotas = QuotasPatch {
        rest_requests_per_sec: Some(2),
        ..QuotasPatch::default()
    };
    // No users: creating them would spend the slow tenant's burst before the test starts.
    let slow = create_tenant_with_quotas(&server, "slow", &[], Some(slow_quotas)).await;
    let fast = create_tenant(&server, "fast", &[]).await;
    let slow_key = slow.rest.credential().to_owned();
    let fast_key = fast.rest.credential().to_owned();
    let host = server.addr.to_string();

    // The burst is one second's worth: two requests.
    for _ in 0..2 {
        let response = raw_http::get(server.addr, &host, "/v1/tenants/slow/users", &slow_key).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    let mut rejected = Vec::new();
    for _ in 0..REQUESTS_AFTER_BURST {
        let response = raw_http::get(server.addr, &host, "/v1/tenants/slow/users", &slow_key).await;
        match response.status {
            200 => {}
            429 => rejected.push(response),
            other => panic!("unexpected status {other}: {}", response.body),
        }
    }
    assert!(!rejected.is_empty(), "no request of the slow tenant was rate limited");

    let first = &rejected[0];
    assert_eq!(first.error_code(), "rate_limited");
    assert_eq!(first.json()["error"]["resource"], json!("rest_requests"));
    let retry_after: u64 = first.header("retry-after").expect("Retry-After header").parse()?;
    assert!(retry_after >= 1, "Retry-After is {retry_after}");

    // The other tenant is not affected while the slow one is over its limit.
    for _ in 0..10 {
        let response = raw_http::get(server.addr, &host, "/v1/tenants/fast/users", &fast_key).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    let admin = admin(&server);
    let (status, usage) = admin.request(bulkhead_client::Method::GET, "/v1/tenants/slow/usage", None, &[]).await?;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["quotas"]["rest_requests_per_sec"], json!(2));
    assert_eq!(usage["resources"]["rest_requests"]["limit"], json!(2.0));

    let text = admin.metrics_text().await?;
    let slow_rejected = format!("bulkhead_tenant_rejected_total{{tenant=\"slow\",reason=\"rate_limited\"}} {}\n", rejected.len());
    assert!(text.contains(&slow_rejected), "expected {slow_rejected} in\n{text}");
    assert!(text.contains("bulkhead_tenant_rejected_total{tenant=\"fast\",reason=\"rate_limited\"} 0\n"));
    assert!(text.contains("bulkhead_tenant_quota{tenant=\"slow\",resource=\"rest_requests\"} 2\n"));
    assert!(text.contains("bulkhead_tenant_quota{tenant=\"fast\",resource=\"rest_requests\"} 1000\n"));
    assert!(text.contains("bulkhead_tenant_throttled_seconds_total{tenant=\"slow\",resource=\"rest_requests\"}"));

    admin.delete_tenant("slow").await?;
    let text = admin.metrics_text().await?;
    assert!(!text.contains("tenant=\"slow\""), "series of the deleted tenant remain:\n{text}");
    Ok(())
}
