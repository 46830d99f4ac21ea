//! RestClient against a scripted HTTP/1.1 server on 127.0.0.1 that records each request
//! and replies with a canned response.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_client::proto::{
    CreateTenantRequest, CreateUserRequest, KeyRole, MintTokenRequest, PostMessageRequest,
    QuotasPatch, Tier,
};
use bulkhead_client::{ClientError, ErrorCode, Method, RestClient};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on reading one request, so a broken client fails the test instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct RecordedRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl RecordedRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A server that responds to the n-th request with the n-th canned `(status line, body)`.
struct ScriptedHttp {
    base_url: String,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl ScriptedHttp {
    async fn start(responses: Vec<(&'static str, &'static str)>) -> ScriptedHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let mut responses = VecDeque::from(responses);

        // One connection per response, because every response sends `Connection: close`.
        tokio::spawn(async move {
            while let Some((status, body)) = responses.pop_front() {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let request = tokio::time::timeout(WAIT, read_request(&mut tcp))
                    .await
                    .unwrap();
                recorded.lock().unwrap().push(request);
                write_response(&mut tcp, status, body).await;
            }
        });
        ScriptedHttp { base_url, requests }
    }

    fn request(&self, index: usize) -> RecordedRequest {
        self.requests.lock().unwrap()[index].clone()
    }
}

async fn read_request(tcp: &mut TcpStream) -> RecordedRequest {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let header_end = loop {
        if let Some(position) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        let read = tcp.read(&mut buffer).await.unwrap();
        assert!(read > 0, "client closed before the end of the headers");
        data.extend_from_slice(&buffer[..read]);
    };

    let head = String::from_utf8(data[..header_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_string();
    let target = request_line.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();

    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.parse().unwrap())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let read = tcp.read(&mut buffer).await.unwrap();
        assert!(read > 0, "client closed before the end of the body");
        data.extend_from_slice(&buffer[..read]);
    }
    let body = String::from_utf8(data[header_end..header_end + length].to_vec()).unwrap();

    RecordedRequest {
        method,
        target,
        headers,
        body,
    }
}

async fn write_response(tcp: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
    tcp.shutdown().await.unwrap();
}

const TENANT: &str = r#"{"id":"acme","name":"Acme","tier":"cf","status":"active",
    "quotas":{"cpu_millicores":1000,"memory_bytes":1,"ingress_bytes_per_sec":1,
    "egress_bytes_per_sec":1,"max_connections":10,"max_message_bytes":4096,
    "max_storage_bytes":1,"weight":1},"features":["typing"],"created_at":5}"#;

#[tokio::test]
async fn create_tenant_posts_body_with_bearer() {
    let created: &'static str = Box::leak(
        format!(
            r#"{{"tenant":{TENANT},"api_key":{{"id":"k1","key":"sk_secret","role":"admin"}},
            "signing_secret":"shh"}}"#
        )
        .into_boxed_str(),
    );
    let server = ScriptedHttp::start(vec![("201 Created", created)]).await;
    let client = RestClient::new(&server.base_url, "admin-token");
    let request = CreateTenantRequest {
        id: "acme".into(),
        name: "Acme".into(),
        tier: Some(Tier::Cf),
        quotas: Some(QuotasPatch {
            max_connections: Some(10),
            ..QuotasPatch::default()
        }),
        features: None,
    };

    let created = client.create_tenant(&request).await.unwrap();

    assert_eq!(created.tenant.id, "acme");
    assert_eq!(created.tenant.quotas.max_connections, 10);
    assert_eq!(created.api_key.key, "sk_secret");
    assert_eq!(created.api_key.role, KeyRole::Admin);
    let recorded = server.request(0);
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.target, "/v1/tenants");
    assert_eq!(recorded.header("authorization"), Some("Bearer admin-token"));
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    assert_eq!(recorded.json()["quotas"]["max_connections"], 10);
    assert_eq!(recorded.json()["tier"], "cf");
}

#[tokio::test]
async fn delete_sends_confirm_header() {
    let server = ScriptedHttp::start(vec![("204 No Content", ""), ("204 No Content", "")]).await;
    let client = RestClient::new(&server.base_url, "admin-token");

    client.delete_tenant("acme").await.unwrap();
    client.delete_user("acme", "alice").await.unwrap();

    let tenant = server.request(0);
    assert_eq!(tenant.method, "DELETE");
    assert_eq!(tenant.target, "/v1/tenants/acme");
    assert_eq!(tenant.header("x-confirm-delete"), Some("acme"));
    let user = server.request(1);
    assert_eq!(user.target, "/v1/tenants/acme/users/alice");
    assert_eq!(user.header("x-confirm-delete"), Some("alice"));
}

