use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable error codes. Clients localize and branch on these, so a code is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or body is not valid JSON, names an unknown `op`, or misses a field.
    InvalidRequest,
    /// The credential is missing, invalid or expired.
    Unauthorized,
    /// The credential is valid but its role does not allow the operation.
    Forbidden,
    /// The object does not exist, or belongs to another tenant.
    NotFound,
    /// The message body or frame is larger than `max_message_bytes`.
    PayloadTooLarge,
    /// A tenant quota is exhausted. `resource` names it and `retry_after_ms` is when to retry.
    QuotaExceeded,
    /// Too many requests in a short time; retry after `retry_after_ms`.
    RateLimited,
    /// The tenant's plan does not include this feature.
    FeatureDisabled,
    /// The tenant is suspended; its data is kept but no requests are served.
    TenantSuspended,
    /// The object already exists (REST only: creating a tenant, user or conversation twice),
    /// or an API key that was already rotated is rotated again.
    Conflict,
    /// A high-risk operation is missing its confirmation header, or the header names another
    /// object (REST only, HTTP 428). The message names the header and the value it needs.
    ConfirmationRequired,
    /// An unexpected server-side failure. Nothing acknowledged before it is lost.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::FeatureDisabled => "feature_disabled",
            ErrorCode::TenantSuspended => "tenant_suspended",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ConfirmationRequired => "confirmation_required",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that the REST API returns with this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::ConfirmationRequired => 428,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::QuotaExceeded | ErrorCode::RateLimited => 429,
            ErrorCode::FeatureDisabled => 403,
            ErrorCode::TenantSuspended => 403,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The REST error envelope: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestError {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}
