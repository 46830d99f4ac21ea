//! The `connections` scenario: opens N idle authenticated WebSocket connections, holds them
//! for a set time and reports the resident memory (`VmRSS`) of the server this tool started,
//! before the connections and at the end of the hold, per connection.
//!
//! Every connection of one server address and port needs its own local (address, port)
//! pair. When N is larger than the ephemeral port range, the client sockets are bound to
//! several loopback addresses (127.0.0.2, 127.0.0.3, …) before they connect.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_client::proto::QuotasPatch;
use bulkhead_client::{RestClient, WsClient, WsOptions};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::limits::{self, OpenFileLimit};
use crate::progress::{self, Progress};
use crate::provision::{self, TenantSpec};
use crate::report::{write_checks, RunReport, ServerLogCounts};
use crate::steady::{wait_until_true, StopSignals, REQUEST_TIMEOUT, TOKEN_TTL_MARGIN_SECS};
use crate::{Target, TargetArgs, EXIT_RUN_FAILED};

/// File descriptors this process needs besides its WebSocket connections: the REST client,
/// the server's log pipe, the runtime and the standard streams, with room to spare. The
/// server needs about as many for its database files and listener.
const SPARE_FILE_DESCRIPTORS: u64 = 1024;

/// Ports of the ephemeral range left free on each source address, for the REST client and
/// for connections of other programs.
const SPARE_PORTS: u64 = 2048;

/// Sessions that the tenant's `max_connections` allows beyond the connection count. The
/// margin keeps a session that the server has not yet removed from failing an upgrade.
const EXTRA_MAX_CONNECTIONS: u64 = 16;

/// Time after provisioning before the memory is read, so that the allocations of the
/// provisioning requests have settled.
const SETTLE: Duration = Duration::from_secs(1);

const CONVERSATION: &str = "idle";

#[derive(clap::Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Idle WebSocket connections to open and hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    connections: u64,

    /// Users the connections authenticate as, in turn. A user may have many sessions.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    users: u32,

    /// Time to hold the open connections before the memory is read, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    hold_secs: u64,

    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connect_concurrency: u32,

    /// Loopback addresses to spread the client sockets over, from 127.0.0.2 up. Without it,
    /// connections come from 127.0.0.1 unless they need more ports than the ephemeral range
    /// has, and then from as many addresses as they need.
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..=250))]
    source_addresses: Option<u32>,

    /// File to write the report to as JSON; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs the scenario from its command-line flags and returns the exit code.
