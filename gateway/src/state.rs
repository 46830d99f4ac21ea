//! State shared by every request handler, and the extraction of a request's tenant scope.

use std::{net::IpAddr, sync::Arc};

use actix_web::HttpRequest;
use bulkhead_engine::{Engine, TenantHandle};
use bulkhead_proto::ErrorCode;
use bulkhead_storage::TenantId;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    audit::Caller,
    auth::{self, Action, PlatformTokens, Principal},
    config::Config,
    error::ApiError,
    key_usage::{self, KeyUsage},
    network::{self, NetworkPolicies},
    tenant_host::HostPin,
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

    /// Checks that an authenticated caller may perform `action` on tenant `tid`, and takes
    /// one token of the tenant's REST rate limit. A tenant that the request's `Host` does not
    /// pin is not found, as if it did not exist.
    pub fn scope(&self, caller: &Caller, tid: &str, action: Action) -> Result<TenantContext, ApiError> {
        let principal = caller.principal.clone();
        let tenant_id = TenantId::parse(tid).map_err(|_| ApiError::not_found(format!("tenant {tid}")))?;
        if !caller.host_pin.admits(&tenant_id) {
            return Err(ApiError::not_found(format!("tenant {tenant_id}")));
        }
        let authorized = auth::authorize(&principal, action, Some(&tenant_id));
        // Another tenant's credential gets not_found before anything is counted, so it can
        // neither probe for the tenant nor spend its tokens.
        if let Err(err) = &authorized {
            if err.code == ErrorCode::NotFound {
                return Err(err.clone());
            }
        }

        let tenant = self
            .engine
            .tenant(&tenant_id)?
            .ok_or_else(|| ApiError::not_found(format!("tenant {tenant_id}")))?;
        // Requests that the role table rejects count too, so a client looping on 403 is slowed
        // down like any other.
        take_rest_request(&principal, &tenant)?;
        authorized?;

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
        Ok(Caller {
            principal,
            source,
            host_pin: self.host_pin(req),
        })
    }

    /// Returns the tenant that the request's `Host` pins it to, under `tenant_host_suffix`.
    pub fn host_pin(&self, req: &HttpRequest) -> HostPin {
        HostPin::of_request(req, self.config.tenant_host_suffix.as_deref())
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

/// Takes one token of the tenant's `rest_requests_per_sec` for a request by one of its own
/// credentials, or fails with `rate_limited`. The platform admin and operator tokens are not
/// counted: an operator must be able to read the usage of a flooding tenant, lower its
/// quotas or suspend it while the tenant's own clients are being rejected.
fn take_rest_request(principal: &Principal, tenant: &TenantHandle) -> Result<(), ApiError> {
    if principal.tenant().is_none() {
        return Ok(());
    }
    let quota = tenant.quota();
    quota.take_rest_request().map_err(|exceeded| {
        tracing::debug!(tenant = %tenant.store().tenant(), by = %principal, "REST request rate limited");
        ApiError::rate_limited(tenant.store().tenant(), quota.limits().rest_requests_per_sec, exceeded.retry_after)
    })
}
