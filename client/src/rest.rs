//! Typed client for the REST API under `/v1` and the operational endpoints.

use std::time::Duration;

use bulkhead_proto::{
    export::{ExportRequest, CONFIRM_EXPORT_HEADER},
    AddMemberRequest, ApiKey, AuditPage, Branding, Conversation, CreateApiKeyRequest, CreateConversationRequest,
    CreateTenantRequest, CreateUserRequest, CreatedApiKey, CreatedTenant, List, MessagePage,
    MigrateTenantRequest, MintTokenRequest, MintedToken, NetworkPolicy, PatchTenantRequest, PostMessageRequest,
    RestError, RotateApiKeyRequest, RotatedApiKey, SendAck, Tenant, TenantMigration, Tier, User,
};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{describe_error, ClientError};

/// Timeout for one REST call, from sending the request to reading the whole body.
pub const DEFAULT_REST_TIMEOUT: Duration = Duration::from_secs(30);

/// Header that the server requires on deletes of tenants and users, set to the deleted id.
const CONFIRM_DELETE_HEADER: &str = "X-Confirm-Delete";

/// Header that the server requires on network policy changes, set to the tenant id.
const CONFIRM_NETWORK_POLICY_HEADER: &str = "X-Confirm-Network-Policy";

/// Times a typed call is sent again after HTTP 429, by default. The server's REST rate limit
/// refills within one second, so five retries outlast a burst of concurrent callers. The
/// number may change.
pub const DEFAULT_RATE_LIMIT_RETRIES: u32 = 5;

/// Longest `Retry-After` that a typed call waits for. A longer one is returned to the caller
/// as the error, since waiting that long inside one call would look like a hang.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Wait after a 429 without a readable `Retry-After` header.
const RETRY_AFTER_FALLBACK: Duration = Duration::from_secs(1);

/// A client for the REST API, bound to one base URL and one credential.
///
/// The credential is a platform admin token or a tenant API key, sent as
/// `Authorization: Bearer <credential>`. Cloning is cheap and shares the connection pool.
/// This build of reqwest has no TLS support, so `base_url` must be `http://`.
///
/// A typed call that gets HTTP 429 (`rate_limited`, or `quota_exceeded` on a send) waits for
/// the response's `Retry-After` and sends the request again, at most
/// [`DEFAULT_RATE_LIMIT_RETRIES`] times (see [`RestClient::with_rate_limit_retries`]). The
/// server rejects a request with 429 before doing any of its work, so a retried `POST` is
/// not applied twice. [`RestClient::request`] never retries.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base_url: String,
    credential: String,
    rate_limit_retries: u32,
}

/// One HTTP response: status, body text and the `Retry-After` header.
struct Response {
    status: u16,
    text: String,
    retry_after: Option<Duration>,
}

/// The path of a typed REST call, kept as segments so that ids are percent-encoded.
struct Route<'a> {
    segments: Vec<&'a str>,
    query: Vec<(&'static str, String)>,
}

impl<'a> Route<'a> {
    fn new(segments: &[&'a str]) -> Self {
        Route {
            segments: segments.to_vec(),
            query: Vec::new(),
        }
    }

    fn query(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }
}

impl RestClient {
    /// Creates a client for the server at `base_url` (such as `http://127.0.0.1:8080`).
    ///
    /// An empty `credential` sends no `Authorization` header.
    pub fn new(base_url: impl Into<String>, credential: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_REST_TIMEOUT)
            .build()
            .expect("a reqwest client without TLS or proxies from files always builds");

        RestClient {
            http,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            credential: credential.into(),
            rate_limit_retries: DEFAULT_RATE_LIMIT_RETRIES,
        }
    }

    /// Returns a client for the same server that authenticates with `credential`.
    pub fn with_credential(&self, credential: impl Into<String>) -> RestClient {
        RestClient {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            credential: credential.into(),
            rate_limit_retries: self.rate_limit_retries,
        }
    }

