//! RocksDB storage for bulkhead.
//!
//! One process holds the messages of many tenants that must never mix. This crate keeps them
//! apart by construction:
//!
//! - Each tenant's data lives on its isolation tier (see [`placement`]): behind its id in the
//!   `shared` column family, in its own column family `t.<tenant>`, or in its own database.
//!   The tenant registry and the API keys live in the `sys` column family.
//! - Each tenant has an append-only [`audit`] log in its own key space, and the platform has
//!   one in `sys`; both are hash chains that an offline walk can verify.
//! - Code above this crate never sees the RocksDB handle. It gets a [`TenantStore`] bound to
//!   one tenant, and every key that store can build starts inside that tenant's key space.
//! - Every value goes through [`codec`], which writes a format version byte before the
//!   postcard encoding, so a later release can still read data written by this one.
//! - Writes go through one [`committer`] thread per database, which merges the batches that
//!   arrive together into one `WriteBatch` and one WAL sync (group commit). A write is
//!   acknowledged only after RocksDB accepted it with the configured [`Durability`].
//!
//! Memory stays bounded with thousands of column families because every column family shares
//! one `WriteBufferManager`, has a small write buffer of its own, and the WAL is capped by
//! `max_total_wal_size`, which also stops an idle tenant from pinning old WAL files.

pub mod audit;
pub mod codec;
mod committer;
mod db;
mod error;
mod ids;
mod keys;
pub(crate) mod placement;
mod records;
mod tenant_store;

pub use committer::Durability;
pub use db::{MigrationReport, Storage, StorageOptions};
pub use error::{Result, StorageError};
pub use ids::{ConvId, IdError, TenantId, UserId};
pub use records::{
    ApiKeyRecord, BrandingRecord, ConversationKind, ConversationRecord, KeyRole, MessageRecord,
    NetworkPolicyRecord, QuotaLimits, TenantRecord, TenantStatus, Tier, UserRecord,
};
pub use tenant_store::{TenantBatch, TenantStore, MASKING_KEY_BYTES};

/// Milliseconds since the Unix epoch, the time unit of every stored timestamp.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
