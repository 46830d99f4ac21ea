//! Client addresses and per-tenant network allowlists.
//!
//! The client address of a request is its TCP peer, unless the peer is one of the configured
//! `trusted_proxies`: then `X-Forwarded-For` is read from the right, and the first address
//! that is not a trusted proxy is the client. A header from any other peer is ignored, since
//! a client can write anything into it.
//!
//! A tenant with a non-empty allowlist accepts its credentials (API keys, user tokens) only
//! from addresses inside one of its CIDR blocks. The platform admin token is not subject to
//! any tenant's allowlist.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use actix_web::HttpRequest;
use bulkhead_storage::{NetworkPolicyRecord, Storage, TenantId};
use ipnet::IpNet;
use parking_lot::RwLock;

use crate::error::ApiError;

/// Maximum CIDR blocks in one allowlist. Each request checks them in a linear scan, and 256
/// covers the office and data-centre ranges of a large organization; it may be raised.
pub const MAX_ALLOWLIST_ENTRIES: usize = 256;

/// Returns the address of the client behind `req`, honouring `X-Forwarded-For` only from a
/// trusted proxy.
pub fn client_address(req: &HttpRequest, trusted_proxies: &[IpNet]) -> IpAddr {
    // actix sets the peer address of every TCP connection. Only test requests lack one.
    let peer = req
        .peer_addr()
        .map(|addr| addr.ip().to_canonical())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    resolve_client(peer, &forwarded, trusted_proxies)
}

/// Walks from the peer back through the `X-Forwarded-For` hops while the current hop is a
/// trusted proxy. An entry that is not an IP address ends the walk at the proxy that passed
/// it on, which an allowlist normally does not contain, so a garbled header fails closed.
fn resolve_client(peer: IpAddr, forwarded: &[&str], trusted_proxies: &[IpNet]) -> IpAddr {
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        if !is_in(client, trusted_proxies) {
            break;
        }
        match hop.parse::<IpAddr>() {
            Ok(addr) => client = addr.to_canonical(),
            Err(_) => break,
        }
    }
    client
}

fn is_in(addr: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|net| net.contains(&addr))
}

/// Parses an allowlist from the API: CIDR blocks or single addresses, returned in canonical
/// form (host bits cleared, sorted, without duplicates).
pub fn parse_allowlist(entries: &[String]) -> Result<Vec<IpNet>, ApiError> {
    if entries.len() > MAX_ALLOWLIST_ENTRIES {
        return Err(ApiError::invalid(format!(
            "an allowlist has at most {MAX_ALLOWLIST_ENTRIES} entries, got {}",
            entries.len()
        )));
    }
    let mut nets = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.trim();
        let net = match entry.parse::<IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => match entry.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr.to_canonical()),
                Err(_) => {
                    return Err(ApiError::invalid(format!(
                        "invalid allowlist entry {entry:?}; expected a CIDR block such as 10.0.0.0/8 or an IP address"
                    )))
                }
            },
        };
        nets.push(net);
    }
    nets.sort();
    nets.dedup();
    Ok(nets)
}

/// The allowlists of tenants, read from storage on first use and replaced on every change.
#[derive(Default)]
pub struct NetworkPolicies {
    cache: RwLock<HashMap<TenantId, Arc<[IpNet]>>>,
}

impl NetworkPolicies {
    /// Fails with `forbidden` unless `addr` may use the credentials of `tenant`.
    pub fn check(&self, storage: &Storage, tenant: &TenantId, addr: IpAddr) -> Result<(), ApiError> {
        let allow = self.allowlist(storage, tenant)?;
        if allow.is_empty() || is_in(addr, &allow) {
            return Ok(());
        }
        // Counted rather than logged at info, since a blocked client may retry in a loop.
        metrics::counter!("bulkhead_network_policy_rejections_total").increment(1);
        tracing::debug!(tenant = %tenant, %addr, "request rejected by the tenant's network allowlist");
        Err(ApiError::forbidden(format!(
            "address {addr} is not in the network allowlist of tenant {tenant}"
        )))
    }

    pub fn allowlist(&self, storage: &Storage, tenant: &TenantId) -> Result<Arc<[IpNet]>, ApiError> {
        if let Some(allow) = self.cache.read().get(tenant) {
            return Ok(allow.clone());
        }
        let allow: Arc<[IpNet]> = match storage.network_policy(tenant)? {
            Some(record) => stored_allowlist(tenant, &record).into(),
            None => Arc::from([]),
        };
        self.cache.write().insert(tenant.clone(), allow.clone());
        Ok(allow)
    }

    /// Stores the new allowlist, then applies it to the requests that follow.
    pub async fn set(&self, storage: &Storage, tenant: &TenantId, allow: Vec<IpNet>) -> Result<(), ApiError> {
        let record = NetworkPolicyRecord {
            allow: allow.iter().map(ToString::to_string).collect(),
            updated_at_ms: bulkhead_storage::now_ms(),
        };
        storage.set_network_policy(tenant, &record).await?;
        self.cache.write().insert(tenant.clone(), allow.into());
        Ok(())
    }

    /// Forgets a deleted tenant, so a new tenant with the same id starts without a policy.
    pub fn forget(&self, tenant: &TenantId) {
        self.cache.write().remove(tenant);
    }
}

/// Parses a stored allowlist. Only validated entries are stored, so a bad one means the
/// record was damaged. It is skipped and logged, which can only narrow the allowlist.
fn stored_allowlist(tenant: &TenantId, record: &NetworkPolicyRecord) -> Vec<IpNet> {
    record
        .allow
        .iter()
        .filter_map(|entry| match entry.parse::<IpNet>() {
            Ok(net) => Some(net),
            Err(err) => {
                tracing::error!(tenant = %tenant, entry, error = %err, "skipping an invalid stored allowlist entry");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(entries: &[&str]) -> Vec<IpNet> {
        entries.iter().map(|e| e.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let client = resolve_client(ip("192.0.2.7"), &["10.1.1.1"], &nets(&["127.0.0.1/32"]));
        assert_eq!(client, ip("192.0.2.7"));
    }

    #[test]
    fn trusted_proxy_chain_is_walked() {
        let trusted = nets(&["127.0.0.1/32", "10.9.0.0/16"]);
        let client = resolve_client(ip("127.0.0.1"), &["203.0.113.5", "198.51.100.1", "10.9.0.4"], &trusted);
        assert_eq!(client, ip("198.51.100.1"), "the rightmost untrusted hop is the client");
    }

    #[test]
    fn garbled_hop_stops_at_the_proxy() {
        let client = resolve_client(ip("127.0.0.1"), &["10.1.1.1", "not-an-ip"], &nets(&["127.0.0.1/32"]));
        assert_eq!(client, ip("127.0.0.1"));
    }

    #[test]
    fn allowlist_is_canonical() {
        let entries = vec!["10.1.2.3/8".to_string(), "192.0.2.1".into(), "10.0.0.0/8".into(), "::ffff:192.0.2.9".into()];
        let parsed = parse_allowlist(&entries).unwrap();
        let text: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(text, vec!["10.0.0.0/8", "192.0.2.1/32", "192.0.2.9/32"]);
        assert!(parse_allowlist(&["10.0.0.0/33".to_string()]).is_err());
        assert!(parse_allowlist(&["example.com".to_string()]).is_err());
    }
}
