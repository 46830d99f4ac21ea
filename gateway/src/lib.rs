//! bulkhead's gateway: the process's front door.
//!
//! It authenticates every caller (platform admin token, tenant API keys, user JWTs), turns
//! REST calls and WebSocket frames into engine operations on exactly one tenant, maps every
//! failure to a stable wire error code (see [`error`]), and serves `/metrics`. Request
//! handlers receive a [`state::TenantContext`] from the authentication layer; they never
//! take a tenant id from a request body.

mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod export;
mod key_usage;
mod network;
mod rest;
pub mod server;
mod state;
mod telemetry;
mod tenant_host;
mod validate;
mod ws;
