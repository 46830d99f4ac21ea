//! Stored record types. Each is encoded by [`crate::codec`]; changing a field needs a new
//! format version and a decoder for the old layout.

use serde::{Deserialize, Serialize};

use crate::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    Shared,
    Cf,
    Dedicated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantStatus {
    Active,
    Suspended,
}

/// Per-tenant resource limits, as stored. Units are in the names. Adding a field changes the
/// tenant record's layout, so it needs a new [`crate::codec::TENANT_FORMAT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaLimits {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub ingress_bytes_per_sec: u64,
    pub egress_bytes_per_sec: u64,
    pub max_connections: u64,
    pub max_message_bytes: u64,
    pub max_storage_bytes: u64,
    pub weight: u64,
    /// REST requests per second on the tenant's paths, with a burst of one second's worth.
    pub rest_requests_per_sec: u64,
}

impl QuotaLimits {
    /// The built-in default of `rest_requests_per_sec`. Tenant records written before the
    /// field existed read as this value. 1,000 requests per second is far above what a
    /// tenant's backend needs to manage users and mint tokens, and low enough that one
    /// tenant's loop cannot take most of a small server's REST capacity. It may change.
    pub const DEFAULT_REST_REQUESTS_PER_SEC: u64 = 1000;
}

/// A tenant in the registry (`sys` column family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub tier: Tier,
    pub status: TenantStatus,
    pub quotas: QuotaLimits,
    pub features: Vec<String>,
    /// HS256 secret that the tenant's backend signs user tokens with. It must be readable to
    /// verify tokens, so unlike API keys it is not hashed.
    // TODO: encrypt signing secrets at rest with a key outside the database.
    pub signing_secret: String,
    pub created_at_ms: u64,
}

/// A tenant's branding: what its apps show users. Stored in the tenant's own key space, so it
/// is erased with the tenant. Every field is optional, and `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandingRecord {
    pub display_name: Option<String>,
    /// An `https` URL.
    pub logo_url: Option<String>,
    /// `#rrggbb`, lower case.
    pub theme_color: Option<String>,
    pub welcome_message: Option<String>,
    /// A BCP 47 language tag, such as `en` or `zh-CN`.
    pub default_locale: Option<String>,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRole {
    Admin,
    Auditor,
    Service,
}

/// A tenant API key. Only the SHA-256 of the secret part is stored; the key itself is shown
/// once, when it is created. Encoded by [`crate::codec::encode_api_key`], which has its own
/// format version. When the key was last used is stored under a key of its own, so that
/// recording a use never rewrites this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: TenantId,
    pub role: KeyRole,
    pub name: Option<String>,
    pub secret_sha256: [u8; 32],
    pub created_at_ms: u64,
    /// When the key stops authenticating, in ms since the Unix epoch. Set when the key is
    /// rotated; `None` for a key that does not expire.
    pub expires_at_ms: Option<u64>,
}

impl ApiKeyRecord {
    /// Returns whether the key has expired at `now_ms`. A key expires at `expires_at_ms`
    /// itself, so a rotation with no overlap ends the old key at once.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|expires_at_ms| expires_at_ms <= now_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub display_name: Option<String>,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationKind {
    Direct,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub id: String,
    pub kind: ConversationKind,
    pub name: Option<String>,
    /// Member user ids, sorted and without duplicates.
    pub members: Vec<String>,
    pub created_at_ms: u64,
}

/// One accepted message. The conversation id and `seq` are also in the key. Encoded by
/// [`crate::codec::encode_message`], which has its own format version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub seq: u64,
    pub from: String,
    pub client_msg_id: String,
    pub ts_ms: u64,
    /// The message body as JSON text, exactly as the client sent it (or last edited it), and
    /// `null` once the message is recalled. postcard cannot encode a self-describing JSON
    /// value, and keeping the text avoids a parse on every delivery.
    pub body_json: String,
    /// When the sender last edited the body, in ms since the Unix epoch.
    pub edited_ts_ms: Option<u64>,
    /// When the sender recalled the message, in ms since the Unix epoch.
    pub recalled_ts_ms: Option<u64>,
}

impl MessageRecord {
    /// Builds a message as a send accepts it: not edited, not recalled.
    pub fn new(seq: u64, from: String, client_msg_id: String, ts_ms: u64, body_json: String) -> Self {
        MessageRecord {
            seq,
            from,
            client_msg_id,
            ts_ms,
            body_json,
            edited_ts_ms: None,
            recalled_ts_ms: None,
        }
    }
}

/// A tenant's network policy, stored next to its registry entry. An empty allowlist admits
/// every address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicyRecord {
    /// CIDR blocks in canonical text form, such as `10.0.0.0/8` or `2001:db8::/32`.
    pub allow: Vec<String>,
    pub updated_at_ms: u64,
}
