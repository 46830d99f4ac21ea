//! Every REST route against every kind of credential, with the expected outcome of each cell.
//! The credentials are the platform admin and operator tokens, the tenant's admin, auditor and
//! service keys, a user token of the tenant, another tenant's admin key and user token, and
//! none at all.
//!
//! A rejected cell must return an error object and nothing else, so no cell leaks data.
//! Routes that need a confirmation header are called without it: an authorized caller gets
//! 428, which shows that authorization passed while nothing is deleted.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, CreateApiKeyRequest, KeyRole, MintTokenRequest},
    Method, RestClient,
};
use common::*;
use serde_json::Value;

/// The caller of a table column, by the credential it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Platform,
    Operator,
    Admin,
    Auditor,
    Service,
    User,
    ForeignKey,
    ForeignUser,
    Nobody,
}

const EVERYONE: [Caller; 9] = [
    Caller::Platform,
    Caller::Operator,
    Caller::Admin,
    Caller::Auditor,
    Caller::Service,
    Caller::User,
    Caller::ForeignKey,
    Caller::ForeignUser,
    Caller::Nobody,
];

/// What a cell expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Authorized and done: a 2xx status.
    Done,
    /// Authorized, but the route needs a confirmation header: 428 and nothing changes.
    Confirm,
    Forbidden,
    NotFound,
    Unauthorized,
}

struct Route {
    method: Method,
    /// `{n}` is replaced by the column's index, so that creating routes use fresh ids.
    path: &'static str,
    body: Option<&'static str>,
    /// The columns allowed on this route, besides the platform admin.
    allowed: &'static [Caller],
    /// Whether an allowed call needs a confirmation header.
    confirm: bool,
    /// Whether the route is a platform route (no tenant in the path).
    platform: bool,
}

const OPERATOR_READS: &[Caller] = &[Caller::Operator, Caller::Admin, Caller::Auditor];
const ADMIN: &[Caller] = &[Caller::Admin];
const ADMIN_AUDITOR: &[Caller] = &[Caller::Admin, Caller::Auditor];
const ADMIN_SERVICE: &[Caller] = &[Caller::Admin, Caller::Service];
const BRANDING_READERS: &[Caller] = &[Caller::Admin, Caller::Auditor, Caller::Service, Caller::User];
const NOBODY_ELSE: &[Caller] = &[];

fn route(method: Method, path: &'static str, body: Option<&'static str>, allowed: &'static [Caller]) -> Route {
    Route {
        method,
        path,
        body,
        allowed,
        confirm: false,
        platform: !path.starts_with("/v1/tenants/acme"),
    }
}

fn confirmed(mut route: Route) -> Route {
    route.confirm = true;
    route
}

fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::POST, "/v1/tenants", Some(r#"{"id":"new{n}","name":"New"}"#), NOBODY_ELSE),
        route(M::GET, "/v1/tenants", None, &[Caller::Operator]),
        route(M::GET, "/v1/audit", None, NOBODY_ELSE),
        route(M::GET, "/v1/tenants/acme", None, OPERATOR_READS),
        route(M::PATCH, "/v1/tenants/acme", Some(r#"{"name":"Acme"}"#), NOBODY_ELSE),
        route(M::GET, "/v1/tenants/acme/usage", None, OPERATOR_READS),
        route(M::GET, "/v1/tenants/acme/audit", None, ADMIN_AUDITOR),
        route(M::GET, "/v1/tenants/acme/network-policy", None, ADMIN_AUDITOR),
        confirmed(route(M::PUT, "/v1/tenants/acme/network-policy", Some(r#"{"allow":[]}"#), ADMIN)),
        route(M::GET, "/v1/tenants/acme/branding", None, BRANDING_READERS),
        route(M::PUT, "/v1/tenants/acme/branding", Some(r#"{"display_name":"Acme"}"#), ADMIN),
        route(M::POST, "/v1/tenants/acme/keys", Some(r#"{"role":"service"}"#), ADMIN),
        route(M::GET, "/v1/tenants/acme/keys", None, ADMIN),
        // Rotates the key that the next row revokes: an expiring key can still be revoked.
        route(M::POST, "/v1/tenants/acme/keys/{victim_key}/rotate", Some(r#"{"overlap_secs":60}"#), ADMIN),
        route(M::DELETE, "/v1/tenants/acme/keys/{victim_key}", None, ADMIN),
        route(M::POST, "/v1/tenants/acme/users", Some(r#"{"id":"new{n}"}"#), ADMIN_SERVICE),
        route(M::GET, "/v1/tenants/acme/users", None, ADMIN_SERVICE),
        route(M::GET, "/v1/tenants/acme/users/alice", None, ADMIN_SERVICE),
        confirmed(route(M::DELETE, "/v1/tenants/acme/users/bob", None, ADMIN_SERVICE)),
        route(
            M::POST,
            "/v1/tenants/acme/conversations",
            Some(r#"{"id":"new{n}","kind":"group","members":["alice"]}"#),
            ADMIN_SERVICE,
        ),
        route(M::GET, "/v1/tenants/acme/conversations", None, ADMIN_SERVICE),
        route(M::GET, "/v1/tenants/acme/conversations/room", None, ADMIN_SERVICE),
        route(M::POST, "/v1/tenants/acme/conversations/room/members", Some(r#"{"user":"m{n}"}"#), ADMIN_SERVICE),
        route(M::DELETE, "/v1/tenants/acme/conversations/room/members/r{n}", None, ADMIN_SERVICE),
        route(M::GET, "/v1/tenants/acme/conversations/room/messages", None, ADMIN_SERVICE),
        route(
            M::POST,
            "/v1/tenants/acme/conversations/room/messages",
            Some(r#"{"from":"alice","client_msg_id":"m{n}","body":{"text":"hi"}}"#),
            ADMIN_SERVICE,
        ),
        route(M::POST, "/v1/tenants/acme/tokens", Some(r#"{"user":"alice","ttl_secs":60}"#), ADMIN_SERVICE),
        confirmed(route(M::POST, "/v1/tenants/acme/export", Some(r#"{"mask":false}"#), ADMIN)),
        // Suspend, then resume at once, so that the other rows run on an active tenant.
        route(M::POST, "/v1/tenants/acme/suspend", None, NOBODY_ELSE),
        route(M::POST, "/v1/tenants/acme/resume", None, NOBODY_ELSE),
        // Move to the shared tier and back, so that the other rows run on the cf tier.
        route(M::POST, "/v1/tenants/acme/migrate", Some(r#"{"tier":"shared"}"#), NOBODY_ELSE),
        route(M::POST, "/v1/tenants/acme/migrate", Some(r#"{"tier":"cf"}"#), NOBODY_ELSE),
        confirmed(route(M::DELETE, "/v1/tenants/acme", None, NOBODY_ELSE)),
    ]
}

fn expected(route: &Route, caller: Caller) -> Outcome {
    let allowed = caller == Caller::Platform || route.allowed.contains(&caller);
    match caller {
        Caller::Nobody => Outcome::Unauthorized,
        // Another tenant's credential on acme's paths: as if acme did not exist.
        Caller::ForeignKey | Caller::ForeignUser if !route.platform => Outcome::NotFound,
        _ if !allowed => Outcome::Forbidden,
        _ if route.confirm => Outcome::Confirm,
        _ => Outcome::Done,
    }
}

fn outcome(status: u16) -> Option<Outcome> {
    match status {
        200..=299 => Some(Outcome::Done),
        428 => Some(Outcome::Confirm),
        403 => Some(Outcome::Forbidden),
        404 => Some(Outcome::NotFound),
        401 => Some(Outcome::Unauthorized),
        _ => None,
    }
}

#[tokio::test]
async fn every_route_against_every_credential() -> TestResult {
    const OPERATOR_TOKEN: &str = "test-operator-token-table";
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_env(dir.path(), &[("BULKHEAD_OPERATOR_TOKEN", OPERATOR_TOKEN)]);

    // Tenant acme with the users, members and keys the rows act on; one victim key per column.
    let mut users = vec!["alice".to_string(), "bob".to_string()];
    for n in 0..EVERYONE.len() {
        users.push(format!("m{n}"));
        users.push(format!("r{n}"));
    }
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let acme = create_tenant(&server, "acme", &user_refs).await;
    let room_members: Vec<&str> = user_refs.iter().copied().filter(|u| !u.starts_with('m')).collect();
    create_conversation(&acme, "room", Group, &room_members).await;
    let other = create_tenant(&server, "other", &["eve"]).await;

    let key = |role: KeyRole| CreateApiKeyRequest { role, name: None };
    let auditor = acme.rest.create_api_key("acme", &key(KeyRole::Auditor)).await?.key;
    let service = acme.rest.create_api_key("acme", &key(KeyRole::Service)).await?.key;
    let mut victim_keys = Vec::new();
    for _ in EVERYONE {
        victim_keys.push(acme.rest.create_api_key("acme", &key(KeyRole::Service)).await?.id);
    }
    let mint = |user: &str| MintTokenRequest {
        user: user.into(),
        ttl_secs: 600,
    };
    let user_token = acme.rest.mint_token("acme", &mint("alice")).await?.token;
    let foreign_user_token = other.rest.mint_token("other", &mint("eve")).await?.token;

    let credential = |caller: Caller| -> String {
        match caller {
            Caller::Platform => ADMIN_TOKEN.into(),
            Caller::Operator => OPERATOR_TOKEN.into(),
            Caller::Admin => acme.rest.credential().into(),
            Caller::Auditor => auditor.clone(),
            Caller::Service => service.clone(),
            Caller::User => user_token.clone(),
            Caller::ForeignKey => other.rest.credential().into(),
            Caller::ForeignUser => foreign_user_token.clone(),
            Caller::Nobody => String::new(),
        }
    };

    let mut mismatches = Vec::new();
    for route in routes() {
        for (n, caller) in EVERYONE.into_iter().enumerate() {
            let path = route
                .path
                .replace("{n}", &n.to_string())
                .replace("{victim_key}", &victim_keys[n]);
            let body: Option<Value> = route.body.map(|b| serde_json::from_str(&b.replace("{n}", &n.to_string()))).transpose()?;
            let client = RestClient::new(server.http_url(), credential(caller));
            let (status, response) = client.request(route.method.clone(), &path, body.as_ref(), &[]).await?;

            let want = expected(&route, caller);
            if outcome(status) != Some(want) {
                mismatches.push(format!("{} {path} as {caller:?}: expected {want:?}, got {status} {response}", route.method));
            }
            // A rejected call returns an error and nothing else.
            if want != Outcome::Done {
                let only_error = response.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("error"));
                if !only_error {
                    mismatches.push(format!("{} {path} as {caller:?}: rejection carries more than an error: {response}", route.method));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{} cells differ:\n{}", mismatches.len(), mismatches.join("\n"));
    Ok(())
}

/// The WebSocket upgrade accepts only user tokens. Inside a session, every op on a
/// conversation that exists only in another tenant returns `not_found`, never its data.
#[tokio::test]
async fn websocket_ops_against_credentials_and_foreign_ids() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob"]).await;
    let other = create_tenant(&server, "other", &["eve", "mallory"]).await;
    create_conversation(&other, "lobby", Group, &["eve", "mallory"]).await;
    let eve = connect(&server, &other, "eve").await;
    eve.send("lobby", "e1", serde_json::json!({"text": "secret"})).await?;

    // Keys and the platform token are not user tokens: 401 before the upgrade.
    for credential in [ADMIN_TOKEN, acme.rest.credential(), other.rest.credential()] {
        let rejection = bulkhead_client::WsClient::connect(&server.ws_url(), credential).await.unwrap_err();
        assert_eq!(rejection.http_status(), Some(401), "{rejection}");
    }

    let alice = connect(&server, &acme, "alice").await;
    let ops: Vec<(&str, Result<(), bulkhead_client::ClientError>)> = vec![
        ("send", alice.send("lobby", "a1", serde_json::json!({"text": "hi"})).await.map(|_| ())),
        ("history", alice.history("lobby", None, None, None).await.map(|_| ())),
        ("read", alice.read("lobby", 1).await),
        ("typing", alice.typing("lobby").await),
        ("edit", alice.edit("lobby", 1, serde_json::json!({"text": "x"})).await.map(|_| ())),
        ("recall", alice.recall("lobby", 1).await.map(|_| ())),
    ];
    for (op, result) in ops {
        let error = result.expect_err(op);
        assert_eq!(error.code(), Some(bulkhead_client::ErrorCode::NotFound), "{op}: {error}");
        assert!(!error.to_string().contains("secret"), "{op}: {error}");
    }

    // A sync of acme's own conversations shows nothing of the other tenant.
    let pages = alice.sync(&Default::default(), None).await?;
    assert!(pages.iter().all(|page| page.conv != "lobby"));
    Ok(())
}