#[tokio::test]
async fn error_envelope_becomes_api_error() {
    let body = r#"{"error":{"code":"conflict","message":"user alice already exists"}}"#;
    let server = ScriptedHttp::start(vec![("409 Conflict", body)]).await;
    let client = RestClient::new(&server.base_url, "key");
    let request = CreateUserRequest {
        id: "alice".into(),
        display_name: None,
    };

    let error = client.create_user("acme", &request).await.unwrap_err();

    assert_eq!(error.http_status(), Some(409));
    assert_eq!(error.code(), Some(ErrorCode::Conflict));
    let ClientError::Api { message, .. } = error else {
        panic!("expected ClientError::Api, got {error:?}");
    };
    assert_eq!(message, "user alice already exists");
}

#[tokio::test]
async fn non_envelope_error_keeps_body() {
    let server = ScriptedHttp::start(vec![("503 Service Unavailable", "draining")]).await;
    let client = RestClient::new(&server.base_url, "");

    let error = client.readyz().await.unwrap_err();

    let ClientError::Http { status, body } = error else {
        panic!("expected ClientError::Http, got {error:?}");
    };
    assert_eq!(status, 503);
    assert_eq!(body, "draining");
    assert_eq!(
        server.request(0).header("authorization"),
        None,
        "empty credential"
    );
}

#[tokio::test]
async fn list_unwraps_items() {
    let body = r#"{"items":[{"id":"alice","display_name":"Alice","created_at":1},
        {"id":"bob","display_name":null,"created_at":2}]}"#;
    let server = ScriptedHttp::start(vec![("200 OK", body)]).await;
    let client = RestClient::new(&server.base_url, "key");

    let users = client.list_users("acme").await.unwrap();

    let ids: Vec<&str> = users.iter().map(|user| user.id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(server.request(0).target, "/v1/tenants/acme/users");
}

#[tokio::test]
async fn list_messages_sends_query() {
    let body = r#"{"items":[{"conv":"c1","seq":4,"from":"u","ts":1,"client_msg_id":"m",
        "body":{"text":"hi"}}],"more":false}"#;
    let server = ScriptedHttp::start(vec![("200 OK", body), ("200 OK", body)]).await;
    let client = RestClient::new(&server.base_url, "key");

    let page = client
        .list_messages("acme", "c1", Some(10), None, Some(50))
        .await
        .unwrap();
    client
        .list_messages("acme", "c1", None, None, None)
        .await
        .unwrap();

    assert_eq!(page.items[0].body.get(), r#"{"text":"hi"}"#);
    assert!(!page.more);
    let first = server.request(0);
    assert_eq!(
        first.target,
        "/v1/tenants/acme/conversations/c1/messages?before=10&limit=50"
    );
    assert_eq!(
        server.request(1).target,
        "/v1/tenants/acme/conversations/c1/messages"
    );
}

