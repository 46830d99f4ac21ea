//! Credentials and authorization.
//!
//! Four kinds of credential exist:
//! - the platform admin token, compared by SHA-256 in constant time;
//! - the optional platform operator token, compared the same way: read-only access to
//!   tenants and their usage, never to message content;
//! - tenant API keys `bhk_<key id>_<secret>`: the key id is visible and finds the stored
//!   record, the 256-bit secret is checked against its stored SHA-256, and a rotated key
//!   is refused once its `expires_at_ms` has passed;
//! - user tokens: JWTs signed with HS256 by the tenant's signing secret, with claims `tid`,
//!   `sub`, `exp` (required) and optional `iat`.
//!
//! Which credential may do what is decided in one table, [`allows`], which every REST route
//! consults through [`authorize`]. User tokens work on REST only where that table lets a
//! [`Principal::User`] in: reading the tenant's branding.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use actix_web::HttpRequest;
use bulkhead_proto::{ErrorCode, KeyRole};
use bulkhead_storage::{ApiKeyRecord, KeyRole as StoredRole, Storage, TenantId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

const API_KEY_PREFIX: &str = "bhk_";

/// The caller of a REST request.
#[derive(Debug, Clone)]
pub enum Principal {
    PlatformAdmin,
    /// The holder of the platform operator token: reads tenants and usage, changes nothing.
    PlatformOperator,
    TenantKey {
        tenant: TenantId,
        role: KeyRole,
        key_id: String,
    },
    /// A user with a valid user token of its tenant.
    User { tenant: TenantId, user: UserId },
}

impl Principal {
    /// Returns the tenant the credential belongs to; `None` for the platform credentials.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Principal::PlatformAdmin | Principal::PlatformOperator => None,
            Principal::TenantKey { tenant, .. } | Principal::User { tenant, .. } => Some(tenant),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::PlatformAdmin => f.write_str("platform admin"),
            Principal::PlatformOperator => f.write_str("platform operator"),
            Principal::TenantKey { tenant, role, key_id } => {
                let role = match role {
                    KeyRole::Admin => "admin",
                    KeyRole::Auditor => "auditor",
                    KeyRole::Service => "service",
                };
                write!(f, "the {role} key {key_id} of tenant {tenant}")
            }
            Principal::User { tenant, user } => write!(f, "user {user} of tenant {tenant}"),
        }
    }
}

/// The action a REST route performs, for the authorization table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CreateTenant,
    ListTenants,
    ReadTenant,
    UpdateTenant,
    DeleteTenant,
    ReadUsage,
    ManageUsers,
    ReadUsers,
    ManageConversations,
    ReadConversations,
    ReadMessages,
    SendMessages,
    MintTokens,
    ManageKeys,
    SuspendTenant,
    ReadAudit,
    ReadPlatformAudit,
    ReadNetworkPolicy,
    ManageNetworkPolicy,
    ReadBranding,
    UpdateBranding,
    MigrateTenant,
    ExportTenant,
}

impl Action {
    /// Describes the action for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Action::CreateTenant => "create tenants",
            Action::ListTenants => "list tenants",
            Action::ReadTenant => "read the tenant",
            Action::UpdateTenant => "change the tenant (needs the platform admin token)",
            Action::DeleteTenant => "delete the tenant (needs the platform admin token)",
            Action::ReadUsage => "read usage",
            Action::ManageUsers => "create or delete users",
            Action::ReadUsers => "read users",
            Action::ManageConversations => "create or change conversations",
            Action::ReadConversations => "read conversations",
            Action::ReadMessages => "read messages",
            Action::SendMessages => "send messages",
            Action::MintTokens => "mint user tokens",
            Action::ManageKeys => "create, list, rotate or revoke API keys (needs an admin key)",
            Action::SuspendTenant => "suspend or resume the tenant (needs the platform admin token)",
            Action::ReadAudit => "read the audit log (needs an admin or auditor key)",
            Action::ReadPlatformAudit => "read the platform audit log",
            Action::ReadNetworkPolicy => "read the network policy (needs an admin or auditor key)",
            Action::ManageNetworkPolicy => "change the network policy (needs an admin key)",
            Action::ReadBranding => "read the branding",
            Action::UpdateBranding => "change the branding (needs an admin key)",
            Action::MigrateTenant => "move the tenant to another tier (needs the platform admin token)",
            Action::ExportTenant => "export the tenant's data (needs an admin key)",
        }
    }
}

