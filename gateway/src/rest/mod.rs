//! The REST API under `/v1`, plus `/healthz`, `/readyz` and `/metrics`.

mod audit;
mod branding;
mod conversations;
mod convert;
mod credentials;
mod export;
mod health;
mod network_policy;
mod tenant_status;
mod tenant_tier;
mod tenants;
mod users;

use actix_web::{web, HttpRequest};

use crate::error::ApiError;

/// Confirmation header of deletions (tenants, users), set to the id of the deleted object.
const CONFIRM_DELETE: &str = "X-Confirm-Delete";

/// Confirmation header of network policy changes, set to the tenant id.
const CONFIRM_NETWORK_POLICY: &str = "X-Confirm-Network-Policy";

/// Largest REST request body. Message bodies are further limited by the tenant's
/// `max_message_bytes`; this only stops a runaway upload early.
const MAX_REST_BODY_BYTES: usize = 4 << 20;

fn json_body_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError;
    match err {
        JsonPayloadError::ContentType => {
            ApiError::invalid("a request body needs the header content-type: application/json")
        }
        JsonPayloadError::Deserialize(err) => ApiError::invalid(format!("invalid JSON body: {err}")),
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::new(bulkhead_proto::ErrorCode::PayloadTooLarge, format!("request body is larger than {limit} bytes"))
        }
        other => ApiError::invalid(format!("invalid request body: {other}")),
    }
}

/// Checks that `header` names `id`. High-risk operations need it on top of the role, so that a
/// mistyped path or a replayed request from another object cannot act by accident.
fn require_confirmation(req: &HttpRequest, action: &str, header: &str, id: &str) -> Result<(), ApiError> {
    let confirmed = req
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == id);
    if confirmed {
        Ok(())
    } else {
        Err(ApiError::confirmation_required(action, header, id))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_REST_BODY_BYTES)
            .error_handler(|err, _| json_body_error(err).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::invalid(format!("invalid query string: {err}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::invalid(format!("invalid path: {err}")).into()),
    )
    .service(health::healthz)
    .service(health::readyz)
    .service(health::metrics)
    .service(audit::platform_log);

    cfg.service(
        web::scope("/v1/tenants")
            .service(tenants::create_tenant)
            .service(tenants::list_tenants)
            .service(tenants::get_tenant)
            .service(tenants::patch_tenant)
            .service(tenants::delete_tenant)
            .service(tenants::usage)
            .service(tenant_status::suspend)
            .service(tenant_status::resume)
            .service(tenant_tier::migrate)
            .service(network_policy::get)
            .service(network_policy::put)
            .service(audit::tenant_log)
            .service(users::create)
            .service(users::list)
            .service(users::get)
            .service(users::delete)
            .service(conversations::create)
            .service(conversations::list)
            .service(conversations::get)
            .service(conversations::add_member)
            .service(conversations::remove_member)
            .service(conversations::history)
            .service(conversations::post_message)
            .service(credentials::mint_token)
            .service(credentials::create_key)
            .service(credentials::list_keys)
            .service(credentials::rotate_key)
            .service(credentials::delete_key)
            .service(branding::get_branding)
            .service(branding::put_branding)
            .service(export::export),
    );
}
