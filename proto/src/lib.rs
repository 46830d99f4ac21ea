//! Wire types of the bulkhead protocol, shared by the server and its clients.
//!
//! The JSON shapes here are the external contract described in `docs/PROTOCOL.md`: changing a
//! field name or an error code breaks deployed clients. Storage formats are deliberately not
//! here; the storage crate keeps its own versioned records so that the two can evolve apart.

mod error;
pub mod export;
mod rest;
mod ws;

pub use error::{ErrorBody, ErrorCode, RestError};
pub use rest::*;
pub use ws::*;
