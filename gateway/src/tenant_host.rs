//! Tenant host names: `<tenant>.<tenant_host_suffix>`.
//!
//! With `tenant_host_suffix` set to, say, `chat.example.com`, a request whose `Host` is
//! `acme.chat.example.com` is pinned to tenant `acme`. A REST path naming another tenant gets
//! `not_found`, and a WebSocket token of another tenant gets the 401 of a token whose tenant
//! does not exist. So a tenant's host name cannot be used to probe for other tenants or to
//! reach them. Requests whose `Host` is not under the suffix, and every request while the
//! suffix is unset, are not pinned.
//!
//! Only the `Host` header is read, or the URI's authority when the request has no `Host`
//! (HTTP/2). `X-Forwarded-Host` and `Forwarded` are ignored whatever the peer, including a
//! trusted proxy, so a proxy in front of bulkhead must pass the client's `Host` through
//! unchanged. The client chooses its `Host`, so a pin narrows what one host name reaches but
//! does not replace the credential check: a credential still only works on its own tenant.

use actix_web::{http::header, HttpRequest};
use bulkhead_storage::TenantId;

/// The tenant a request is pinned to by its `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPin {
    /// The host is not a tenant host name: every tenant is reachable, as far as credentials
    /// allow.
    Unpinned,
    /// The host is `<label>.<suffix>`: only tenant `label` is reachable. A label that is not
    /// a valid tenant id, such as `a.b`, admits no tenant.
    Tenant(String),
}

impl HostPin {
    /// Reads the pin of `req` for the configured suffix (normalized by
    /// [`normalize_suffix`]); `None` pins nothing.
    pub fn of_request(req: &HttpRequest, suffix: Option<&str>) -> HostPin {
        let Some(suffix) = suffix else {
            return HostPin::Unpinned;
        };
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| req.uri().authority().map(|authority| authority.as_str()));
        match host {
            Some(host) => HostPin::of_host(host, suffix),
            None => HostPin::Unpinned,
        }
    }

    /// Returns the pin for a `Host` value such as `acme.chat.example.com:8443`.
    fn of_host(host: &str, suffix: &str) -> HostPin {
        let name = strip_port(host.trim()).trim_end_matches('.').to_ascii_lowercase();
        let Some(label) = name.strip_suffix(suffix).and_then(|rest| rest.strip_suffix('.')) else {
            return HostPin::Unpinned;
        };
        HostPin::Tenant(label.to_owned())
    }

    /// Returns whether a request with this pin may reach `tenant`.
    pub fn admits(&self, tenant: &TenantId) -> bool {
        match self {
            HostPin::Unpinned => true,
            HostPin::Tenant(label) => label == tenant.as_str(),
        }
    }
}

/// Removes a `:port` from a host. An IPv6 literal (`[::1]:8080`) is returned whole, since it
/// can never end with a DNS suffix.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Checks and normalizes a configured `tenant_host_suffix`: lower case, without leading or
/// trailing dots, made of DNS labels (letters, digits and `-`).
pub fn normalize_suffix(suffix: &str) -> Result<String, String> {
    let normalized = suffix.trim().trim_matches('.').to_ascii_lowercase();
    let valid_label = |label: &str| {
        !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if normalized.is_empty() || !normalized.split('.').all(valid_label) {
        return Err(format!(
            "invalid tenant_host_suffix {suffix:?}: expected a DNS name such as \"chat.example.com\""
        ));
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUFFIX: &str = "chat.example.com";

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn tenant_host_pins_its_tenant() {
        let pin = HostPin::of_host("acme.chat.example.com", SUFFIX);
        assert_eq!(pin, HostPin::Tenant("acme".into()));
        assert!(pin.admits(&tenant("acme")));
        assert!(!pin.admits(&tenant("globex")));
    }

    #[test]
    fn port_case_and_trailing_dot_are_ignored() {
        for host in ["ACME.Chat.Example.com:8443", "acme.chat.example.com.", " acme.chat.example.com "] {
            assert_eq!(HostPin::of_host(host, SUFFIX), HostPin::Tenant("acme".into()), "{host}");
        }
    }

    #[test]
    fn other_hosts_are_unpinned() {
        for host in ["chat.example.com", "127.0.0.1:8080", "[::1]:8080", "acmechat.example.com", "example.com", ""] {
            assert_eq!(HostPin::of_host(host, SUFFIX), HostPin::Unpinned, "{host}");
        }
    }

    #[test]
    fn nested_label_admits_no_tenant() {
        let pin = HostPin::of_host("a.b.chat.example.com", SUFFIX);
        assert!(!pin.admits(&tenant("a")));
        assert!(!pin.admits(&tenant("b")));
    }

    #[test]
    fn suffix_is_normalized_and_checked() {
        assert_eq!(normalize_suffix(".Chat.Example.COM.").unwrap(), "chat.example.com");
        assert!(normalize_suffix("").is_err());
        assert!(normalize_suffix("chat..example.com").is_err());
        assert!(normalize_suffix("chat.example.com:8080").is_err());
        assert!(normalize_suffix("*.example.com").is_err());
    }
}