/// Returns whether `principal` may perform `action`: the authorization table, which denies
/// by default and has one row per role.
pub fn allows(principal: &Principal, action: Action) -> bool {
    use Action::*;
    let role = match principal {
        Principal::PlatformAdmin => return true,
        Principal::PlatformOperator => return matches!(action, ListTenants | ReadTenant | ReadUsage),
        Principal::User { .. } => return matches!(action, ReadBranding),
        Principal::TenantKey { role, .. } => *role,
    };
    match role {
        KeyRole::Admin => !matches!(
            action,
            CreateTenant
                | ListTenants
                | UpdateTenant
                | DeleteTenant
                | SuspendTenant
                | MigrateTenant
                | ReadPlatformAudit
        ),
        KeyRole::Auditor => matches!(action, ReadTenant | ReadUsage | ReadBranding | ReadAudit | ReadNetworkPolicy),
        KeyRole::Service => matches!(
            action,
            ManageUsers
                | ReadUsers
                | ManageConversations
                | ReadConversations
                | ReadMessages
                | SendMessages
                | MintTokens
                | ReadBranding
        ),
    }
}

/// Checks that `principal` may perform `action` on `tenant` (`None` for platform routes).
/// A tenant credential on another tenant's path gets `not_found`, exactly as if that tenant
/// did not exist, so keys cannot be used to probe for tenant ids.
pub fn authorize(principal: &Principal, action: Action, tenant: Option<&TenantId>) -> Result<(), ApiError> {
    match (principal.tenant(), tenant) {
        (Some(own), Some(target)) if own != target => {
            return Err(ApiError::not_found(format!("tenant {target}")));
        }
        (Some(_), None) => {
            return Err(ApiError::forbidden("this route needs the platform admin token"));
        }
        _ => {}
    }
    if allows(principal, action) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{principal} may not {}", action.describe())))
    }
}

/// Extracts the bearer credential of a request: `Authorization: Bearer …`, or `?token=…` when
/// `allow_query` (browsers cannot set headers on a WebSocket upgrade).
pub fn bearer(req: &HttpRequest, allow_query: bool) -> Option<String> {
    if let Some(value) = req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
        let mut parts = value.splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        let credential = parts.next().unwrap_or_default().trim();
        if scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty() {
            return Some(credential.to_owned());
        }
        return None;
    }
    if allow_query {
        let query = req.query_string();
        for pair in query.split('&') {
            if let Some(token) = pair.strip_prefix("token=") {
                return Some(token.to_owned());
            }
        }
    }
    None
}

// ---- platform admin token ----

/// A platform token (admin or operator), kept only as its SHA-256.
pub struct PlatformToken {
    sha256: [u8; 32],
}

impl PlatformToken {
    pub fn from_token(token: &str) -> Self {
        PlatformToken { sha256: sha256(token.as_bytes()) }
    }

    pub fn matches(&self, credential: &str) -> bool {
        self.sha256.ct_eq(&sha256(credential.as_bytes())).into()
    }