pub async fn main(args: ConnectionsArgs) -> ExitCode {
    let signals = crate::install_ctrl_c();
    // Raised before the server starts, so that the server inherits the limit.
    let needed_files = args.connections + SPARE_FILE_DESCRIPTORS;
    let client_limit = match limits::raise_open_file_limit(needed_files) {
        Ok(limit) => limit,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let sources = match source_addresses(args.connections, args.source_addresses) {
        Ok(sources) => sources,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };

    let target = match Target::start(&args.target).await {
        Ok(target) => target,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let server_pid = target
        .server
        .as_ref()
        .and_then(crate::server::SpawnedServer::pid);
    let server_files = server_pid.and_then(limits::open_file_limit_of);
    let outcome = match check_server_limit(server_files, needed_files) {
        Err(message) => Err(message),
        Ok(()) => {
            let rest = RestClient::new(
                format!("http://{}", target.addr),
                target.admin_token.clone(),
            );
            let settings = Settings {
                connections: args.connections,
                users: args.users,
                hold: Duration::from_secs(args.hold_secs),
                concurrency: args.connect_concurrency as usize,
                sources,
                target: target.description.clone(),
                server_pid,
                client_files: client_limit,
                server_files,
                show_progress: progress::wanted(args.json.as_deref()),
            };
            let mut created = Vec::new();
            let outcome = run(
                &rest,
                &format!("ws://{}", target.addr),
                &settings,
                &signals,
                &mut created,
            )
            .await;
            provision::delete_tenants(&rest, &created).await;
            outcome
        }
    };
    let server_log = target.stop().await;
    crate::finish(outcome, server_log, args.json.as_deref())
}

/// Fails when the started server's open-file limit is below what the connections need.
fn check_server_limit(server_files: Option<u64>, needed: u64) -> Result<(), String> {
    match server_files {
        Some(limit) if limit < needed => Err(format!(
            "the server's open-file limit is {limit}, below the {needed} that the connections \
             need; raise the hard limit (`ulimit -Hn`) before starting this tool"
        )),
        _ => Ok(()),
    }
}

/// Returns the local addresses to bind client sockets to, or an empty list for the
/// system's choice. `requested` is `--source-addresses`.
fn source_addresses(connections: u64, requested: Option<u32>) -> Result<Vec<IpAddr>, String> {
    let count = match requested {
        Some(count) => count as u64,
        None => {
            let ports = ephemeral_ports().unwrap_or(28_232);
            let per_address = ports.saturating_sub(SPARE_PORTS).max(1);
            if connections <= per_address {
                return Ok(Vec::new());
            }
            connections.div_ceil(per_address)
        }
    };
    if count > 250 {
        return Err(format!(
            "{connections} connections need {count} source addresses, more than the 250 \
             from 127.0.0.2 to 127.0.0.251 this tool uses"
        ));
    }
    Ok((0..count)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
        .collect())
}

/// Size of the ephemeral port range from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u64>);
    let low = bounds.next()?.ok()?;
    let high = bounds.next()?.ok()?;
    Some(high.saturating_sub(low) + 1)
}

struct Settings {
    connections: u64,
    users: u32,
    hold: Duration,
    concurrency: usize,
    sources: Vec<IpAddr>,
    target: String,
    server_pid: Option<u32>,
    client_files: OpenFileLimit,
    server_files: Option<u64>,
    show_progress: bool,
}

async fn run(
    rest: &RestClient,
    ws_url: &str,
    settings: &Settings,
    signals: &StopSignals,
    created: &mut Vec<String>,
) -> Result<ConnectionsReport, String> {
    let run_suffix = format!("{:08x}", rand::random::<u32>());
    let spec = TenantSpec {
        id: format!("lt-idle-{run_suffix}"),
        name: format!("load test {run_suffix} idle tenant"),
        members: settings.users,
        conversation: CONVERSATION.to_string(),
        token_ttl_secs: settings.hold.as_secs() + TOKEN_TTL_MARGIN_SECS,
        quotas: Some(QuotasPatch {
            max_connections: Some(settings.connections + EXTRA_MAX_CONNECTIONS),
            ..QuotasPatch::default()
        }),
    };
    let setup = provision::provision_tenant(rest, &spec, created).await?;
    tokio::time::sleep(SETTLE).await;
    let server_before = settings
        .server_pid
        .and_then(|pid| limits::resident_bytes(Some(pid)));
    let client_before = limits::resident_bytes(None);

    let started = Instant::now();
    let clients = connect_all(ws_url, &setup.members, settings, signals).await;
    let connect_secs = started.elapsed().as_secs_f64();
    let opened = clients.iter().filter(|c| c.is_ok()).count() as u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for error in clients.iter().filter_map(|c| c.as_ref().err()) {
        *errors.entry(error.clone()).or_default() += 1;
    }
    tracing::info!(
        opened,
        failed = settings.connections - opened,
        seconds = format!("{connect_secs:.1}"),
        "connections open; holding them"
    );

    let mut stop = signals.stop_sending.clone();
    let mut progress = Progress::timed(settings.show_progress, settings.hold);
    progress.set_message("holding");
    tokio::select! {
        _ = tokio::time::sleep(settings.hold) => {}
        _ = wait_until_true(&mut stop) => {}
    }
    progress.finish();
    let server_after = settings
        .server_pid
        .and_then(|pid| limits::resident_bytes(Some(pid)));
    let client_after = limits::resident_bytes(None);

    let open: Vec<WsClient> = clients.into_iter().filter_map(Result::ok).collect();
    let closed_during_hold = open.iter().filter(|c| c.closed().is_some()).count() as u64;
    close_all(&open, settings.concurrency).await;

    let mut report = ConnectionsReport {
        scenario: "connections",
        target: settings.target.clone(),
        tenant: setup.tenant.clone(),
        connections: settings.connections,
        users: settings.users,
        source_addresses: settings.sources.iter().map(IpAddr::to_string).collect(),
        hold_secs: settings.hold.as_secs(),
        interrupted: *signals.stop_sending.borrow(),
        opened,
        connect_errors: errors,
        connect_secs,
        connects_per_sec: if connect_secs > 0.0 {
            opened as f64 / connect_secs
        } else {
            0.0
        },
        closed_during_hold,
        server_rss_before_bytes: server_before,
        server_rss_after_bytes: server_after,
        server_bytes_per_connection: per_connection(server_before, server_after, opened),
        client_rss_before_bytes: client_before,
        client_rss_after_bytes: client_after,
        client_bytes_per_connection: per_connection(client_before, client_after, opened),
        client_open_file_limit: settings.client_files.soft,
        server_open_file_limit: settings.server_files,
        failures: Vec::new(),
        server_log: None,
    };
    report.failures = report.check();
    Ok(report)
}

/// Opens every connection, at most `settings.concurrency` handshakes at a time, each
/// authenticated as the next user in turn. Stops opening new ones at the first Ctrl-C.
async fn connect_all(
    ws_url: &str,
    members: &[provision::Member],
    settings: &Settings,
    signals: &StopSignals,
) -> Vec<Result<WsClient, String>> {
    let progress = Progress::counter(settings.show_progress, settings.connections, "connections");
    let attempts = (0..settings.connections).map(|index| {
        let member = &members[(index % members.len() as u64) as usize];
        let options = WsOptions {
            request_timeout: REQUEST_TIMEOUT,
            // Idle connections receive nothing, so a small queue saves client memory.
            event_capacity: 16,
            local_addr: source_for(&settings.sources, index),
            ..WsOptions::default()
        };
        let stop = signals.stop_sending.clone();
        let progress = &progress;
        async move {
            if *stop.borrow() {
                return Err("not attempted after Ctrl-C".to_string());
            }
            let result = WsClient::connect_with(ws_url, &member.token, options).await;
            progress.inc(1);
            result.map_err(|error| {
                let text = error.to_string();
                tracing::debug!(user = %member.user, %text, "connect failed");
                text
            })
        }
    });
    let results: Vec<Result<WsClient, String>> = stream::iter(attempts)
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    if let Some(error) = results.iter().find_map(|r| r.as_ref().err()) {
        tracing::warn!(%error, "some connections failed; the report counts them by message");
    }
    results
}

fn source_for(sources: &[IpAddr], index: u64) -> Option<IpAddr> {
    if sources.is_empty() {
        return None;
    }
    Some(sources[(index % sources.len() as u64) as usize])
}

async fn close_all(clients: &[WsClient], concurrency: usize) {
    let results: Vec<_> = stream::iter(clients.iter().map(|client| client.close()))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failed = results.iter().filter(|result| result.is_err()).count();
    if failed > 0 {
        tracing::warn!(failed, "connections did not complete the close handshake");
    }
}

fn per_connection(before: Option<u64>, after: Option<u64>, connections: u64) -> Option<f64> {
    let (before, after) = (before?, after?);
    if connections == 0 {
        return None;
    }
    Some((after as f64 - before as f64) / connections as f64)
}

/// The connection counts and memory figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub scenario: &'static str,
    pub target: String,
    pub tenant: String,
    /// Connections requested.
    pub connections: u64,
    pub users: u32,
    /// Local addresses the client sockets were bound to; empty for the system's choice.
    pub source_addresses: Vec<String>,
    pub hold_secs: u64,
    /// Whether Ctrl-C cut the connecting or the hold short.
    pub interrupted: bool,
    pub opened: u64,
    /// Failed connections by error message.
    pub connect_errors: BTreeMap<String, u64>,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    /// Connections the server closed before the end of the hold.
    pub closed_during_hold: u64,
    /// `VmRSS` of the started server after provisioning and before connecting; `None` for a
    /// server at `--url`.
    pub server_rss_before_bytes: Option<u64>,
    /// `VmRSS` of the started server at the end of the hold.
    pub server_rss_after_bytes: Option<u64>,
    /// `(after − before) / opened`.
    pub server_bytes_per_connection: Option<f64>,
    pub client_rss_before_bytes: Option<u64>,
    pub client_rss_after_bytes: Option<u64>,
    pub client_bytes_per_connection: Option<f64>,
    pub client_open_file_limit: u64,
    pub server_open_file_limit: Option<u64>,
    /// Failed checks. The exit code is 1 when this is not empty.
    pub failures: Vec<String>,
    pub server_log: Option<ServerLogCounts>,
}

