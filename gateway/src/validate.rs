//! Input checks shared by the REST API and the WebSocket protocol, so both reject the same
//! input with the same error.

use bulkhead_proto::{ErrorCode, MAX_PAGE_LIMIT};

use crate::error::ApiError;

/// Longest `client_msg_id`. It is stored in the idempotency index of every message, so it
/// is kept short; 128 bytes fits a UUID with a prefix.
const MAX_CLIENT_MSG_ID_BYTES: usize = 128;

pub fn client_msg_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err(ApiError::invalid(format!(
            "client_msg_id must have 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks the encoded size of a message body against the tenant's `max_message_bytes`.
pub fn body_size(body_json: &str, max_message_bytes: u64) -> Result<(), ApiError> {
    if body_json.len() as u64 > max_message_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "message body has {} bytes; this tenant's max_message_bytes is {max_message_bytes}",
                body_json.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a page size: at least 1, at most `MAX_PAGE_LIMIT`, which is also the default.
pub fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(MAX_PAGE_LIMIT as usize),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!("limit {n} is out of range 1..={MAX_PAGE_LIMIT}"))),
    }
}
