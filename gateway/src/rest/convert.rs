//! Conversions between stored records and their wire forms.

use bulkhead_proto as wire;
use bulkhead_storage as stored;

pub fn tenant(record: &stored::TenantRecord) -> wire::Tenant {
    wire::Tenant {
        id: record.id.to_string(),
        name: record.name.clone(),
        tier: wire_tier(record.tier),
        status: match record.status {
            stored::TenantStatus::Active => wire::TenantStatus::Active,
            stored::TenantStatus::Suspended => wire::TenantStatus::Suspended,
        },
        quotas: quotas(&record.quotas),
        features: record.features.clone(),
        created_at: record.created_at_ms,
    }
}

pub fn wire_tier(tier: stored::Tier) -> wire::Tier {
    match tier {
        stored::Tier::Shared => wire::Tier::Shared,
        stored::Tier::Cf => wire::Tier::Cf,
        stored::Tier::Dedicated => wire::Tier::Dedicated,
    }
}

pub fn tier(tier: wire::Tier) -> stored::Tier {
    match tier {
        wire::Tier::Shared => stored::Tier::Shared,
        wire::Tier::Cf => stored::Tier::Cf,
        wire::Tier::Dedicated => stored::Tier::Dedicated,
    }
}

pub fn status(status: wire::TenantStatus) -> stored::TenantStatus {
    match status {
        wire::TenantStatus::Active => stored::TenantStatus::Active,
        wire::TenantStatus::Suspended => stored::TenantStatus::Suspended,
    }
}

pub fn quotas(limits: &stored::QuotaLimits) -> wire::Quotas {
    wire::Quotas {
        cpu_millicores: limits.cpu_millicores,
        memory_bytes: limits.memory_bytes,
        ingress_bytes_per_sec: limits.ingress_bytes_per_sec,
        egress_bytes_per_sec: limits.egress_bytes_per_sec,
        max_connections: limits.max_connections,
        max_message_bytes: limits.max_message_bytes,
        max_storage_bytes: limits.max_storage_bytes,
        weight: limits.weight,
        rest_requests_per_sec: limits.rest_requests_per_sec,
    }
}

pub fn quota_limits(quotas: &wire::Quotas) -> stored::QuotaLimits {
    stored::QuotaLimits {
        cpu_millicores: quotas.cpu_millicores,
        memory_bytes: quotas.memory_bytes,
        ingress_bytes_per_sec: quotas.ingress_bytes_per_sec,
        egress_bytes_per_sec: quotas.egress_bytes_per_sec,
        max_connections: quotas.max_connections,
        max_message_bytes: quotas.max_message_bytes,
        max_storage_bytes: quotas.max_storage_bytes,
        weight: quotas.weight,
        rest_requests_per_sec: quotas.rest_requests_per_sec,
    }
}

/// Applies the fields present in `patch` on top of `base`.
pub fn patch_quotas(base: &wire::Quotas, patch: &wire::QuotasPatch) -> wire::Quotas {
    wire::Quotas {
        cpu_millicores: patch.cpu_millicores.unwrap_or(base.cpu_millicores),
        memory_bytes: patch.memory_bytes.unwrap_or(base.memory_bytes),
        ingress_bytes_per_sec: patch.ingress_bytes_per_sec.unwrap_or(base.ingress_bytes_per_sec),
        egress_bytes_per_sec: patch.egress_bytes_per_sec.unwrap_or(base.egress_bytes_per_sec),
        max_connections: patch.max_connections.unwrap_or(base.max_connections),
        max_message_bytes: patch.max_message_bytes.unwrap_or(base.max_message_bytes),
        max_storage_bytes: patch.max_storage_bytes.unwrap_or(base.max_storage_bytes),
        weight: patch.weight.unwrap_or(base.weight),
        rest_requests_per_sec: patch.rest_requests_per_sec.unwrap_or(base.rest_requests_per_sec),
    }
}

pub fn user(record: &stored::UserRecord) -> wire::User {
    wire::User {
        id: record.id.clone(),
        display_name: record.display_name.clone(),
        created_at: record.created_at_ms,
    }
}

pub fn conversation_kind(kind: wire::ConversationKind) -> stored::ConversationKind {
    match kind {
        wire::ConversationKind::Direct => stored::ConversationKind::Direct,
        wire::ConversationKind::Group => stored::ConversationKind::Group,
    }
}

pub fn conversation(record: &stored::ConversationRecord, last_seq: u64) -> wire::Conversation {
    wire::Conversation {
        id: record.id.clone(),
        kind: match record.kind {
            stored::ConversationKind::Direct => wire::ConversationKind::Direct,
            stored::ConversationKind::Group => wire::ConversationKind::Group,
        },
        name: record.name.clone(),
        members: record.members.clone(),
        last_seq,
        created_at: record.created_at_ms,
    }
}

pub fn api_key(record: &stored::ApiKeyRecord, last_used_ms: Option<u64>) -> wire::ApiKey {
    wire::ApiKey {
        id: record.id.clone(),
        role: crate::auth::wire_role(record.role),
        name: record.name.clone(),
        created_at: record.created_at_ms,
        last_used_at: last_used_ms,
        expires_at: record.expires_at_ms,
    }
}
