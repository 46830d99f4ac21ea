//! A tenant capped at five millicores still gets every pipelined send acknowledged, in order,
//! but its work waits: the CPU throttled counter rises for it and only for it.

mod common;

use bulkhead_client::proto::{ConversationKind::Group, QuotasPatch};
use common::*;
use serde_json::json;

const SENDS: u64 = 100;

#[tokio::test]
async fn capped_tenant_waits_and_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());

    // Five thousandths of a core: a 50 µs burst, then 5 ms of CPU per second.
    let capped_quotas = QuotasPatch {
        cpu_millicores: Some(5),
        ..QuotasPatch::default()
    };
    let capped = create_tenant_with_quotas(&server, "capped", &["a", "b"], Some(capped_quotas)).await;
    let other = create_tenant(&server, "other", &["c", "d"]).await;
    create_conversation(&capped, "room", Group, &["a", "b"]).await;
    create_conversation(&other, "room", Group, &["c", "d"]).await;

    let a = connect(&server, &capped, "a").await;
    let c = connect(&server, &other, "c").await;

    let mut acks = Vec::new();
    for n in 0..SENDS {
        acks.push(a.send_nowait("room", &format!("m{n}"), json!({ "n": n }))?);
    }
    // The other tenant is served meanwhile.
    for n in 1..=5 {
        assert_eq!(c.send("room", &format!("o{n}"), json!({ "n": n })).await?.seq, n);
    }
    let mut seqs = Vec::new();
    for ack in acks {
        seqs.push(ack.await?.seq);
    }
    assert_eq!(seqs, (1..=SENDS).collect::<Vec<_>>(), "each pipelined send gets the next seq");

    let metrics = admin(&server).metrics_text().await?;
    let throttled = "bulkhead_tenant_throttled_seconds_total";
    assert!(metric(&metrics, throttled, r#"tenant="capped",resource="cpu""#) > 0.0);
    assert_eq!(metric(&metrics, throttled, r#"tenant="other",resource="cpu""#), 0.0);
    assert!(metric(&metrics, "bulkhead_tenant_cpu_seconds_total", r#"tenant="capped""#) > 0.0);
    Ok(())
}