impl ConnectionsReport {
    fn check(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.opened < self.connections && !self.interrupted {
            failures.push(format!(
                "{} of {} connections failed to open",
                self.connections - self.opened,
                self.connections
            ));
        }
        if self.closed_during_hold > 0 {
            failures.push(format!(
                "the server closed {} idle connections during the hold",
                self.closed_during_hold
            ));
        }
        failures
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;

        let mut out = String::new();
        let sources = if self.source_addresses.is_empty() {
            "system-chosen source address".to_string()
        } else {
            format!("source addresses {}", self.source_addresses.join(" "))
        };
        let _ = writeln!(
            out,
            "connections: {} idle connections as {} users, held {} s, {sources}; target: {}",
            self.connections, self.users, self.hold_secs, self.target
        );
        let server_files = self
            .server_open_file_limit
            .map_or("unknown".to_string(), |limit| limit.to_string());
        let _ = writeln!(
            out,
            "open-file limits: client {}, server {server_files}",
            self.client_open_file_limit
        );
        if self.interrupted {
            let _ = writeln!(out, "interrupted with Ctrl-C: the figures are partial");
        }
        let _ = writeln!(
            out,
            "\nopened {} in {:.2} s ({:.0}/s), {} closed by the server during the hold",
            self.opened, self.connect_secs, self.connects_per_sec, self.closed_during_hold
        );

        let _ = writeln!(
            out,
            "\n{:<8} {:>14} {:>14} {:>14} {:>12}",
            "process", "RSS before", "RSS after", "difference", "per conn."
        );
        let rows = [
            (
                "server",
                self.server_rss_before_bytes,
                self.server_rss_after_bytes,
                self.server_bytes_per_connection,
            ),
            (
                "client",
                self.client_rss_before_bytes,
                self.client_rss_after_bytes,
                self.client_bytes_per_connection,
            ),
        ];
        for (name, before, after, per) in rows {
            let mib = |bytes: Option<u64>| {
                bytes.map_or("-".to_string(), |b| {
                    format!("{:.1} MiB", b as f64 / 1048576.0)
                })
            };
            let difference = match (before, after) {
                (Some(b), Some(a)) => format!("{:.1} MiB", (a as f64 - b as f64) / 1048576.0),
                _ => "-".to_string(),
            };
            let per = per.map_or("-".to_string(), |p| format!("{:.0} B", p));
            let _ = writeln!(
                out,
                "{name:<8} {:>14} {:>14} {difference:>14} {per:>12}",
                mib(before),
                mib(after)
            );
        }
        for (message, count) in &self.connect_errors {
            let _ = writeln!(out, "\nconnect error ({count}x): {message}");
        }
        write_checks(
            &mut out,
            self.server_log,
            &self.failures,
            "every connection opened and stayed open",
        );
        out
    }
}

