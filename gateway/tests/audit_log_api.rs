//! High-risk actions land in the tenant's and the platform's audit logs, with actor, role,
//! source and result, linked by hashes; the logs are read with filters and pages by the
//! roles that may read them.

mod common;

use bulkhead_client::{
    proto::{AuditActor, CreateApiKeyRequest, KeyRole, NetworkPolicy, PatchTenantRequest, QuotasPatch},
    ErrorCode, Method,
};
use common::*;

fn query(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[tokio::test]
async fn actions_are_recorded_and_readable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let admin = admin(&server);
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;

    let auditor = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Auditor, name: None })
        .await?;
    let service = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Service, name: None })
        .await?;
    acme.rest.delete_api_key("acme", &service.id).await?;
    acme.rest.delete_user("acme", "bob").await?;
    let (status, _) = acme.rest.request(Method::DELETE, "/v1/tenants/acme/users/alice", None, &[]).await?;
    assert_eq!(status, 428, "a delete without confirmation fails and is recorded");
    let policy = NetworkPolicy { allow: vec!["127.0.0.0/8".into()] };
    admin.set_network_policy("acme", &policy).await?;
    let patch = PatchTenantRequest {
        quotas: Some(QuotasPatch { max_connections: Some(5), ..QuotasPatch::default() }),
        ..PatchTenantRequest::default()
    };
    admin.patch_tenant("acme", &patch).await?;

    // The tenant log, read by the auditor key.
    let auditor_rest = acme.rest.with_credential(auditor.key.clone());
    let page = auditor_rest.tenant_audit("acme", &[]).await?;
    let actions: Vec<&str> = page.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["key.create", "key.create", "key.revoke", "user.delete", "user.delete", "network_policy.update"]
    );
    let results: Vec<&str> = page.items.iter().map(|e| e.result.as_str()).collect();
    assert_eq!(results, vec!["ok", "ok", "ok", "ok", "confirmation_required", "ok"]);

    let revoke = &page.items[2];
    assert_eq!(revoke.object, service.id);
    assert_eq!(revoke.role, "admin");
    assert_eq!(revoke.source, "127.0.0.1");
    assert!(matches!(&revoke.actor, AuditActor::ApiKey { id } if !id.is_empty()));
    let policy_entry = &page.items[5];
    assert_eq!(policy_entry.actor, AuditActor::PlatformAdmin);
    assert_eq!(policy_entry.detail.as_deref(), Some("allow: [] -> [127.0.0.0/8]"));

    assert_eq!(page.items[0].prev_sha256, "0".repeat(64));
    for pair in page.items.windows(2) {
        assert_eq!(pair[1].prev_sha256, pair[0].sha256, "entry {} links to entry {}", pair[1].seq, pair[0].seq);
    }
    let head = page.head.expect("a non-empty log has a head");
    assert_eq!((head.seq, head.sha256.as_str()), (6, page.items[5].sha256.as_str()));

    // Filters and pages.
    let deletes = auditor_rest.tenant_audit("acme", &query(&[("action", "user.delete"), ("limit", "1")])).await?;
    assert_eq!(deletes.items.len(), 1);
    assert!(deletes.more);
    let after = deletes.items[0].seq.to_string();
    let next = auditor_rest
        .tenant_audit("acme", &query(&[("action", "user.delete"), ("after", &after)]))
        .await?;
    assert_eq!(next.items.len(), 1);
    assert_eq!(next.items[0].result, "confirmation_required");
    assert!(!next.more);
    let future = (page.items[5].ts + 60_000).to_string();
    let none = auditor_rest.tenant_audit("acme", &query(&[("since", &future)])).await?;
    assert!(none.items.is_empty());
    let until = page.items[0].ts.to_string();
    let early = auditor_rest.tenant_audit("acme", &query(&[("until", &until)])).await?;
    assert!(early.items.iter().all(|e| e.ts <= page.items[0].ts));
    assert!(!early.items.is_empty());

    // The platform log has the tenant's creation, the quota change and the platform admin's
    // tenant action, but none of the tenant key's actions.
    let platform = admin.platform_audit(&[]).await?;
    let actions: Vec<&str> = platform.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["tenant.create", "network_policy.update", "tenant.update"]);
    assert_eq!(platform.items[2].detail.as_deref(), Some("max_connections: 10000 -> 5"));
    Ok(())
}

#[tokio::test]
async fn audit_readers_are_limited() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &[]).await;
    create_tenant(&server, "globex", &[]).await;
    let service = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Service, name: None })
        .await?;
    let service_rest = acme.rest.with_credential(service.key);

    let err = service_rest.tenant_audit("acme", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = acme.rest.tenant_audit("globex", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let err = acme.rest.platform_audit(&[]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = acme.rest.tenant_audit("acme", &query(&[("limit", "0")])).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    assert!(admin(&server).tenant_audit("acme", &[]).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn tenant_delete_stays_in_platform_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    create_tenant(&server, "acme", &[]).await;
    admin(&server).delete_tenant("acme").await?;
    server.terminate_cleanly();

    let server = TestServer::start(dir.path());
    let platform = admin(&server).platform_audit(&query(&[("action", "tenant.delete")])).await?;
    assert_eq!(platform.items.len(), 1);
    assert_eq!(platform.items[0].object, "acme");
    assert_eq!(platform.items[0].result, "ok");
    Ok(())
}
