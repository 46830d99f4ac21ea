//! The error type of every client call.

use std::error::Error as StdError;

use bulkhead_proto::ErrorCode;

/// Close code that RFC 6455 reserves for a connection that ended without a close frame.
pub const ABNORMAL_CLOSURE: u16 = 1006;

/// An error from the REST or WebSocket client.
///
/// Server-reported failures keep their [`ErrorCode`] so that tests and callers can branch on
/// it: [`ClientError::Api`] for REST, [`ClientError::Server`] for WebSocket error frames.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket handshake failed. `status` is the HTTP status when the server rejected
    /// the upgrade (401 for a bad token, 429 for too many connections), and `None` when no
    /// HTTP response arrived (connection refused, invalid URL).
    #[error("WebSocket connect failed (HTTP status {}): {message}", display_status(*.status))]
    Connect {
        status: Option<u16>,
        message: String,
    },

    /// A REST call returned a non-2xx status with a valid error envelope.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },

    /// A REST call returned a non-2xx status whose body is not an error envelope.
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },

    /// The server responded to a WebSocket request with an `error` frame.
    #[error("server error {code}: {message}")]
    Server {
        code: ErrorCode,
        message: String,
        retry_after_ms: Option<u64>,
        resource: Option<String>,
    },

    /// The WebSocket connection is closed. `code` and `reason` come from the server's close
    /// frame, or are [`ABNORMAL_CLOSURE`] and a description when the connection ended
    /// without one.
    #[error("WebSocket connection closed with code {code}: {reason}")]
    Closed { code: u16, reason: String },

    /// No response arrived within the request timeout.
    #[error("request timed out")]
    Timeout,

    /// The server sent something that does not follow the protocol, such as an unexpected
    /// `op` in a response or a body that does not decode.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The network or HTTP layer failed before a response arrived.
    #[error("transport error: {0}")]
    Transport(String),
}

impl ClientError {
    /// Returns the server's error code for [`ClientError::Api`] and [`ClientError::Server`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } | ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Returns the HTTP status of a failed REST call or a rejected WebSocket upgrade.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ClientError::Connect { status, .. } => *status,
            ClientError::Api { status, .. } | ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Returns the close code for [`ClientError::Closed`].
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ClientError::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn display_status(status: Option<u16>) -> String {
    match status {
        Some(status) => status.to_string(),
        None => "none".to_string(),
    }
}

/// Formats an error with its chain of sources, because reqwest and tungstenite put the
/// useful part (such as "connection refused") in a source rather than in the top message.
pub(crate) fn describe_error(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