impl RunReport for ConnectionsReport {
    fn set_server_log(&mut self, log: Option<ServerLogCounts>) {
        self.server_log = log;
    }

    fn to_table(&self) -> String {
        self.table()
    }

    fn write_json(&self, path: &std::path::Path) -> Result<(), String> {
        crate::report::write_json_file(self, path)
    }

    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_connections_need_no_source_addresses() {
        assert!(source_addresses(1000, None).unwrap().is_empty());
    }

    #[test]
    fn many_connections_spread_over_addresses() {
        let ports = ephemeral_ports().unwrap();
        let per_address = ports - SPARE_PORTS;

        let sources = source_addresses(2 * per_address + 1, None).unwrap();

        assert_eq!(sources.len(), 3);
        assert_eq!(sources[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(sources[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)));
    }

    #[test]
    fn requested_source_addresses_are_used() {
        let sources = source_addresses(10, Some(2)).unwrap();

        assert_eq!(source_for(&sources, 0), Some(sources[0]));
        assert_eq!(source_for(&sources, 3), Some(sources[1]));
        assert_eq!(source_for(&[], 3), None);
    }

    #[test]
    fn low_server_limit_fails_run() {
        assert!(check_server_limit(Some(1024), 11_024).is_err());
        assert!(check_server_limit(Some(20_000), 11_024).is_ok());
        assert!(check_server_limit(None, 11_024).is_ok());
    }

    #[test]
    fn memory_difference_is_divided_by_connections() {
        assert_eq!(per_connection(Some(1000), Some(5000), 4), Some(1000.0));
        assert_eq!(per_connection(None, Some(5000), 4), None);
        assert_eq!(per_connection(Some(1000), Some(5000), 0), None);
    }
}