    /// Loads the configured token, or the one stored in `<data_dir>/admin.token`, generated with mode
    /// 0600 on first start. Logs the file's path, never the token.
    pub fn load_or_generate(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Self> {
        if let Some(token) = configured.filter(|t| !t.is_empty()) {
            return Ok(PlatformToken::from_token(token));
        }
        let path = admin_token_path(data_dir);
        if path.exists() {
            let token = fs::read_to_string(&path)?;
            tracing::info!(path = %path.display(), "using the platform admin token stored in the data directory");
            return Ok(PlatformToken::from_token(token.trim()));
        }

        let token = format!("bha_{}", random_hex(32));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        tracing::warn!(path = %path.display(), "generated a platform admin token; read it from this file");
        Ok(PlatformToken::from_token(&token))
    }
}

/// The platform's own credentials: the admin token and, when configured, the operator token.
pub struct PlatformTokens {
    pub admin: PlatformToken,
    /// `None` when no operator token is configured, so no credential has the operator role.
    pub operator: Option<PlatformToken>,
}

impl PlatformTokens {
    /// Returns the platform principal whose token `credential` is, or `None`.
    pub fn principal(&self, credential: &str) -> Option<Principal> {
        if self.admin.matches(credential) {
            Some(Principal::PlatformAdmin)
        } else if self.operator.as_ref().is_some_and(|operator| operator.matches(credential)) {
            Some(Principal::PlatformOperator)
        } else {
            None
        }
    }
}

pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

// ---- API keys ----

/// A newly created API key: the record to store and the key to show once.
pub struct NewApiKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

pub fn new_api_key(tenant: &TenantId, role: KeyRole, name: Option<String>) -> NewApiKey {
    let id = random_hex(6);
    let secret = random_hex(32);
    let record = ApiKeyRecord {
        id: id.clone(),
        tenant: tenant.clone(),
        role: stored_role(role),
        name,
        secret_sha256: sha256(secret.as_bytes()),
        created_at_ms: bulkhead_storage::now_ms(),
        expires_at_ms: None,
    };
    NewApiKey {
        record,
        key: format!("{API_KEY_PREFIX}{id}_{secret}"),
    }
}

/// Finds the principal behind a REST credential, or `unauthorized`.
pub fn authenticate(credential: Option<&str>, platform: &PlatformTokens, storage: &Storage) -> Result<Principal, ApiError> {
    let Some(credential) = credential else {
        return Err(ApiError::unauthorized("missing credential; send Authorization: Bearer <token or API key>"));
    };
    if let Some(principal) = platform.principal(credential) {
        return Ok(principal);
    }

    let invalid = || ApiError::unauthorized("invalid credential");
    let rest = credential.strip_prefix(API_KEY_PREFIX).ok_or_else(invalid)?;
    let (key_id, secret) = rest.split_once('_').ok_or_else(invalid)?;
    let record = storage.api_key(key_id)?.ok_or_else(invalid)?;
    if !bool::from(record.secret_sha256.ct_eq(&sha256(secret.as_bytes()))) {
        return Err(invalid());
    }
    // Only the holder of the secret learns that the key expired rather than never existed.
    if record.is_expired(bulkhead_storage::now_ms()) {
        return Err(ApiError::unauthorized(format!(
            "API key {key_id} expired after it was rotated; use the key that replaced it"
        )));
    }
    Ok(Principal::TenantKey {
        tenant: record.tenant,
        role: wire_role(record.role),
        key_id: record.id,
    })
}

/// Returns whether a REST credential has the shape of a user token (a JWT: three
/// dot-separated parts) rather than of an API key or an admin token.
pub fn is_user_token(credential: &str) -> bool {
    !credential.starts_with(API_KEY_PREFIX) && credential.split('.').count() == 3
}

/// Finds the user behind a user token on a REST route, or `unauthorized`. The token must be
/// signed by its tenant's secret and name a user that still exists.
pub fn authenticate_user_token(token: &str, storage: &Arc<Storage>, leeway_secs: u64) -> Result<Principal, ApiError> {
    let invalid = || ApiError::unauthorized("invalid credential");
    let tenant = claimed_tenant(token)?;
    let record = storage.tenant(&tenant)?.ok_or_else(invalid)?;
    let user = verify_user_token(token, &tenant, &record.signing_secret, leeway_secs)?;
    let user = UserId::parse(&user).map_err(|_| invalid())?;

    let store = storage.tenant_store(&tenant)?.ok_or_else(invalid)?;
    if store.user(&user)?.is_none() {
        return Err(ApiError::unauthorized(format!("invalid token: user {user} does not exist")));
    }
    Ok(Principal::User { tenant, user })
}

pub fn stored_role(role: KeyRole) -> StoredRole {
    match role {
        KeyRole::Admin => StoredRole::Admin,
        KeyRole::Auditor => StoredRole::Auditor,
        KeyRole::Service => StoredRole::Service,
    }
}

pub fn wire_role(role: StoredRole) -> KeyRole {
    match role {
        StoredRole::Admin => KeyRole::Admin,
        StoredRole::Auditor => KeyRole::Auditor,
        StoredRole::Service => KeyRole::Service,
    }
}

// ---- user tokens (JWT) ----

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub tid: String,
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

pub fn mint_user_token(tenant: &TenantId, user: &str, ttl_secs: u64, signing_secret: &str) -> Result<(String, u64), ApiError> {
    let now = bulkhead_storage::now_ms() / 1000;
    let claims = Claims {
        tid: tenant.to_string(),
        sub: user.to_owned(),
        exp: now + ttl_secs,
        iat: Some(now),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(signing_secret.as_bytes()),
    )
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("failed to sign token: {e}")))?;
    Ok((token, claims.exp))
}

/// Reads the tenant a token claims, before the signature is checked so that the right
/// tenant's secret can be used to check it. Nothing read here is trusted until
/// [`verify_user_token`] succeeds.
pub fn claimed_tenant(token: &str) -> Result<TenantId, ApiError> {
    let data = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
        .map_err(|_| ApiError::unauthorized("invalid token"))?;
    TenantId::parse(&data.claims.tid).map_err(|_| ApiError::unauthorized("invalid token"))
}

