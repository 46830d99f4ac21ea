//! The one place where internal errors become wire error codes.

use std::time::Duration;

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use bulkhead_engine::{quota::Resource, EngineError};
use bulkhead_proto::{ErrorBody, ErrorCode, RestError};
use bulkhead_storage::{IdError, StorageError, TenantId};

/// An error as the client sees it: a stable code and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub resource: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
            resource: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// Builds the error for a high-risk operation sent without `header: value` (HTTP 428).
    pub fn confirmation_required(action: &str, header: &str, value: &str) -> Self {
        ApiError::new(
            ErrorCode::ConfirmationRequired,
            format!("{action} needs the header {header}: {value}"),
        )
    }

    /// Builds the error for a REST request over its tenant's `rest_requests_per_sec` (HTTP
    /// 429). The body carries `retry_after` in milliseconds, and the `Retry-After` header the
    /// same time rounded up to whole seconds, so the header is at least 1.
    pub fn rate_limited(tenant: &TenantId, limit_per_sec: u64, retry_after: Duration) -> Self {
        let mut error = ApiError::new(
            ErrorCode::RateLimited,
            format!("tenant {tenant} is over its limit of {limit_per_sec} REST requests per second; retry after the time in Retry-After"),
        );
        error.retry_after_ms = Some(retry_after.as_millis().max(1) as u64);
        error.resource = Some(Resource::RestRequests.as_str().to_owned());
        error
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            retry_after_ms: self.retry_after_ms,
            resource: self.resource.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(ms) = self.retry_after_ms {
            response.insert_header(("Retry-After", ms.div_ceil(1000).to_string()));
        }
        response.json(RestError { error: self.body() })
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound(what) => ApiError::not_found(what),
            EngineError::InvalidRequest(message) => ApiError::invalid(message),
            EngineError::Conflict(what) => ApiError::new(ErrorCode::Conflict, format!("{what} already exists")),
            EngineError::Forbidden(message) => ApiError::forbidden(message),
            EngineError::FeatureDisabled(feature) => ApiError::new(
                ErrorCode::FeatureDisabled,
                format!("feature {feature} is not enabled for this tenant; a platform admin can enable it with PATCH /v1/tenants/{{tid}}"),
            ),
            EngineError::TenantSuspended(tenant) => {
                ApiError::new(ErrorCode::TenantSuspended, format!("tenant {tenant} is suspended"))
            }
            EngineError::QuotaExceeded(exceeded) => {
                let resource = exceeded.resource.as_str();
                let mut error = ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!("the tenant's {resource} quota is exhausted; retry later"),
                );
                error.resource = Some(resource.to_owned());
                error.retry_after_ms = Some(exceeded.retry_after.as_millis().max(1) as u64);
                error
            }
            EngineError::ActorStopped(_) | EngineError::ShuttingDown => {
                let mut error = ApiError::new(ErrorCode::Internal, err.to_string());
                error.retry_after_ms = Some(100);
                error
            }
            EngineError::Storage(err) => err.into(),
            other => internal(other),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::TenantNotFound(tenant) => ApiError::not_found(format!("tenant {tenant}")),
            StorageError::ApiKeyNotFound(key_id) => ApiError::not_found(format!("API key {key_id}")),
            StorageError::ApiKeyExpiring { key_id, expires_at_ms } => ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "API key {key_id} was already rotated and expires at {expires_at_ms} (ms since the Unix epoch); rotate the key that replaced it"
                ),
            ),
            other => internal(other),
        }
    }
}

impl From<IdError> for ApiError {
    fn from(err: IdError) -> Self {
        ApiError::invalid(err.to_string())
    }
}

/// Logs the cause and hides it from the client, which gets a generic message.
fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "internal error");
    ApiError::new(ErrorCode::Internal, "internal error; nothing acknowledged before it is lost")
}
