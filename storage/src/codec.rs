//! The one place where stored values are encoded and decoded.
//!
//! Layout of every value: one format version byte, then the postcard encoding of the record.
//! postcard is compact and has a specified wire format, but it is not self-describing, so a
//! record type may only change together with a new version byte and a decoder for the old one.

use serde::{de::DeserializeOwned, Serialize};

use crate::{
    ApiKeyRecord, KeyRole, MessageRecord, QuotaLimits, Result, StorageError, TenantId, TenantRecord, TenantStatus, Tier,
};

/// Format version written in front of every value by this release, except messages, API keys
/// and tenant records.
pub const FORMAT_VERSION: u8 = 1;

/// Format version of the tenant records that this release writes. Version 1 is the layout
/// before `rest_requests_per_sec`, which [`decode_tenant`] still reads.
pub const TENANT_FORMAT_VERSION: u8 = 2;

/// Format version of the message records that this release writes. Messages have their own
/// version because they are the only record whose layout has changed: version 1 is the
/// layout before edits and recalls, which [`decode_message`] still reads.
pub const MESSAGE_FORMAT_VERSION: u8 = 2;

/// Format version of the API key records that this release writes. Version 1 is the layout
/// before rotation, without `expires_at_ms`, which [`decode_api_key`] still reads.
pub const API_KEY_FORMAT_VERSION: u8 = 2;

/// Encodes `value` as `[FORMAT_VERSION, postcard bytes…]`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_with_version(FORMAT_VERSION, value)
}

fn encode_with_version<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];

    // Serializing our own record types into a Vec cannot fail: they contain no maps with
    // non-string keys and no types postcard rejects.
    let body = postcard::to_stdvec(value).expect("stored records are postcard-serializable");
    out.extend_from_slice(&body);
    out
}

/// Decodes a record type with two layouts: `current_version`, and version 1, which is read as
/// `V1` and converted. `what` names the record type in errors.
fn decode_current_or_v1<T, V1>(what: &'static str, current_version: u8, bytes: &[u8]) -> Result<T>
where
    T: DeserializeOwned,
    V1: DeserializeOwned + Into<T>,
{
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StorageError::Decode {
            what,
            reason: "empty value".into(),
        });
    };
    let decoded = if version == current_version {
        postcard::from_bytes(body)
    } else if version == 1 {
        postcard::from_bytes::<V1>(body).map(Into::into)
    } else {
        return Err(StorageError::Decode {
            what,
            reason: format!("unknown format version {version}, this release reads 1 and {current_version}"),
        });
    };
    decoded.map_err(|e| StorageError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// Decodes a value written by [`encode`]. `what` names the record type in errors.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StorageError::Decode {
            what,
            reason: "empty value".into(),
        });
    };
    if version != FORMAT_VERSION {
        return Err(StorageError::Decode {
            what,
            reason: format!("unknown format version {version}, this release reads {FORMAT_VERSION}"),
        });
    }
    postcard::from_bytes(body).map_err(|e| StorageError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// Encodes a message as `[MESSAGE_FORMAT_VERSION, postcard bytes…]`.
pub fn encode_message(message: &MessageRecord) -> Vec<u8> {
    encode_with_version(MESSAGE_FORMAT_VERSION, message)
}

/// Decodes a message written by [`encode_message`], or by a release before edits and
/// recalls (format version 1), which reads as neither edited nor recalled.
pub fn decode_message(bytes: &[u8]) -> Result<MessageRecord> {
    decode_current_or_v1::<MessageRecord, MessageRecordV1>("message record", MESSAGE_FORMAT_VERSION, bytes)
}

/// The layout of a message record in format version 1. Field order matters to postcard, so
/// this struct must never change.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct MessageRecordV1 {
    seq: u64,
    from: String,
    client_msg_id: String,
    ts_ms: u64,
    body_json: String,
}

impl From<MessageRecordV1> for MessageRecord {
    fn from(old: MessageRecordV1) -> Self {
        MessageRecord::new(old.seq, old.from, old.client_msg_id, old.ts_ms, old.body_json)
    }
}

/// Encodes an API key as `[API_KEY_FORMAT_VERSION, postcard bytes…]`.
pub fn encode_api_key(key: &ApiKeyRecord) -> Vec<u8> {
    encode_with_version(API_KEY_FORMAT_VERSION, key)
}

/// Decodes an API key written by [`encode_api_key`], or by a release before rotation (format
/// version 1), which reads as a key that does not expire.
pub fn decode_api_key(bytes: &[u8]) -> Result<ApiKeyRecord> {
    decode_current_or_v1::<ApiKeyRecord, ApiKeyRecordV1>("API key record", API_KEY_FORMAT_VERSION, bytes)
}

/// The layout of an API key record in format version 1. Field order matters to postcard, so
/// this struct must never change.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ApiKeyRecordV1 {
    id: String,
    tenant: TenantId,
    role: KeyRole,
    name: Option<String>,
    secret_sha256: [u8; 32],
    created_at_ms: u64,
}

