//! Bodies of the REST API under `/v1`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::MessageItem;

/// Where a tenant's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Rows in a shared column family, every key prefixed by the tenant id.
    Shared,
    /// The tenant's own column family `t.<tenant>` in the main database.
    #[default]
    Cf,
    /// The tenant's own RocksDB instance.
    Dedicated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

/// Per-tenant resource limits. Units are in the field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub ingress_bytes_per_sec: u64,
    pub egress_bytes_per_sec: u64,
    pub max_connections: u64,
    pub max_message_bytes: u64,
    pub max_storage_bytes: u64,
    pub weight: u64,
    /// REST requests per second on the tenant's paths, with a burst of one second's worth.
    /// Left out (by a server or a config file older than the field), it reads as
    /// [`DEFAULT_REST_REQUESTS_PER_SEC`].
    #[serde(default = "default_rest_requests_per_sec")]
    pub rest_requests_per_sec: u64,
}

/// The server's built-in default of `rest_requests_per_sec`.
pub const DEFAULT_REST_REQUESTS_PER_SEC: u64 = 1000;

fn default_rest_requests_per_sec() -> u64 {
    DEFAULT_REST_REQUESTS_PER_SEC
}

/// A partial set of quotas: fields left out keep their current (or default) value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasPatch {
    pub cpu_millicores: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub ingress_bytes_per_sec: Option<u64>,
    pub egress_bytes_per_sec: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub max_storage_bytes: Option<u64>,
    pub weight: Option<u64>,
    pub rest_requests_per_sec: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub quotas: Option<QuotasPatch>,
    /// Enabled features; all features when left out.
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub quotas: Option<QuotasPatch>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub status: Option<TenantStatus>,
}

/// `POST /v1/tenants/{tid}/migrate`: the tier to move the tenant to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateTenantRequest {
    pub tier: Tier,
}

/// The result of a migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantMigration {
    pub tenant: Tenant,
    pub from: Tier,
    pub to: Tier,
    /// RocksDB keys copied: records, indexes, read markers and audit entries.
    pub keys_copied: u64,
    /// How long the tenant's writes waited: from the start of the copy to the switch.
    pub writes_paused_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub status: TenantStatus,
    pub quotas: Quotas,
    pub features: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// The response to creating a tenant. `api_key.key` and `signing_secret` are shown only here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub api_key: CreatedApiKey,
    pub signing_secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Everything inside the tenant: users, conversations, messages, tokens and keys.
    Admin,
    /// Read-only: the tenant, its usage and its audit log. Never message content.
    Auditor,
    /// Users, conversations, members, messages and tokens.
    Service,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub role: KeyRole,
    #[serde(default)]
    pub name: Option<String>,
}

/// A new API key. `key` is the secret and is shown only in this response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedApiKey {
    pub id: String,
    pub key: String,
    pub role: KeyRole,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub role: KeyRole,
    pub name: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// When the key last authenticated a request, in ms since the Unix epoch; `null` when
    /// never. The stored value may lag by up to a minute.
    #[serde(default)]
    pub last_used_at: Option<u64>,
    /// When the key stops working, in ms since the Unix epoch; `null` for a key that does not
    /// expire. Set when the key is rotated.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// The body of `POST /v1/tenants/{tid}/keys/{key_id}/rotate`. An empty body is the same as
/// `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKeyRequest {
    /// How long the old key keeps working next to the new one, in seconds: 0 ends it at once.
    /// The server's default applies when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_secs: Option<u64>,
}

/// The key that replaces a rotated key. `key` is the secret and is shown only in this
/// response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotatedApiKey {
    pub id: String,
    pub key: String,
    pub role: KeyRole,
    pub name: Option<String>,
    pub replaces: ReplacedApiKey,
}

/// The rotated key, which keeps working until `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplacedApiKey {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub display_name: Option<String>,
    pub created_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// Generated by the server when left out.
    #[serde(default)]
    pub id: Option<String>,
    pub kind: ConversationKind,
    pub members: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub members: Vec<String>,
    /// The seq of the last accepted message; 0 for an empty conversation.
    pub last_seq: u64,
    pub created_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintTokenRequest {
    pub user: String,
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintedToken {
    pub token: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// A server-side send through REST, on behalf of the member `from`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessageRequest {
    pub from: String,
    pub client_msg_id: String,
    pub body: Box<RawValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendAck {
    pub seq: u64,
    pub ts: u64,
    #[serde(default)]
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagePage {
    pub items: Vec<MessageItem>,
    pub more: bool,
}

/// A tenant's network policy. An empty `allow` list admits every address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`) or single addresses that may use the
    /// tenant's credentials.
    pub allow: Vec<String>,
}

/// The performer of an audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditActor {
    PlatformAdmin,
    PlatformOperator,
    ApiKey { id: String },
    User { id: String },
}

/// One entry of an audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    pub actor: AuditActor,
    /// `platform`, `operator`, `admin`, `auditor`, `service` or `user`.
    pub role: String,
    /// Such as `user.delete`; the list is in docs/SECURITY.md.
    pub action: String,
    pub object: String,
    /// The client's IP address.
    pub source: String,
    /// `ok`, or the error code the action failed with.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Hex SHA-256 of the previous entry's stored bytes; 64 zeros for the first entry.
    pub prev_sha256: String,
    /// Hex SHA-256 of this entry's stored bytes.
    pub sha256: String,
}

/// The newest entry of an audit log, for anchoring the chain outside the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub sha256: String,
}

/// A page of an audit log. The next page starts `after` the last item's `seq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub more: bool,
    /// `None` while the log is empty.
    pub head: Option<AuditHead>,
}

/// A tenant's branding: the body of `PUT /v1/tenants/{tid}/branding` and the response of
/// `GET`. A PUT replaces every field, and a field left out or `null` is not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// 1 to 100 characters.
    #[serde(default)]
    pub display_name: Option<String>,
    /// An `https` URL of at most 2,048 bytes.
    #[serde(default)]
    pub logo_url: Option<String>,
    /// `#rrggbb`; returned in lower case.
    #[serde(default)]
    pub theme_color: Option<String>,
    /// 1 to 2,000 characters, shown to users when they open the app.
    #[serde(default)]
    pub welcome_message: Option<String>,
    /// A BCP 47 language tag such as `en` or `zh-CN`; returned in its canonical case.
    #[serde(default)]
    pub default_locale: Option<String>,
}

/// A list response. Lists are small in this release (users, conversations, keys of a tenant)
/// and are returned whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
}
