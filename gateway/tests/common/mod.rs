//! Shared set-up for the gateway's integration tests: a real server process, tenants,
//! users and conversations created through the REST API, and WebSocket clients.

#![allow(dead_code)]

pub mod export;
pub mod raw_http;
pub mod server;

use std::time::Duration;

use bulkhead_client::{
    proto::{
        ConversationKind, CreateConversationRequest, CreateTenantRequest, CreateUserRequest, MintTokenRequest,
        QuotasPatch, Tier,
    },
    MessageItem, RestClient, ServerFrame, WsClient,
};
pub use server::{TestServer, ADMIN_TOKEN};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How long a test waits for an event that must arrive.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a test waits to conclude that an event does not arrive.
pub const QUIET_PERIOD: Duration = Duration::from_millis(300);

pub fn admin(server: &TestServer) -> RestClient {
    RestClient::new(server.http_url(), ADMIN_TOKEN)
}

/// A tenant created for a test, with the credentials returned at creation.
pub struct Tenant {
    pub id: String,
    /// The tenant's first API key (role `admin`).
    pub rest: RestClient,
    pub signing_secret: String,
}

impl Tenant {
    /// Returns the same tenant's credentials aimed at `server`, e.g. after a restart on a new port.
    pub fn at(&self, server: &TestServer) -> Tenant {
        Tenant {
            id: self.id.clone(),
            rest: RestClient::new(server.http_url(), self.rest.credential()),
            signing_secret: self.signing_secret.clone(),
        }
    }
}

pub async fn create_tenant(server: &TestServer, id: &str, users: &[&str]) -> Tenant {
    create_tenant_with_quotas(server, id, users, None).await
}

pub async fn create_tenant_with_quotas(
    server: &TestServer,
    id: &str,
    users: &[&str],
    quotas: Option<QuotasPatch>,
) -> Tenant {
    create_tenant_with(server, id, users, quotas, None, None).await
}

/// Creates a tenant whose data lives on `tier`.
pub async fn create_tenant_on_tier(server: &TestServer, id: &str, users: &[&str], tier: Tier) -> Tenant {
    create_tenant_with(server, id, users, None, None, Some(tier)).await
}

/// Creates a tenant whose plan has only `features`.
pub async fn create_tenant_with_features(server: &TestServer, id: &str, users: &[&str], features: &[&str]) -> Tenant {
    let features = features.iter().map(|f| f.to_string()).collect();
    create_tenant_with(server, id, users, None, Some(features), None).await
}

async fn create_tenant_with(
    server: &TestServer,
    id: &str,
    users: &[&str],
    quotas: Option<QuotasPatch>,
    features: Option<Vec<String>>,
    tier: Option<Tier>,
) -> Tenant {
    let request = CreateTenantRequest {
        id: id.into(),
        name: format!("Tenant {id}"),
        tier,
        quotas,
        features,
    };
    let created = admin(server).create_tenant(&request).await.expect("create tenant");
    let tenant = Tenant {
        id: id.into(),
        rest: RestClient::new(server.http_url(), created.api_key.key),
        signing_secret: created.signing_secret,
    };
    for user in users {
        let request = CreateUserRequest {
            id: (*user).into(),
            display_name: None,
        };
        tenant.rest.create_user(id, &request).await.expect("create user");
    }
    tenant
}

pub async fn create_conversation(tenant: &Tenant, id: &str, kind: ConversationKind, members: &[&str]) {
    let request = CreateConversationRequest {
        id: Some(id.into()),
        kind,
        members: members.iter().map(|m| m.to_string()).collect(),
        name: None,
    };
    tenant
        .rest
        .create_conversation(&tenant.id, &request)
        .await
        .expect("create conversation");
}

pub async fn token(tenant: &Tenant, user: &str) -> String {
    let request = MintTokenRequest {
        user: user.into(),
        ttl_secs: 3600,
    };
    tenant.rest.mint_token(&tenant.id, &request).await.expect("mint token").token
}

pub async fn connect(server: &TestServer, tenant: &Tenant, user: &str) -> WsClient {
    let token = token(tenant, user).await;
    WsClient::connect(&server.ws_url(), &token).await.expect("connect")
}

/// Waits for the next `message` event; fails on timeout or on another kind of event.
pub async fn next_message(client: &WsClient) -> MessageItem {
    match client.next_event(EVENT_TIMEOUT).await {
        Some(ServerFrame::Message(item)) => item,
        Some(other) => panic!("expected a message event, got {other:?}"),
        None => panic!("no message event within {EVENT_TIMEOUT:?}"),
    }
}

/// Asserts that no event arrives within the quiet period.
pub async fn assert_no_event(client: &WsClient, who: &str) {
    if let Some(event) = client.next_event(QUIET_PERIOD).await {
        panic!("{who} should receive nothing, got {event:?}");
    }
}

pub fn body_text(item: &MessageItem) -> String {
    let value: serde_json::Value = serde_json::from_str(item.body.get()).expect("body is JSON");
    value["text"].as_str().unwrap_or_default().to_owned()
}

pub fn seqs(items: &[MessageItem]) -> Vec<u64> {
    items.iter().map(|m| m.seq).collect()
}

/// Returns the value of one series in a Prometheus text exposition, such as
/// `metric(text, "bulkhead_tenant_connections", r#"tenant="acme""#)`.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("series {name}{{{labels}}} missing"))
        .parse()
        .expect("numeric sample")
}
