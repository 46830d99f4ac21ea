use bulkhead_storage::StorageError;

use crate::{quota::QuotaExceeded, Feature};
use thiserror::Error;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Failures of engine operations. The gateway maps each variant to one wire error code.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The named object does not exist in this tenant, or the caller may not see it (a user
    /// asking for a conversation it is not a member of gets this too).
    #[error("{0} not found")]
    NotFound(String),

    /// The request is well-formed but breaks a rule (a direct conversation with three members,
    /// a read marker past the last message, …).
    #[error("{0}")]
    InvalidRequest(String),

    /// The object already exists.
    #[error("{0} already exists")]
    Conflict(String),

    /// The caller may see the object but not change it (a member editing another member's
    /// message).
    #[error("{0}")]
    Forbidden(String),

    /// The tenant's plan does not include the feature.
    #[error("feature {0} is not enabled for this tenant")]
    FeatureDisabled(Feature),

    /// The tenant is suspended.
    #[error("tenant {0} is suspended")]
    TenantSuspended(String),

    /// The actor that owns the object stopped before it replied (it panicked or its tenant is
    /// being deleted). The request may or may not have taken effect; a send retried with the
    /// same `client_msg_id` returns the original `seq` if it did.
    #[error("the {0} actor stopped before it replied; retry with the same client_msg_id")]
    ActorStopped(&'static str),

    /// A tenant quota is exhausted; retry after the given time.
    #[error("quota exceeded: {}", .0.resource.as_str())]
    QuotaExceeded(QuotaExceeded),

    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,

    #[error(transparent)]
    Storage(#[from] StorageError),
}