impl From<ApiKeyRecordV1> for ApiKeyRecord {
    fn from(old: ApiKeyRecordV1) -> Self {
        ApiKeyRecord {
            id: old.id,
            tenant: old.tenant,
            role: old.role,
            name: old.name,
            secret_sha256: old.secret_sha256,
            created_at_ms: old.created_at_ms,
            expires_at_ms: None,
        }
    }
}

/// Encodes a tenant record as `[TENANT_FORMAT_VERSION, postcard bytes…]`.
pub fn encode_tenant(record: &TenantRecord) -> Vec<u8> {
    encode_with_version(TENANT_FORMAT_VERSION, record)
}

/// Decodes a tenant record written by [`encode_tenant`], or by a release before
/// `rest_requests_per_sec` (format version 1). An old record gets
/// [`QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC`], not the `default_quotas` of the server's
/// config file, which this crate does not see.
pub fn decode_tenant(bytes: &[u8]) -> Result<TenantRecord> {
    decode_current_or_v1::<TenantRecord, TenantRecordV1>("tenant record", TENANT_FORMAT_VERSION, bytes)
}

/// The layout of a tenant record in format version 1. Field order matters to postcard, so
/// this struct and [`QuotaLimitsV1`] must never change.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct TenantRecordV1 {
    id: TenantId,
    name: String,
    tier: Tier,
    status: TenantStatus,
    quotas: QuotaLimitsV1,
    features: Vec<String>,
    signing_secret: String,
    created_at_ms: u64,
}

/// The quota set inside a version 1 tenant record.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct QuotaLimitsV1 {
    cpu_millicores: u64,
    memory_bytes: u64,
    ingress_bytes_per_sec: u64,
    egress_bytes_per_sec: u64,
    max_connections: u64,
    max_message_bytes: u64,
    max_storage_bytes: u64,
    weight: u64,
}

impl From<TenantRecordV1> for TenantRecord {
    fn from(old: TenantRecordV1) -> Self {
        let quotas = QuotaLimits {
            cpu_millicores: old.quotas.cpu_millicores,
            memory_bytes: old.quotas.memory_bytes,
            ingress_bytes_per_sec: old.quotas.ingress_bytes_per_sec,
            egress_bytes_per_sec: old.quotas.egress_bytes_per_sec,
            max_connections: old.quotas.max_connections,
            max_message_bytes: old.quotas.max_message_bytes,
            max_storage_bytes: old.quotas.max_storage_bytes,
            weight: old.quotas.weight,
            rest_requests_per_sec: QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC,
        };
        TenantRecord {
            id: old.id,
            name: old.name,
            tier: old.tier,
            status: old.status,
            quotas,
            features: old.features,
            signing_secret: old.signing_secret,
            created_at_ms: old.created_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_every_field() {
        let record = MessageRecord {
            seq: 7,
            from: "alice".into(),
            client_msg_id: "m-1".into(),
            ts_ms: 1_700_000_000_000,
            body_json: r#"{"text":"hi"}"#.into(),
            edited_ts_ms: Some(1_700_000_000_500),
            recalled_ts_ms: None,
        };

        let bytes = encode_message(&record);
        assert_eq!(bytes[0], MESSAGE_FORMAT_VERSION);
        assert_eq!(decode_message(&bytes).unwrap(), record);
    }

    #[test]
    fn version_1_message_decodes_without_markers() {
        let old = MessageRecordV1 {
            seq: 3,
            from: "bob".into(),
            client_msg_id: "m-3".into(),
            ts_ms: 1_600_000_000_000,
            body_json: r#"{"text":"old"}"#.into(),
        };
        // What the release before edits and recalls wrote: version 1, then the five fields.
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&old).unwrap());

        let decoded = decode_message(&bytes).unwrap();

        assert_eq!(decoded.seq, 3);
        assert_eq!(decoded.from, "bob");
        assert_eq!(decoded.client_msg_id, "m-3");
        assert_eq!(decoded.ts_ms, 1_600_000_000_000);
        assert_eq!(decoded.body_json, r#"{"text":"old"}"#);
        assert_eq!(decoded.edited_ts_ms, None);
        assert_eq!(decoded.recalled_ts_ms, None);
    }

    #[test]
    fn unknown_message_version_is_rejected() {
        let mut bytes = encode_message(&MessageRecord::new(1, "a".into(), "m".into(), 1, "1".into()));
        bytes[0] = MESSAGE_FORMAT_VERSION + 1;
        let err = decode_message(&bytes).unwrap_err();
        assert!(err.to_string().contains("unknown format version"), "{err}");
    }

    #[test]
    fn api_key_roundtrip_keeps_expiry() {
        let record = ApiKeyRecord {
            id: "a1b2c3".into(),
            tenant: TenantId::parse("acme").unwrap(),
            role: KeyRole::Service,
            name: Some("ci".into()),
            secret_sha256: [7; 32],
            created_at_ms: 1_700_000_000_000,
            expires_at_ms: Some(1_700_000_060_000),
        };

        let bytes = encode_api_key(&record);
        assert_eq!(bytes[0], API_KEY_FORMAT_VERSION);
        assert_eq!(decode_api_key(&bytes).unwrap(), record);
    }

    #[test]
    fn version_1_api_key_decodes_without_expiry() {
        let old = ApiKeyRecordV1 {
            id: "d4e5f6".into(),
            tenant: TenantId::parse("acme").unwrap(),
            role: KeyRole::Admin,
            name: None,
            secret_sha256: [9; 32],
            created_at_ms: 1_600_000_000_000,
        };
        // What the release before rotation wrote: version 1, then the six fields.
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&old).unwrap());

