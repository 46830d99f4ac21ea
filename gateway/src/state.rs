//! State shared by every request handler, and the extraction of a request's tenant scope.

use std::{net::IpAddr, sync::Arc};

use actix_web::HttpRequest;
use bulkhead_engine::{Engine, TenantHandle};
use bulkhead_storage::TenantId;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    audit::Caller,
    auth::{self, Action, PlatformTokens, Principal},
    config::Config,
    error::ApiError,
    key_usage::{self, KeyUsage},
    network::{self, NetworkPolicies},
};

pub struct AppState {
    pub engine: Arc<Engine>,
    pub platform: PlatformTokens,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub network_policies: NetworkPolicies,
    pub key_usage: Arc<KeyUsage>,
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
        let caller = self.caller(req)?;
        auth::authorize(&caller.principal, action, None)?;
        Ok(caller.principal)
    }

    /// Authenticates the request and checks that it may perform `action` on tenant `tid`.
    pub fn tenant_scope(&self, req: &HttpRequest, tid: &str, action: Action) -> Result<TenantContext, ApiError> {
        let caller = self.caller(req)?;
        self.scope(&caller, tid, action)
    }

    /// Checks that an authenticated caller may perform `action` on tenant `tid`.
    pub fn scope(&self, caller: &Caller, tid: &str, action: Action) -> Result<TenantContext, ApiError> {
        let principal = caller.principal.clone();
        let tenant_id = TenantId::parse(tid).map_err(|_| ApiError::not_found(format!("tenant {tid}")))?;
        auth::authorize(&principal, action, Some(&tenant_id))?;

        let tenant = self
            .engine
            .tenant(&tenant_id)?
            .ok_or_else(|| ApiError::not_found(format!("tenant {tenant_id}")))?;
        // The platform may still read and manage a suspended tenant; its own keys and users may not.
        if principal.tenant().is_some() {
            tenant.ensure_active()?;
        }
        Ok(TenantContext { principal, tenant })
    }

    /// Authenticates the request's credential and, for a tenant key, checks the client
    /// address against that tenant's network allowlist.
    pub fn caller(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let credential = auth::bearer(req, false);
        let principal = match credential.as_deref() {
            Some(token) if auth::is_user_token(token) && self.platform.principal(token).is_none() => {
                auth::authenticate_user_token(token, self.engine.storage(), self.config.jwt_leeway_secs)?
            }
            credential => auth::authenticate(credential, &self.platform, self.engine.storage())?,
        };
        let source = self.client_address(req);
        if let Some(tenant) = principal.tenant() {
            self.network_policies.check(self.engine.storage(), tenant, source)?;
        }
        if let Principal::TenantKey { key_id, .. } = &principal {
            self.record_key_use(key_id)?;
        }
        Ok(Caller { principal, source })
    }

    /// Records that the API key authenticated a request now, and stores the time when the
    /// stored value is older than [`key_usage::STORE_INTERVAL_MS`].
    fn record_key_use(&self, key_id: &str) -> Result<(), ApiError> {
        let storage = self.engine.storage();
        if !self.key_usage.is_tracked(key_id) {
            self.key_usage.track(key_id, storage.api_key_last_used(key_id)?);
        }
        let now_ms = bulkhead_storage::now_ms();
        if self.key_usage.record(key_id, now_ms) {
            key_usage::store_in_background(self.key_usage.clone(), storage.clone(), key_id.to_owned(), now_ms);
        }
        Ok(())
    }

    /// Returns the client's address, read from `X-Forwarded-For` when the peer is a trusted
    /// proxy.
    pub fn client_address(&self, req: &HttpRequest) -> IpAddr {
        network::client_address(req, &self.config.trusted_proxies)
    }
}