    /// Sets how many times a typed call is sent again after HTTP 429; 0 returns the first
    /// 429 as the error.
    pub fn with_rate_limit_retries(mut self, retries: u32) -> RestClient {
        self.rate_limit_retries = retries;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn credential(&self) -> &str {
        &self.credential
    }

    // Tenants.

    pub async fn create_tenant(
        &self,
        request: &CreateTenantRequest,
    ) -> Result<CreatedTenant, ClientError> {
        let route = Route::new(&["v1", "tenants"]);
        self.call(Method::POST, route, Some(request), &[]).await
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, ClientError> {
        let route = Route::new(&["v1", "tenants"]);
        self.call_list(route).await
    }

    pub async fn get_tenant(&self, tenant: &str) -> Result<Tenant, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant]);
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    pub async fn patch_tenant(
        &self,
        tenant: &str,
        request: &PatchTenantRequest,
    ) -> Result<Tenant, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant]);
        self.call(Method::PATCH, route, Some(request), &[]).await
    }

    /// Deletes a tenant and all its data, sending the confirmation header the server requires.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<(), ClientError> {
        let route = Route::new(&["v1", "tenants", tenant]);
        self.call_no_content(Method::DELETE, route, &[(CONFIRM_DELETE_HEADER, tenant)])
            .await
    }

    /// Suspends a tenant (platform admin): its sessions close with 4003 and its credentials
    /// get `tenant_suspended` until it is resumed.
    pub async fn suspend_tenant(&self, tenant: &str) -> Result<Tenant, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "suspend"]);
        self.call(Method::POST, route, None::<&()>, &[]).await
    }

    pub async fn resume_tenant(&self, tenant: &str) -> Result<Tenant, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "resume"]);
        self.call(Method::POST, route, None::<&()>, &[]).await
    }

    /// Moves a tenant to another isolation tier while the server runs (platform admin).
    pub async fn migrate_tenant(&self, tenant: &str, tier: Tier) -> Result<TenantMigration, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "migrate"]);
        self.call(Method::POST, route, Some(&MigrateTenantRequest { tier }), &[])
            .await
    }

    pub async fn network_policy(&self, tenant: &str) -> Result<NetworkPolicy, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "network-policy"]);
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    /// Replaces a tenant's network allowlist, sending the confirmation header the server
    /// requires.
    pub async fn set_network_policy(
        &self,
        tenant: &str,
        policy: &NetworkPolicy,
    ) -> Result<NetworkPolicy, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "network-policy"]);
        let confirm = [(CONFIRM_NETWORK_POLICY_HEADER, tenant)];
        self.call(Method::PUT, route, Some(policy), &confirm).await
    }

    /// Reads a page of a tenant's audit log. `query` contains the filters and the position:
    /// `action`, `since`, `until`, `after` and `limit`.
    pub async fn tenant_audit(
        &self,
        tenant: &str,
        query: &[(&'static str, String)],
    ) -> Result<AuditPage, ClientError> {
        let mut route = Route::new(&["v1", "tenants", tenant, "audit"]);
        route.query.extend(query.iter().cloned());
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    /// Reads a page of the platform audit log, with the filters of [`RestClient::tenant_audit`].
    pub async fn platform_audit(
        &self,
        query: &[(&'static str, String)],
    ) -> Result<AuditPage, ClientError> {
        let mut route = Route::new(&["v1", "audit"]);
        route.query.extend(query.iter().cloned());
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    // Users.

    pub async fn create_user(
        &self,
        tenant: &str,
        request: &CreateUserRequest,
    ) -> Result<User, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "users"]);
        self.call(Method::POST, route, Some(request), &[]).await
    }

    pub async fn list_users(&self, tenant: &str) -> Result<Vec<User>, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "users"]);
        self.call_list(route).await
    }

    pub async fn get_user(&self, tenant: &str, user: &str) -> Result<User, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "users", user]);
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    /// Deletes a user, sending the confirmation header the server requires.
    pub async fn delete_user(&self, tenant: &str, user: &str) -> Result<(), ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "users", user]);
        self.call_no_content(Method::DELETE, route, &[(CONFIRM_DELETE_HEADER, user)])
            .await
    }

    // Conversations and members.

    pub async fn create_conversation(
        &self,
        tenant: &str,
        request: &CreateConversationRequest,
    ) -> Result<Conversation, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "conversations"]);
        self.call(Method::POST, route, Some(request), &[]).await
    }

    pub async fn list_conversations(&self, tenant: &str) -> Result<Vec<Conversation>, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "conversations"]);
        self.call_list(route).await
    }

    pub async fn get_conversation(
        &self,
        tenant: &str,
        conversation: &str,
    ) -> Result<Conversation, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "conversations", conversation]);
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    pub async fn add_member(
        &self,
        tenant: &str,
        conversation: &str,
        request: &AddMemberRequest,
    ) -> Result<Conversation, ClientError> {
        let segments = [
            "v1",
            "tenants",
            tenant,
            "conversations",
            conversation,
            "members",
        ];
        self.call(Method::POST, Route::new(&segments), Some(request), &[])
            .await
    }

    pub async fn remove_member(
        &self,
        tenant: &str,
        conversation: &str,
        user: &str,
    ) -> Result<Conversation, ClientError> {
        let segments = [
            "v1",
            "tenants",
            tenant,
            "conversations",
            conversation,
            "members",
            user,
        ];
        self.call(Method::DELETE, Route::new(&segments), None::<&()>, &[])
            .await
    }

    // Messages.

    /// Reads one page of a conversation. Parameters left as `None` are not sent, so the
    /// server's defaults apply.
    pub async fn list_messages(
        &self,
        tenant: &str,
        conversation: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<MessagePage, ClientError> {
        let segments = [
            "v1",
            "tenants",
            tenant,
            "conversations",
            conversation,
            "messages",
        ];
        let route = Route::new(&segments)
            .query("before", before)
            .query("after", after)
            .query("limit", limit);
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    pub async fn post_message(
        &self,
        tenant: &str,
        conversation: &str,
        request: &PostMessageRequest,
    ) -> Result<SendAck, ClientError> {
        let segments = [
            "v1",
            "tenants",
            tenant,
            "conversations",
            conversation,
            "messages",
        ];
        self.call(Method::POST, Route::new(&segments), Some(request), &[])
            .await
    }

    // Tokens and API keys.

    pub async fn mint_token(
        &self,
        tenant: &str,
        request: &MintTokenRequest,
    ) -> Result<MintedToken, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "tokens"]);
        self.call(Method::POST, route, Some(request), &[]).await
    }

    pub async fn create_api_key(
        &self,
        tenant: &str,
        request: &CreateApiKeyRequest,
    ) -> Result<CreatedApiKey, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "keys"]);
        self.call(Method::POST, route, Some(request), &[]).await
    }

    pub async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "keys"]);
        self.call_list(route).await
    }

    /// Rotates an API key: returns its replacement, and the old key keeps working for
    /// `request.overlap_secs`.
    pub async fn rotate_api_key(
        &self,
        tenant: &str,
        key_id: &str,
        request: &RotateApiKeyRequest,
    ) -> Result<RotatedApiKey, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "keys", key_id, "rotate"]);
        self.call(Method::POST, route, Some(request), &[]).await
    }

    pub async fn delete_api_key(&self, tenant: &str, key_id: &str) -> Result<(), ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "keys", key_id]);
        self.call_no_content(Method::DELETE, route, &[]).await
    }

    // Branding.

    /// Reads the tenant's branding. Works with a user token of the tenant as well as with
    /// its API keys.
    pub async fn get_branding(&self, tenant: &str) -> Result<Branding, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "branding"]);
        self.call(Method::GET, route, None::<&()>, &[]).await
    }

    /// Replaces the tenant's branding and returns it as stored. Needs an admin key or the
    /// platform admin token.
    pub async fn put_branding(
        &self,
        tenant: &str,
        branding: &Branding,
    ) -> Result<Branding, ClientError> {
        let route = Route::new(&["v1", "tenants", tenant, "branding"]);
        self.call(Method::PUT, route, Some(branding), &[]).await
    }

    // Export.

    /// Exports the tenant as NDJSON (the lines of [`bulkhead_proto::export`]) and returns the
    /// whole stream as text, sending the confirmation header the server requires. Needs an
    /// admin key or the platform admin token, and the tenant's `export` feature.
    // NOTE: the whole stream is kept in memory and must arrive within the client's timeout.
    // That suits tests and small tenants, so read a large export with curl instead.
    pub async fn export_tenant(&self, tenant: &str, request: &ExportRequest) -> Result<String, ClientError> {
        let url = self.route_url(Route::new(&["v1", "tenants", tenant, "export"]))?;
        let body = encode_body(request)?;
        let headers = [(CONFIRM_EXPORT_HEADER, tenant)];

        let Response { status, text, .. } = self.execute(Method::POST, url, Some(body), &headers).await?;
        check_status(status, &text)?;
        Ok(text)
    }

    // Operational endpoints.

    /// Calls `GET /healthz` and returns its JSON body.
    pub async fn healthz(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, Route::new(&["healthz"]), None::<&()>, &[])
            .await
    }

    /// Calls `GET /readyz` and returns its JSON body. A server that is not ready fails with
    /// its non-2xx status.
    pub async fn readyz(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, Route::new(&["readyz"]), None::<&()>, &[])
            .await
    }

    /// Fetches `GET /metrics` in the Prometheus text format.
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let url = self.route_url(Route::new(&["metrics"]))?;
        let response = self.execute(Method::GET, url, None, &[]).await?;
        check_status(response.status, &response.text)?;
        Ok(response.text)
    }

    /// Sends any request and returns the status and body without judging either, so tests
    /// can check how the server handles odd requests (a wrong confirm header, a malformed
    /// body, an unknown route).
    ///
    /// `path` is appended to the base URL as written, query string included. The body is
    /// returned as JSON when it parses, as [`Value::String`] when it does not, and as
    /// [`Value::Null`] when it is empty. A header named `Authorization` in `headers`
    /// replaces the client's credential.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), ClientError> {
        let url = format!("{}{}", self.base_url, path);
        let url = Url::parse(&url)
            .map_err(|e| ClientError::Transport(format!("invalid URL {url:?}: {e}")))?;
        let body = body.map(|value| value.to_string());

        let Response { status, text, .. } = self.send_once(method, url, body, headers).await?;

        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        route: Route<'_>,
        body: Option<&impl Serialize>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let url = self.route_url(route)?;
        let body = body.map(encode_body).transpose()?;

        let Response { status, text, .. } = self.execute(method, url, body, headers).await?;
        check_status(status, &text)?;

        serde_json::from_str(&text).map_err(|e| {
            let type_name = std::any::type_name::<T>();
            ClientError::Protocol(format!(
                "HTTP {status} body is not a valid {type_name}: {e}"
            ))
        })
    }

    async fn call_list<T: DeserializeOwned>(
        &self,
        route: Route<'_>,
    ) -> Result<Vec<T>, ClientError> {
        let list: List<T> = self.call(Method::GET, route, None::<&()>, &[]).await?;
        Ok(list.items)
    }

    async fn call_no_content(
        &self,
        method: Method,
        route: Route<'_>,
        headers: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let url = self.route_url(route)?;
        let response = self.execute(method, url, None, headers).await?;
        check_status(response.status, &response.text)
    }

    fn route_url(&self, route: Route<'_>) -> Result<Url, ClientError> {
        let mut url = Url::parse(&self.base_url).map_err(|e| {
            ClientError::Transport(format!("invalid base URL {:?}: {e}", self.base_url))
        })?;

        // `extend` percent-encodes each segment, so an id containing `/` or `?` stays one
        // segment instead of changing the route.
        url.path_segments_mut()
            .map_err(|()| {
                ClientError::Transport(format!("base URL {:?} cannot have a path", self.base_url))
            })?
            .pop_if_empty()
            .extend(&route.segments);

        if !route.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&route.query);
        }
        Ok(url)
    }

    /// Sends a request and reads the whole body as text. After HTTP 429 it waits for the
    /// `Retry-After` time and sends the request again, up to `rate_limit_retries` times, and
    /// returns the last response.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        let mut retries = 0;
        loop {
            let response = self.send_once(method.clone(), url.clone(), body.clone(), headers).await?;
            if response.status != 429 || retries == self.rate_limit_retries {
                return Ok(response);
            }

            let wait = response.retry_after.unwrap_or(RETRY_AFTER_FALLBACK);
            if wait > MAX_RETRY_AFTER {
                return Ok(response);
            }
            retries += 1;
            tracing::debug!(%method, %url, retry = retries, wait_secs = wait.as_secs_f64(), "HTTP 429; retrying after Retry-After");
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one request and reads the whole body as text.
    async fn send_once(
        &self,
        method: Method,
        url: Url,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ClientError> {
        let mut builder = self.http.request(method, url);

        let overrides_auth = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if !overrides_auth && !self.credential.is_empty() {
            builder = builder.bearer_auth(&self.credential);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = body {
            builder = builder
                .header("Content-Type", "application/json")
                .body(body);
        }

        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().await.map_err(transport_error)?;
        Ok(Response { status, text, retry_after })
    }
}

/// Parses a `Retry-After` value in whole seconds. The HTTP-date form, which the server does
/// not send, reads as `None`.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn encode_body(body: &impl Serialize) -> Result<String, ClientError> {
    serde_json::to_string(body)
        .map_err(|e| ClientError::Protocol(format!("request body does not serialize: {e}")))
}

/// Turns a non-2xx response into [`ClientError::Api`], or [`ClientError::Http`] when the body
/// is not the error envelope.
fn check_status(status: u16, body: &str) -> Result<(), ClientError> {
    if (200..300).contains(&status) {
        return Ok(());
    }

    match serde_json::from_str::<RestError>(body) {
        Ok(envelope) => Err(ClientError::Api {
            status,
            code: envelope.error.code,
            message: envelope.error.message,
        }),
        Err(_) => Err(ClientError::Http {
            status,
            body: body.to_string(),
        }),
    }
}

fn transport_error(error: reqwest::Error) -> ClientError {
    if error.is_timeout() {
        return ClientError::Timeout;
    }
    ClientError::Transport(describe_error(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_status_accepts_2xx() {
        assert!(check_status(200, "").is_ok());
        assert!(check_status(204, "").is_ok());
    }

    #[test]
    fn check_status_parses_error_envelope() {
        let body = r#"{"error":{"code":"not_found","message":"no tenant t9"}}"#;

        let error = check_status(404, body).unwrap_err();

        assert_eq!(error.http_status(), Some(404));
        assert_eq!(error.code(), Some(bulkhead_proto::ErrorCode::NotFound));
        match error {
            ClientError::Api { message, .. } => assert_eq!(message, "no tenant t9"),
            other => panic!("expected ClientError::Api, got {other:?}"),
        }
    }

    #[test]
    fn check_status_keeps_non_envelope_body() {
        let error = check_status(502, "Bad Gateway").unwrap_err();

        assert_eq!(error.code(), None);
        match error {
            ClientError::Http { status, body } => {
                assert_eq!(status, 502);
                assert_eq!(body, "Bad Gateway");
            }
            other => panic!("expected ClientError::Http, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_reads_whole_seconds() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn route_url_encodes_ids_and_query() {
        let client = RestClient::new("http://127.0.0.1:9/", "secret");
        let route = Route::new(&["v1", "tenants", "t/1", "conversations", "c 1", "messages"])
            .query("before", Some(10u64))
            .query("after", None::<u64>)
            .query("limit", Some(5u32));

        let url = client.route_url(route).unwrap();

        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/v1/tenants/t%2F1/conversations/c%201/messages?before=10&limit=5"
        );
    }

    #[test]
    fn route_url_keeps_base_path_prefix() {
        let client = RestClient::new("http://127.0.0.1:9/chat", "");

        let url = client.route_url(Route::new(&["v1", "tenants"])).unwrap();

        assert_eq!(url.as_str(), "http://127.0.0.1:9/chat/v1/tenants");
    }
}