#[tokio::test]
async fn post_message_keeps_raw_body() {
    let server = ScriptedHttp::start(vec![("201 Created", r#"{"seq":12,"ts":99}"#)]).await;
    let client = RestClient::new(&server.base_url, "key");
    let request = PostMessageRequest {
        from: "bot".into(),
        client_msg_id: "m1".into(),
        body: serde_json::value::RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap(),
    };

    let ack = client.post_message("acme", "c1", &request).await.unwrap();

    assert_eq!(ack.seq, 12);
    assert!(!ack.duplicate, "duplicate defaults to false when left out");
    let recorded = server.request(0);
    assert_eq!(
        recorded.target,
        "/v1/tenants/acme/conversations/c1/messages"
    );
    assert_eq!(recorded.json()["body"], json!({"text": "hi"}));
}

#[tokio::test]
async fn with_credential_switches_bearer() {
    let minted = r#"{"token":"jwt.value.sig","expires_at":1700003600}"#;
    let server = ScriptedHttp::start(vec![("200 OK", minted)]).await;
    let admin = RestClient::new(&server.base_url, "admin-token");
    let tenant = admin.with_credential("sk_tenant");
    let request = MintTokenRequest {
        user: "alice".into(),
        ttl_secs: 3600,
    };

    let minted = tenant.mint_token("acme", &request).await.unwrap();

    assert_eq!(minted.token, "jwt.value.sig");
    assert_eq!(admin.credential(), "admin-token");
    let recorded = server.request(0);
    assert_eq!(recorded.header("authorization"), Some("Bearer sk_tenant"));
    assert_eq!(recorded.json(), json!({"user": "alice", "ttl_secs": 3600}));
}

#[tokio::test]
async fn raw_request_returns_status_and_body() {
    let error = r#"{"error":{"code":"invalid_request","message":"confirm header mismatch"}}"#;
    let server = ScriptedHttp::start(vec![("400 Bad Request", error), ("200 OK", "plain")]).await;
    let client = RestClient::new(&server.base_url, "admin-token");
    let headers = [
        ("X-Confirm-Delete", "wrong"),
        ("Authorization", "Bearer other"),
    ];

    let (status, body) = client
        .request(Method::DELETE, "/v1/tenants/acme", None, &headers)
        .await
        .unwrap();
    let (plain_status, plain) = client
        .request(Method::POST, "/odd?x=1", Some(&json!({"a": 1})), &[])
        .await
        .unwrap();

    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    let first = server.request(0);
    assert_eq!(first.header("x-confirm-delete"), Some("wrong"));
    assert_eq!(
        first.header("authorization"),
        Some("Bearer other"),
        "header override"
    );
    assert_eq!(
        first
            .headers
            .iter()
            .filter(|(name, _)| name == "authorization")
            .count(),
        1
    );
    assert_eq!(plain_status, 200);
    assert_eq!(plain, Value::String("plain".into()));
    let second = server.request(1);
    assert_eq!(second.target, "/odd?x=1");
    assert_eq!(second.json(), json!({"a": 1}));
}

#[tokio::test]
async fn metrics_text_returns_body() {
    let metrics = "# TYPE bulkhead_connections gauge\nbulkhead_connections 3\n";
    let server = ScriptedHttp::start(vec![("200 OK", metrics)]).await;
    let client = RestClient::new(&server.base_url, "");

    let text = client.metrics_text().await.unwrap();

    assert_eq!(text, metrics);
    assert_eq!(server.request(0).target, "/metrics");
}

#[tokio::test]
async fn invalid_success_body_is_protocol_error() {
    let server = ScriptedHttp::start(vec![("200 OK", r#"{"unexpected":true}"#)]).await;
    let client = RestClient::new(&server.base_url, "key");

    let error = client.get_tenant("acme").await.unwrap_err();

    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
}

#[tokio::test]
async fn refused_connection_is_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = RestClient::new(base_url, "key");

    let error = client.healthz().await.unwrap_err();

    let ClientError::Transport(message) = &error else {
        panic!("expected ClientError::Transport, got {error:?}");
    };
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

/// A 429 status line followed by a `Retry-After` header line; `write_response` appends the
/// remaining headers after it.
const RATE_LIMITED_1S: &str = "429 Too Many Requests\r\nRetry-After: 1";
const RATE_LIMITED_1H: &str = "429 Too Many Requests\r\nRetry-After: 3600";
const RATE_LIMITED_BODY: &str = r#"{"error":{"code":"rate_limited","message":"slow down","retry_after_ms":400}}"#;
const USER: &str = r#"{"id":"alice","created_at":1}"#;

fn alice() -> CreateUserRequest {
    CreateUserRequest {
        id: "alice".into(),
        display_name: None,
    }
}

#[tokio::test]
async fn rate_limited_call_is_retried() {
    let server = ScriptedHttp::start(vec![(RATE_LIMITED_1S, RATE_LIMITED_BODY), ("201 Created", USER)]).await;
    let client = RestClient::new(&server.base_url, "key");

    let user = client.create_user("acme", &alice()).await.unwrap();

    assert_eq!(user.id, "alice");
    let (first, second) = (server.request(0), server.request(1));
    assert_eq!(second.method, "POST");
    assert_eq!(second.target, first.target);
    assert_eq!(second.json(), first.json());
}

#[tokio::test]
async fn rate_limit_retries_are_bounded() {
    let server = ScriptedHttp::start(vec![
        (RATE_LIMITED_1S, RATE_LIMITED_BODY),
        (RATE_LIMITED_1S, RATE_LIMITED_BODY),
        ("201 Created", USER),
    ])
    .await;
    let client = RestClient::new(&server.base_url, "key").with_rate_limit_retries(1);

    let error = client.create_user("acme", &alice()).await.unwrap_err();

    assert_eq!(error.http_status(), Some(429));
    assert_eq!(error.code(), Some(ErrorCode::RateLimited));
    assert_eq!(server.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn long_retry_after_is_not_waited_for() {
    let server = ScriptedHttp::start(vec![(RATE_LIMITED_1H, RATE_LIMITED_BODY), ("201 Created", USER)]).await;
    let client = RestClient::new(&server.base_url, "key");

    let error = client.create_user("acme", &alice()).await.unwrap_err();

    assert_eq!(error.code(), Some(ErrorCode::RateLimited));
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn raw_request_is_not_retried() {
    let server = ScriptedHttp::start(vec![(RATE_LIMITED_1S, RATE_LIMITED_BODY), ("201 Created", USER)]).await;
    let client = RestClient::new(&server.base_url, "key");

    let (status, body) = client.request(Method::GET, "/v1/tenants/acme", None, &[]).await.unwrap();

    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}
