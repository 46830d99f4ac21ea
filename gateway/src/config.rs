//! Server configuration: `bulkhead.toml`, overridden by `BULKHEAD_*` environment variables,
//! overridden by command-line flags. Every field has a default, so an empty file is valid.

use std::{net::SocketAddr, path::{Path, PathBuf}};

use bulkhead_engine::EngineConfig;
use bulkhead_proto::Quotas;
use bulkhead_storage::{QuotaLimits, StorageOptions};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::tenant_host;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Loopback by default, so nothing is exposed until an operator
    /// chooses to. Port 0 picks a free port; the bound address is logged.
    pub listen: SocketAddr,
    /// Directory of the embedded RocksDB and of the generated admin token.
    pub data_dir: PathBuf,
    /// Platform admin token. Prefer `BULKHEAD_ADMIN_TOKEN`; when neither is set, one is
    /// generated at first start and stored in `<data_dir>/admin.token` with mode 0600.
    pub admin_token: Option<String>,
    /// Platform operator token: read-only access to tenants and their usage. Prefer
    /// `BULKHEAD_OPERATOR_TOKEN`; when neither is set, the operator role has no credential.
    pub operator_token: Option<String>,
    /// `text` (human-readable) or `json`.
    pub log_format: LogFormat,
    /// Clock skew allowed when checking a token's `exp`, in seconds.
    pub jwt_leeway_secs: u64,
    /// Maximum lifetime of a token minted through the REST API, in seconds.
    pub max_token_ttl_secs: u64,
    pub storage: StorageOptions,
    pub engine: EngineConfig,
    pub websocket: WebSocketConfig,
    /// Proxies whose `X-Forwarded-For` header names the client, as CIDR blocks. Requests
    /// from any other peer are judged by their TCP peer address, whatever the header contains.
    pub trusted_proxies: Vec<IpNet>,
    /// DNS suffix of tenant host names, such as `chat.example.com`. When set, a request whose
    /// `Host` is `<tid>.<suffix>` reaches only tenant `<tid>`. Unset by default: no request
    /// is pinned.
    pub tenant_host_suffix: Option<String>,
    /// Quotas of a tenant created without explicit values.
    pub default_quotas: Quotas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Interval of server pings, in seconds.
    pub ping_interval_secs: u64,
    /// A session that sends nothing (not even a pong) for this long is closed, in seconds.
    pub idle_timeout_secs: u64,
    /// Largest WebSocket frame accepted; a bigger frame closes the session with code 1009.
    /// Frames up to this size whose message body exceeds the tenant's `max_message_bytes`
    /// get a `payload_too_large` error instead, and the session stays open.
    pub max_frame_bytes: usize,
    /// Invalid frames in a row after which the session is closed with code 1008.
    pub max_consecutive_invalid_frames: u32,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            ping_interval_secs: 20,
            idle_timeout_secs: 60,
            max_frame_bytes: 1 << 20,
            max_consecutive_invalid_frames: 10,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./data"),
            admin_token: None,
            operator_token: None,
            log_format: LogFormat::Text,
            jwt_leeway_secs: 30,
            max_token_ttl_secs: 7 * 24 * 3600,
            storage: StorageOptions::default(),
            engine: EngineConfig::default(),
            websocket: WebSocketConfig::default(),
            trusted_proxies: Vec::new(),
            tenant_host_suffix: None,
            default_quotas: default_quotas(),
        }
    }
}

/// Quotas for a tenant created without explicit values: generous enough for a department's
/// chat, small enough that one tenant cannot take a whole small server.
pub fn default_quotas() -> Quotas {
    Quotas {
        cpu_millicores: 1000,
        memory_bytes: 64 << 20,
        ingress_bytes_per_sec: 4 << 20,
        egress_bytes_per_sec: 16 << 20,
        max_connections: 10_000,
        max_message_bytes: 64 << 10,
        max_storage_bytes: 10 << 30,
        weight: 1,
        rest_requests_per_sec: QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC,
    }
}

impl Config {
    /// Reads the file at `path`; a missing `path` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("failed to read config file {}: {e}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
        if let Some(suffix) = &config.tenant_host_suffix {
            let suffix = tenant_host::normalize_suffix(suffix)
                .map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
            config.tenant_host_suffix = Some(suffix);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_lists_every_default() {
        // The example file documents every setting with its default value, so it must equal
        // the defaults key for key (the admin token is left unset in both).
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bulkhead.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let example: toml::Table = toml::from_str(&text).unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        assert_eq!(example, defaults);
    }

    #[test]
    fn quotas_without_rest_rate_get_the_default() {
        // A config file written before rest_requests_per_sec existed still loads.
        let text = "[default_quotas]\ncpu_millicores = 500\nmemory_bytes = 1\ningress_bytes_per_sec = 1\n\
                    egress_bytes_per_sec = 1\nmax_connections = 1\nmax_message_bytes = 1\n\
                    max_storage_bytes = 1\nweight = 1\n";
        let config: Config = toml::from_str(text).unwrap();
        assert_eq!(config.default_quotas.cpu_millicores, 500);
        assert_eq!(config.default_quotas.rest_requests_per_sec, QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC);
        assert_eq!(bulkhead_proto::DEFAULT_REST_REQUESTS_PER_SEC, QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC);
    }

    #[test]
    fn host_suffix_is_normalized_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bulkhead.toml");
        std::fs::write(&path, "tenant_host_suffix = \".Chat.Example.com\"\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.tenant_host_suffix.as_deref(), Some("chat.example.com"));

        std::fs::write(&path, "tenant_host_suffix = \"\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err();
        assert!(err.contains("tenant_host_suffix"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let err = toml::from_str::<Config>("listn = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
