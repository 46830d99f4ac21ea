//! Async client for the bulkhead chat server: the WebSocket protocol at `GET /v1/ws` and the
//! REST API under `/v1`.
//!
//! [`RestClient`] has one method per REST route, typed with the bodies from
//! [`bulkhead_proto`], plus [`RestClient::request`] for sending arbitrary requests in tests.
//! [`WsClient`] keeps one WebSocket connection, matches responses to requests by `id`, and
//! queues events (`message`, `receipt`, `typing`) for [`WsClient::next_event`]. Requests can
//! be pipelined from clones of one client, and [`WsClient::send_nowait`] queues a send
//! without waiting for its ack. Failures of either client are a [`ClientError`], which keeps
//! the server's [`ErrorCode`], HTTP status or close code.
//!
//! Only `http://` and `ws://` URLs work, because this build has no TLS support.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use bulkhead_client::proto::{CreateTenantRequest, CreateUserRequest, MintTokenRequest};
//! use bulkhead_client::{RestClient, ServerFrame, WsClient};
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), bulkhead_client::ClientError> {
//! let admin = RestClient::new("http://127.0.0.1:8080", "platform-admin-token");
//! let created = admin
//!     .create_tenant(&CreateTenantRequest {
//!         id: "acme".into(),
//!         name: "Acme".into(),
//!         tier: None,
//!         quotas: None,
//!         features: None,
//!     })
//!     .await?;
//!
//! // Tenant-level calls use the tenant's API key.
//! let acme = admin.with_credential(created.api_key.key);
//! acme.create_user("acme", &CreateUserRequest { id: "alice".into(), display_name: None })
//!     .await?;
//! let token = acme
//!     .mint_token("acme", &MintTokenRequest { user: "alice".into(), ttl_secs: 3600 })
//!     .await?
//!     .token;
//!
//! let ws = WsClient::connect("ws://127.0.0.1:8080", &token).await?;
//! let ack = ws.send("general", "msg-1", json!({"text": "hello"})).await?;
//! println!("stored as seq {}", ack.seq);
//!
//! if let Some(ServerFrame::Message(item)) = ws.next_event(Duration::from_secs(1)).await {
//!     println!("{} wrote {}", item.from, item.body.get());
//! }
//! ws.close().await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod frame;
mod rest;
mod ws;

pub use bulkhead_proto as proto;
pub use bulkhead_proto::{ConversationPage, ErrorCode, MessageItem, SendAck, ServerFrame};
pub use reqwest::Method;

pub use error::{ClientError, ABNORMAL_CLOSURE};
pub use frame::decode_server_frame;
pub use rest::{RestClient, DEFAULT_REST_TIMEOUT};
pub use ws::{CloseInfo, WsClient, WsOptions, DEFAULT_EVENT_CAPACITY, DEFAULT_REQUEST_TIMEOUT};
