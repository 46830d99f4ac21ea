//! Recording high-risk REST actions in the audit logs.
//!
//! A handler runs its action, then hands the result to [`AppState::audit`], which appends one
//! entry per log the action belongs to:
//!
//! - platform actions (create, change or delete a tenant) go to the platform log;
//! - tenant actions (keys, user deletion, network policy, suspend and resume, export) go to the
//!   tenant's log, and also to the platform log when the platform admin performed them.
//!
//! Failed attempts are recorded too, with their error code, once the caller is authenticated
//! and may see the tenant. A tenant key aimed at another tenant's path gets `not_found` and is
//! recorded nowhere, so keys cannot write into a log they cannot read. Requests rejected with
//! `rate_limited` are not recorded either.

use std::net::IpAddr;

use bulkhead_proto::{ErrorCode, KeyRole};
use bulkhead_storage::{
    audit::{AuditActor, AuditEntry, AuditEvent, AuditHead, AuditOutcome, AuditRole},
    TenantId,
};

use crate::{auth::Principal, error::ApiError, state::AppState, tenant_host::HostPin};

/// An audited action. The names are part of the API: `GET …/audit?action=` filters by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    CreateTenant,
    UpdateTenant,
    DeleteTenant,
    SuspendTenant,
    ResumeTenant,
    CreateKey,
    RotateKey,
    RevokeKey,
    DeleteUser,
    SetNetworkPolicy,
    MigrateTenant,
    ExportTenant,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CreateTenant => "tenant.create",
            AuditAction::UpdateTenant => "tenant.update",
            AuditAction::DeleteTenant => "tenant.delete",
            AuditAction::SuspendTenant => "tenant.suspend",
            AuditAction::ResumeTenant => "tenant.resume",
            AuditAction::CreateKey => "key.create",
            AuditAction::RotateKey => "key.rotate",
            AuditAction::RevokeKey => "key.revoke",
            AuditAction::DeleteUser => "user.delete",
            AuditAction::SetNetworkPolicy => "network_policy.update",
            AuditAction::MigrateTenant => "tenant.migrate",
            AuditAction::ExportTenant => "tenant.export",
        }
    }
}

/// An authenticated caller, the address its request came from and the tenant its `Host`
/// pins it to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub source: IpAddr,
    pub host_pin: HostPin,
}

/// The logs an entry is written to.
#[derive(Debug, Clone, Copy)]
pub enum AuditLogs<'a> {
    Platform,
    /// The tenant's log, plus the platform log when the caller is the platform admin.
    Tenant(&'a str),
    /// The tenant's log only, for an action already recorded in the platform log under
    /// another name (a suspension made through `PATCH`).
    TenantOnly(&'a str),
}

/// One action to record.
pub struct AuditRecord<'a> {
    pub logs: AuditLogs<'a>,
    pub action: AuditAction,
    pub object: &'a str,
    pub detail: Option<String>,
}

impl AppState {
    /// Appends `record` with the outcome of `result` to its logs. A failed append is logged and
    /// counted in `bulkhead_audit_write_failures_total`, and does not change the response.
    // NOTE: the entry is written after the action, not in the same batch, so a crash between
    // the two leaves an action without its entry.
    pub async fn audit<T>(&self, caller: &Caller, record: AuditRecord<'_>, result: &Result<T, ApiError>) {
        // A request over the tenant's REST rate limit did nothing. Recording it would let a
        // flood write to the log at the flood's rate, so the rejection is only counted.
        if matches!(result, Err(err) if err.code == ErrorCode::RateLimited) {
            return;
        }
        // A failure is already logged and counted, and does not change the response.
        let _ = self.append_audit(caller, record, result).await;
    }

    /// Appends like [`AppState::audit`], but returns the first failed append, for an action
    /// that must not go ahead unrecorded: an export is recorded before its data leaves.
    pub async fn audit_or_fail<T>(
        &self,
        caller: &Caller,
        record: AuditRecord<'_>,
        result: &Result<T, ApiError>,
    ) -> Result<(), ApiError> {
        self.append_audit(caller, record, result).await
    }