        let decoded = decode_api_key(&bytes).unwrap();

        assert_eq!(decoded.id, "d4e5f6");
        assert_eq!(decoded.tenant.as_str(), "acme");
        assert_eq!(decoded.role, KeyRole::Admin);
        assert_eq!(decoded.name, None);
        assert_eq!(decoded.secret_sha256, [9; 32]);
        assert_eq!(decoded.created_at_ms, 1_600_000_000_000);
        assert_eq!(decoded.expires_at_ms, None);
    }

    #[test]
    fn unknown_api_key_version_is_rejected() {
        let mut bytes = encode_api_key(&ApiKeyRecord {
            id: "k".into(),
            tenant: TenantId::parse("acme").unwrap(),
            role: KeyRole::Auditor,
            name: None,
            secret_sha256: [0; 32],
            created_at_ms: 1,
            expires_at_ms: None,
        });
        bytes[0] = API_KEY_FORMAT_VERSION + 1;
        let err = decode_api_key(&bytes).unwrap_err();
        assert!(err.to_string().contains("unknown format version"), "{err}");
    }

    fn version_1_tenant() -> TenantRecordV1 {
        TenantRecordV1 {
            id: TenantId::parse("acme").unwrap(),
            name: "Acme".into(),
            tier: Tier::Cf,
            status: TenantStatus::Suspended,
            quotas: QuotaLimitsV1 {
                cpu_millicores: 250,
                memory_bytes: 1 << 20,
                ingress_bytes_per_sec: 2048,
                egress_bytes_per_sec: 4096,
                max_connections: 7,
                max_message_bytes: 512,
                max_storage_bytes: 1 << 30,
                weight: 3,
            },
            features: vec!["typing".into()],
            signing_secret: "s3cret".into(),
            created_at_ms: 1_600_000_000_000,
        }
    }

    #[test]
    fn version_1_tenant_decodes_with_default_rest_rate() {
        // What the release before rest_requests_per_sec wrote: the generic format version 1,
        // then the tenant record with eight quota fields.
        let bytes = encode(&version_1_tenant());
        assert_eq!(bytes[0], 1);

        let decoded = decode_tenant(&bytes).unwrap();

        assert_eq!(decoded.id.as_str(), "acme");
        assert_eq!(decoded.name, "Acme");
        assert_eq!(decoded.tier, Tier::Cf);
        assert_eq!(decoded.status, TenantStatus::Suspended);
        assert_eq!(decoded.features, vec!["typing".to_string()]);
        assert_eq!(decoded.signing_secret, "s3cret");
        assert_eq!(decoded.created_at_ms, 1_600_000_000_000);
        let quotas = decoded.quotas;
        assert_eq!(quotas.cpu_millicores, 250);
        assert_eq!(quotas.memory_bytes, 1 << 20);
        assert_eq!(quotas.ingress_bytes_per_sec, 2048);
        assert_eq!(quotas.egress_bytes_per_sec, 4096);
        assert_eq!(quotas.max_connections, 7);
        assert_eq!(quotas.max_message_bytes, 512);
        assert_eq!(quotas.max_storage_bytes, 1 << 30);
        assert_eq!(quotas.weight, 3);
        assert_eq!(quotas.rest_requests_per_sec, QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC);
    }

    #[test]
    fn tenant_roundtrip_keeps_rest_rate() {
        let mut record = TenantRecord::from(version_1_tenant());
        record.quotas.rest_requests_per_sec = 5;

        let bytes = encode_tenant(&record);

        assert_eq!(bytes[0], TENANT_FORMAT_VERSION);
        assert_eq!(decode_tenant(&bytes).unwrap(), record);
    }

    #[test]
    fn unknown_tenant_version_is_rejected() {
        let mut bytes = encode_tenant(&TenantRecord::from(version_1_tenant()));
        bytes[0] = TENANT_FORMAT_VERSION + 1;
        let err = decode_tenant(&bytes).unwrap_err();
        assert!(err.to_string().contains("unknown format version"), "{err}");
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut bytes = encode(&42u64);
        bytes[0] = FORMAT_VERSION + 1;
        let err = decode::<u64>("seq", &bytes).unwrap_err();
        assert!(err.to_string().contains("unknown format version"), "{err}");
    }

    #[test]
    fn empty_value_is_rejected() {
        assert!(decode::<u64>("seq", &[]).is_err());
    }
}
