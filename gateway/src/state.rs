//! State shared by every request handler, and the extraction of a request's tenant scope.

use std::sync::Arc;

use actix_web::HttpRequest;
use bulkhead_engine::{Engine, TenantHandle};
use bulkhead_storage::TenantId;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    auth::{self, Action, AdminToken, Principal},
    config::Config,
    error::ApiError,
};

pub struct AppState {
    pub engine: Arc<Engine>,
    pub admin: AdminToken,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
}

/// An authenticated, authorized request on one tenant. Handlers get the tenant from here,
/// never from a bare id in the path or body.
pub struct TenantContext {
    pub principal: Principal,
    pub tenant: TenantHandle,
}

impl AppState {
    /// Authenticates the request and checks that it may perform a platform-level `action`.
    pub fn platform(&self, req: &HttpRequest, action: Action) -> Result<Principal, ApiError> {
        let principal = self.principal(req)?;
        auth::authorize(&principal, action, None)?;
        Ok(principal)
    }

    /// Authenticates the request and checks that it may perform `action` on tenant `tid`.
    pub fn tenant_scope(&self, req: &HttpRequest, tid: &str, action: Action) -> Result<TenantContext, ApiError> {
        let principal = self.principal(req)?;
        let tenant_id = TenantId::parse(tid).map_err(|_| ApiError::not_found(format!("tenant {tid}")))?;
        auth::authorize(&principal, action, Some(&tenant_id))?;

        let tenant = self
            .engine
            .tenant(&tenant_id)?
            .ok_or_else(|| ApiError::not_found(format!("tenant {tenant_id}")))?;
        // The platform admin may still manage a suspended tenant; its own keys and users may not.
        if !matches!(principal, Principal::PlatformAdmin) {
            tenant.ensure_active()?;
        }
        Ok(TenantContext { principal, tenant })
    }

    fn principal(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        let credential = auth::bearer(req, false);
        if let Some(token) = credential.as_deref().filter(|c| auth::is_user_token(c) && !self.admin.matches(c)) {
            return auth::authenticate_user_token(token, self.engine.storage(), self.config.jwt_leeway_secs);
        }
        auth::authenticate(credential.as_deref(), &self.admin, self.engine.storage())
    }
}