    async fn append_audit<T>(
        &self,
        caller: &Caller,
        record: AuditRecord<'_>,
        result: &Result<T, ApiError>,
    ) -> Result<(), ApiError> {
        let event = event(caller, &record, result);
        let (tenant, platform) = match record.logs {
            AuditLogs::Platform => (None, true),
            AuditLogs::Tenant(tid) => (Some(tid), caller.principal.tenant().is_none()),
            AuditLogs::TenantOnly(tid) => (Some(tid), false),
        };

        let mut first_error = None;
        if let Some(tid) = tenant {
            if let Err(err) = self.append_tenant_audit(caller, tid, event.clone()).await {
                audit_failed(&record, &err);
                first_error.get_or_insert(err);
            }
        }
        if platform {
            if let Err(err) = self.engine.storage().append_platform_audit(event).await {
                let err = err.into();
                audit_failed(&record, &err);
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn append_tenant_audit(&self, caller: &Caller, tid: &str, event: AuditEvent) -> Result<(), ApiError> {
        let Ok(tenant) = TenantId::parse(tid) else {
            return Ok(());
        };
        if caller.principal.tenant().is_some_and(|own| *own != tenant) {
            return Ok(());
        }
        // A tenant that does not exist, or was just deleted, has no log to write to.
        let Some(handle) = self.engine.tenant(&tenant)? else {
            return Ok(());
        };
        match handle.store().append_audit(event).await {
            Ok(_) => Ok(()),
            Err(bulkhead_storage::StorageError::TenantNotFound(_)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

fn event<T>(caller: &Caller, record: &AuditRecord<'_>, result: &Result<T, ApiError>) -> AuditEvent {
    let (actor, role) = match &caller.principal {
        Principal::PlatformAdmin => (AuditActor::PlatformAdmin, AuditRole::Platform),
        Principal::PlatformOperator => (AuditActor::PlatformOperator, AuditRole::Operator),
        Principal::TenantKey { key_id, role, .. } => {
            let role = match role {
                KeyRole::Admin => AuditRole::Admin,
                KeyRole::Auditor => AuditRole::Auditor,
                KeyRole::Service => AuditRole::Service,
            };
            (AuditActor::ApiKey(key_id.clone()), role)
        }
        Principal::User { user, .. } => (AuditActor::User(user.to_string()), AuditRole::User),
    };
    AuditEvent {
        actor,
        role,
        action: record.action.as_str().to_owned(),
        object: record.object.to_owned(),
        source: caller.source.to_string(),
        outcome: match result {
            Ok(_) => AuditOutcome::Ok,
            Err(err) => AuditOutcome::Failed(err.code.as_str().to_owned()),
        },
        detail: record.detail.clone(),
    }
}

fn audit_failed(record: &AuditRecord<'_>, err: &ApiError) {
    metrics::counter!("bulkhead_audit_write_failures_total").increment(1);
    tracing::error!(action = record.action.as_str(), object = record.object, error = %err, "failed to write an audit entry");
}

/// Converts a stored entry and its hash to the wire form.
pub fn wire_entry(entry: &AuditEntry, sha256: &[u8; 32]) -> bulkhead_proto::AuditEntry {
    use bulkhead_proto::AuditActor as Wire;
    bulkhead_proto::AuditEntry {
        seq: entry.seq,
        ts: entry.ts_ms,
        actor: match &entry.actor {
            AuditActor::PlatformAdmin => Wire::PlatformAdmin,
            AuditActor::ApiKey(id) => Wire::ApiKey { id: id.clone() },
            AuditActor::User(id) => Wire::User { id: id.clone() },
            AuditActor::PlatformOperator => Wire::PlatformOperator,
        },
        role: match entry.role {
            AuditRole::Platform => "platform",
            AuditRole::Admin => "admin",
            AuditRole::Auditor => "auditor",
            AuditRole::Service => "service",
            AuditRole::User => "user",
            AuditRole::Operator => "operator",
        }
        .to_owned(),
        action: entry.action.clone(),
        object: entry.object.clone(),
        source: entry.source.clone(),
        result: match &entry.outcome {
            AuditOutcome::Ok => "ok".to_owned(),
            AuditOutcome::Failed(code) => code.clone(),
        },
        detail: entry.detail.clone(),
        prev_sha256: hex::encode(entry.prev_sha256),
        sha256: hex::encode(sha256),
    }
}

pub fn wire_head(head: &AuditHead) -> bulkhead_proto::AuditHead {
    bulkhead_proto::AuditHead {
        seq: head.seq,
        sha256: hex::encode(head.sha256),
    }
}
