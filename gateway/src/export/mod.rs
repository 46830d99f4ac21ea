//! Tenant export and import.
//!
//! An export is the NDJSON stream of [`bulkhead_proto::export`]: a header, the tenant's users,
//! each conversation with its messages and read markers, and an `end` line with the counts.
//! [`writer`] produces it page by page from a [`bulkhead_storage::TenantStore`], plain or
//! masked by [`mask`]; [`import`] loads it into an empty tenant of a stopped server. The
//! format is described in docs/EXPORT.md.

pub mod import;
pub mod mask;
pub mod writer;
