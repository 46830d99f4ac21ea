//! Liveness, readiness and the Prometheus endpoint. None of them needs a credential:
//! they carry no tenant data beyond the quota series, and scrapers rarely hold secrets.
// NOTE: operators who expose the port beyond loopback should restrict /metrics at the proxy.

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

#[get("/healthz")]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Reports ready while the database responds and the server is not shutting down.
#[get("/readyz")]
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.engine.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "shutting_down" }));
    }
    match state.engine.storage().tenants() {
        Ok(tenants) => HttpResponse::Ok().json(json!({ "status": "ready", "tenants": tenants.len() })),
        Err(err) => {
            tracing::error!(error = %err, "readiness check failed to read the tenant registry");
            HttpResponse::ServiceUnavailable().json(json!({ "status": "storage_unavailable" }))
        }
    }
}

#[get("/metrics")]
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.metrics.render();
    state.engine.render_tenant_metrics(&mut body);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
