//! Deleting a tenant needs `X-Confirm-Delete`, closes its sessions, drops its column family,
//! and after a restart the tenant and its data are gone while the other tenant is untouched.

mod common;

use bulkhead_client::{proto::ConversationKind::Group, Method, WsClient};
use bulkhead_storage::{Storage, StorageOptions};
use common::*;
use serde_json::json;

#[tokio::test]
async fn delete_drops_tenant_data() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    let globex = create_tenant(&server, "globex", &["alice", "bob"]).await;
    for tenant in [&acme, &globex] {
        create_conversation(tenant, "team", Group, &["alice", "bob"]).await;
        let alice = connect(&server, tenant, "alice").await;
        for n in 1..=3 {
            alice.send("team", &format!("m{n}"), json!({"text": "data"})).await?;
        }
    }
    let acme_token = token(&acme, "alice").await;
    let acme_session = WsClient::connect(&server.ws_url(), &acme_token).await?;
    let globex_session = connect(&server, &globex, "bob").await;
    let admin = admin(&server);

    // Without the confirmation header, or with the wrong id in it, nothing happens.
    for headers in [vec![], vec![("X-Confirm-Delete", "globex")]] {
        let (status, body) = admin.request(Method::DELETE, "/v1/tenants/acme", None, &headers).await?;
        assert_eq!(status, 428, "{body}");
        assert_eq!(body["error"]["code"], "confirmation_required");
    }
    assert!(admin.get_tenant("acme").await.is_ok());

    admin.delete_tenant("acme").await?;
    let close = acme_session.wait_closed(EVENT_TIMEOUT).await.expect("acme's session is closed");
    assert_eq!(close.0, 4004);
    assert_eq!(admin.get_tenant("acme").await.unwrap_err().http_status(), Some(404));
    let err = acme.rest.list_users("acme").await.unwrap_err();
    assert_eq!(err.http_status(), Some(401), "the deleted tenant's keys are gone");
    let err = WsClient::connect(&server.ws_url(), &acme_token).await.err().expect("token rejected");
    assert_eq!(err.http_status(), Some(401));
    assert!(globex_session.closed().is_none(), "the other tenant's session stays open");

    server.terminate_cleanly();
    let server = TestServer::start(dir.path());
    let admin = common::admin(&server);
    let tenants: Vec<String> = admin.list_tenants().await?.into_iter().map(|t| t.id).collect();
    assert_eq!(tenants, vec!["globex".to_string()]);
    let globex = globex.at(&server);
    let page = globex.rest.list_messages("globex", "team", None, None, None).await?;
    assert_eq!(seqs(&page.items), vec![1, 2, 3]);

    // The same id can be used again and starts empty.
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    let page = acme.rest.list_messages("acme", "team", None, None, None).await?;
    assert!(page.items.is_empty(), "no data of the deleted tenant comes back");

    // Inspect the database itself once the server has stopped.
    let mut server = server;
    admin.delete_tenant("acme").await?;
    server.terminate_cleanly();
    let storage = Storage::open(dir.path(), &StorageOptions::default())?;
    assert!(!storage.has_column_family("acme"), "acme's column family was dropped");
    assert!(storage.has_column_family("globex"));
    Ok(())
}
