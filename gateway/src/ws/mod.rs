//! The WebSocket endpoint `GET /v1/ws`: authentication before the upgrade, then one session
//! task per connection.

mod cpu;
mod frames;
mod ops;
mod session;

use std::time::Duration;

use actix_web::{get, web, HttpRequest, HttpResponse};
use bulkhead_engine::metrics::RejectReason;
use bulkhead_proto::ErrorCode;
use bulkhead_storage::UserId;

use crate::{auth, error::ApiError, state::AppState};

pub use session::SessionSettings;

/// Authenticates the user token, checks the tenant's network allowlist, status and
/// connection quota, and upgrades.
#[get("/v1/ws")]
pub(crate) async fn upgrade(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.engine.is_shutting_down() {
        return Err(ApiError::new(ErrorCode::Internal, "the server is shutting down; reconnect to another instance"));
    }
    let token = auth::bearer(&req, true).ok_or_else(|| ApiError::unauthorized("missing token"))?;

    // A token that names an unknown tenant is as invalid as a forged one: both get 401. On a
    // tenant host name, a token of any other tenant is rejected the same way.
    let tenant_id = auth::claimed_tenant(&token)?;
    if !state.host_pin(&req).admits(&tenant_id) {
        return Err(ApiError::unauthorized("invalid token"));
    }
    let tenant = state
        .engine
        .tenant(&tenant_id)?
        .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
    let record = tenant.record();
    let user = auth::verify_user_token(&token, &tenant_id, &record.signing_secret, state.config.jwt_leeway_secs)?;
    let user = UserId::parse(&user).map_err(|_| ApiError::unauthorized("invalid token: bad sub"))?;
    if tenant.store().user(&user)?.is_none() {
        return Err(ApiError::unauthorized(format!("invalid token: user {user} does not exist")));
    }
    let source = state.client_address(&req);
    state.network_policies.check(state.engine.storage(), &tenant_id, source)?;
    tenant.ensure_active()?;

    if tenant.connection_count() as u64 >= record.quotas.max_connections {
        tenant.quota().metrics.reject(RejectReason::Connections);
        let mut error = ApiError::new(
            ErrorCode::QuotaExceeded,
            format!("tenant {tenant_id} has reached max_connections ({})", record.quotas.max_connections),
        );
        error.resource = Some("connections".into());
        error.retry_after_ms = Some(1000);
        return Err(error);
    }

    let ws = &state.config.websocket;
    let (response, socket, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::invalid(format!("WebSocket upgrade failed: {e}")))?;
    let stream = stream
        .max_frame_size(ws.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(ws.max_frame_bytes);

    let settings = SessionSettings {
        ping_interval: Duration::from_secs(ws.ping_interval_secs.max(1)),
        idle_timeout: Duration::from_secs(ws.idle_timeout_secs.max(1)),
        max_consecutive_invalid_frames: ws.max_consecutive_invalid_frames,
    };
    actix_web::rt::spawn(session::run(tenant, user, settings, socket, stream));
    Ok(response)
}
