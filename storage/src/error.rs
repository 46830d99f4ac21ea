use thiserror::Error;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Failures of the storage layer. The gateway maps each to one wire error code.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// RocksDB returned an error: an I/O failure, corruption, or a write to a dropped column
    /// family. The operation did not take effect.
    #[error("rocksdb: {context}: {source}")]
    Rocks {
        context: String,
        #[source]
        source: rocksdb::Error,
    },

    /// A stored value could not be decoded: it is corrupt or was written by a newer release.
    #[error("failed to decode {what}: {reason}")]
    Decode { what: &'static str, reason: String },

    /// The tenant does not exist (or was deleted while the operation ran).
    #[error("tenant {0} not found")]
    TenantNotFound(String),

    /// The tenant already exists.
    #[error("tenant {0} already exists")]
    TenantExists(String),

    /// The API key does not exist, belongs to another tenant, or was revoked.
    #[error("API key {0} not found")]
    ApiKeyNotFound(String),

    /// The API key was already rotated: it has an expiry, so it cannot be rotated again.
    #[error("API key {key_id} was already rotated and expires at {expires_at_ms} ms since the Unix epoch")]
    ApiKeyExpiring { key_id: String, expires_at_ms: u64 },

    /// The requested feature of the storage layer is not available in this release.
    #[error("{0}")]
    Unsupported(String),

    /// A migration named the tier the tenant is already on.
    #[error("tenant {0} is already on that tier")]
    AlreadyOnTier(String),

    /// A file system operation on the data directory failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The committer thread has stopped, so no write can be made durable any more.
    #[error("the commit thread has stopped; the database is closing")]
    CommitterStopped,
}

impl StorageError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn rocks(context: impl Into<String>, source: rocksdb::Error) -> Self {
        StorageError::Rocks {
            context: context.into(),
            source,
        }
    }
}
