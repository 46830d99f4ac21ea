//! Suspending a tenant closes its sessions with 4003 and rejects its credentials with
//! `tenant_suspended` while its data is kept; the status survives a restart, and resuming
//! restores service. Other tenants are not affected.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, TenantStatus},
    ErrorCode, WsClient,
};
use common::*;
use serde_json::json;

#[tokio::test]
async fn suspend_and_resume_end_to_end() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    let globex = create_tenant(&server, "globex", &["alice"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let alice = connect(&server, &acme, "alice").await;
    alice.send("team", "m1", json!({"text": "before"})).await?;
    let acme_token = token(&acme, "bob").await;
    let globex_session = connect(&server, &globex, "alice").await;

    // Only the platform admin suspends.
    let err = acme.rest.suspend_tenant("acme").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));

    let tenant = admin(&server).suspend_tenant("acme").await?;
    assert_eq!(tenant.status, TenantStatus::Suspended);
    let close = alice.wait_closed(EVENT_TIMEOUT).await.expect("acme's session is closed");
    assert_eq!(close.0, 4003);
    assert!(globex_session.closed().is_none(), "the other tenant's session stays open");

    let err = acme.rest.list_users("acme").await.unwrap_err();
    assert_eq!((err.http_status(), err.code()), (Some(403), Some(ErrorCode::TenantSuspended)));
    let err = WsClient::connect(&server.ws_url(), &acme_token).await.err().expect("upgrade rejected");
    assert_eq!(err.http_status(), Some(403));
    assert!(globex.rest.list_users("globex").await.is_ok());
    // The platform admin still reads the suspended tenant's data.
    let page = admin(&server).list_messages("acme", "team", None, None, None).await?;
    assert_eq!(seqs(&page.items), vec![1]);

    // Suspended after a restart, too.
    server.terminate_cleanly();
    let server = TestServer::start(dir.path());
    let acme = acme.at(&server);
    let err = acme.rest.list_users("acme").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TenantSuspended));

    let tenant = admin(&server).resume_tenant("acme").await?;
    assert_eq!(tenant.status, TenantStatus::Active);
    assert_eq!(acme.rest.list_users("acme").await?.len(), 2);
    let bob = WsClient::connect(&server.ws_url(), &acme_token).await?;
    let ack = bob.send("team", "m2", json!({"text": "after"})).await?;
    assert_eq!(ack.seq, 2, "the data from before the suspension is kept");

    // Both changes are in the tenant's log and, as platform actions, in the platform log.
    let log = acme.rest.tenant_audit("acme", &[]).await?;
    let actions: Vec<&str> = log.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["tenant.suspend", "tenant.suspend", "tenant.resume"]);
    assert_eq!(log.items[0].result, "forbidden", "the tenant key's attempt is recorded");
    let platform = admin(&server).platform_audit(&[("action", "tenant.resume".into())]).await?;
    assert_eq!(platform.items.len(), 1);
    Ok(())
}