/// Checks the signature (HS256 only), `exp` and the `tid` claim. Returns the user id.
pub fn verify_user_token(token: &str, tenant: &TenantId, signing_secret: &str, leeway_secs: u64) -> Result<String, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = leeway_secs;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(signing_secret.as_bytes()), &validation)
        .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
    if data.claims.tid != tenant.as_str() {
        return Err(ApiError::unauthorized("invalid token: tid does not match"));
    }
    Ok(data.claims.sub)
}

// ---- helpers ----

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `bytes` random bytes from the OS-seeded generator, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: KeyRole) -> Principal {
        Principal::TenantKey {
            tenant: TenantId::parse("acme").unwrap(),
            role,
            key_id: "k".into(),
        }
    }

    #[test]
    fn auditor_reads_no_messages() {
        assert!(allows(&key(KeyRole::Auditor), Action::ReadUsage));
        assert!(!allows(&key(KeyRole::Auditor), Action::ReadMessages));
        assert!(!allows(&key(KeyRole::Auditor), Action::MintTokens));
    }

    #[test]
    fn tenant_admin_cannot_delete_its_tenant() {
        assert!(!allows(&key(KeyRole::Admin), Action::DeleteTenant));
        assert!(allows(&key(KeyRole::Admin), Action::ManageKeys));
        assert!(!allows(&key(KeyRole::Service), Action::ManageKeys));
    }

    #[test]
    fn audit_readers_and_policy_writers() {
        assert!(allows(&key(KeyRole::Auditor), Action::ReadAudit));
        assert!(allows(&key(KeyRole::Admin), Action::ReadAudit));
        assert!(!allows(&key(KeyRole::Service), Action::ReadAudit));
        assert!(!allows(&key(KeyRole::Admin), Action::ReadPlatformAudit));
        assert!(allows(&key(KeyRole::Admin), Action::ManageNetworkPolicy));
        assert!(!allows(&key(KeyRole::Auditor), Action::ManageNetworkPolicy));
        assert!(!allows(&key(KeyRole::Admin), Action::SuspendTenant));
        assert!(allows(&Principal::PlatformAdmin, Action::SuspendTenant));
    }

    #[test]
    fn foreign_tenant_path_is_not_found() {
        let other = TenantId::parse("globex").unwrap();
        let err = authorize(&key(KeyRole::Admin), Action::ReadUsers, Some(&other)).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
    }

    #[test]
    fn user_reads_only_branding() {
        let user = Principal::User {
            tenant: TenantId::parse("acme").unwrap(),
            user: UserId::parse("alice").unwrap(),
        };
        assert!(allows(&user, Action::ReadBranding));
        assert!(!allows(&user, Action::UpdateBranding));
        assert!(!allows(&user, Action::ReadTenant));
        assert!(!allows(&user, Action::ReadMessages));
        assert!(!allows(&user, Action::MintTokens));
    }

    #[test]
    fn only_admins_change_branding() {
        assert!(allows(&key(KeyRole::Admin), Action::UpdateBranding));
        assert!(!allows(&key(KeyRole::Service), Action::UpdateBranding));
        assert!(!allows(&key(KeyRole::Auditor), Action::UpdateBranding));
        assert!(allows(&key(KeyRole::Auditor), Action::ReadBranding));
    }

    #[test]
    fn foreign_user_token_is_not_found() {
        let user = Principal::User {
            tenant: TenantId::parse("acme").unwrap(),
            user: UserId::parse("alice").unwrap(),
        };
        let other = TenantId::parse("globex").unwrap();
        let err = authorize(&user, Action::ReadBranding, Some(&other)).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
    }

    #[test]
    fn token_roundtrip_and_wrong_secret() {
        let tenant = TenantId::parse("acme").unwrap();
        let (token, _) = mint_user_token(&tenant, "alice", 60, "s1").unwrap();
        assert_eq!(claimed_tenant(&token).unwrap(), tenant);
        assert_eq!(verify_user_token(&token, &tenant, "s1", 0).unwrap(), "alice");
        assert!(verify_user_token(&token, &tenant, "s2", 0).is_err());
        let other = TenantId::parse("globex").unwrap();
        assert!(verify_user_token(&token, &other, "s1", 0).is_err());
    }

    #[test]
    fn admin_token_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = PlatformToken::load_or_generate(None, dir.path()).unwrap();
        let path = admin_token_path(dir.path());
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let token = fs::read_to_string(&path).unwrap();
        assert!(first.matches(&token));
        let second = PlatformToken::load_or_generate(None, dir.path()).unwrap();
        assert!(second.matches(&token));
    }
}
