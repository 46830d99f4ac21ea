//! `bulkhead-loadtest`: drives a bulkhead server with chat traffic from one process, then
//! reports throughput, latency percentiles and whether every message was delivered.
//!
//! It targets a server on 127.0.0.1 only: a running one (`--url`) or one it starts itself
//! (`--spawn-server`). Client and server then share the machine's cores, which the numbers
//! include.

mod provision;
mod report;
mod server;
mod steady;
mod verify;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_client::RestClient;
use clap::{ArgGroup, Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use report::ServerLogCounts;
use server::{Durability, SpawnedServer};
use steady::StopSignals;

/// Exit code when a delivery check failed.
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when the run could not start or finish, as for invalid flags.
const EXIT_RUN_FAILED: u8 = 2;

#[derive(Parser)]
#[command(
    name = "bulkhead-loadtest",
    version,
    about = "Load generator for the bulkhead chat server",
    after_help = "Exit codes: 0 when every check passed, 1 when an acked message was not \
                  delivered to every other member or a member's seqs went backwards or had a \
                  gap, 2 when the run could not start or finish."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every connection sends a fixed number of messages into its tenant's group
    /// conversation as fast as the window allows, and receives the other members' messages.
    ///
    /// Each tenant gets one user per connection and one group conversation with all of them.
    /// Tenants are named lt-<n>-<random suffix> and deleted at the end. The first Ctrl-C stops
    /// sending, and the second also stops waiting for acks and deliveries.
    Steady(SteadyArgs),
}

#[derive(clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["url", "spawn_server"])))]
struct SteadyArgs {
    /// Base URL of a running server. Only http://127.0.0.1:PORT is accepted.
    #[arg(long, value_name = "URL", value_parser = parse_loopback_url)]
    url: Option<SocketAddr>,

    /// Platform admin token of the server at --url.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "BULKHEAD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Path of a bulkhead binary to start on 127.0.0.1 with a temporary data directory and
    /// a random admin token. The server is stopped with SIGTERM at the end.
    #[arg(long, value_name = "PATH")]
    spawn_server: Option<PathBuf>,

    /// Durability of the started server [default: fsync].
    #[arg(long, value_enum, conflicts_with = "url")]
    durability: Option<Durability>,

    /// File to save the started server's log in.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    server_log: Option<PathBuf>,

    /// Number of tenants.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tenants: u32,

    /// WebSocket connections per tenant, each for its own user.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=1000))]
    connections: u32,

    /// Messages each connection sends, unless --duration-secs ends sending first.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,

    /// Size of each message body in bytes, as compact JSON.
    #[arg(long, default_value_t = 256, value_parser = parse_body_size)]
    size: usize,

    /// Maximum sends per connection that are waiting for their ack.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    window: u32,

    /// Time limit of the sending phase, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_secs: u64,

    /// Time to wait after the last ack for the outstanding deliveries, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    drain_secs: u64,

    /// Quota set on every tenant in place of the server's default, as NAME=VALUE with a
    /// field name of the tenant's quotas, such as ingress_bytes_per_sec=1073741824.
    /// Repeat it for several quotas.
    #[arg(long = "quota", value_name = "NAME=VALUE", value_parser = parse_quota)]
    quotas: Vec<(String, u64)>,

    /// File to write the report to as JSON, latencies in microseconds.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn parse_loopback_url(text: &str) -> Result<SocketAddr, String> {
    let invalid = || format!("expected http://127.0.0.1:PORT, got {text:?}");
    let host_port = text.strip_prefix("http://").ok_or_else(invalid)?;
    let addr: SocketAddr = host_port
        .trim_end_matches('/')
        .parse()
        .map_err(|_| invalid())?;
    if addr.ip() != Ipv4Addr::LOCALHOST {
        return Err(format!(
            "only 127.0.0.1 is allowed as a target, got {}",
            addr.ip()
        ));
    }
    Ok(addr)
}

fn parse_quota(text: &str) -> Result<(String, u64), String> {
    let invalid = || format!("expected NAME=VALUE with a whole number, got {text:?}");
    let (name, value) = text.split_once('=').ok_or_else(invalid)?;
    let value: u64 = value.parse().map_err(|_| invalid())?;
    Ok((name.to_string(), value))
}

fn parse_body_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .parse()
        .map_err(|_| format!("expected a number of bytes, got {text:?}"))?;
    if size < steady::MIN_BODY_BYTES {
        return Err(format!(
            "body size must be at least {} bytes, to fit the send time",
            steady::MIN_BODY_BYTES
        ));
    }
    Ok(size)
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let cli = Cli::parse();
    match cli.command {
        Command::Steady(args) => run_steady(args).await,
    }
}

async fn run_steady(args: SteadyArgs) -> ExitCode {
    let quotas: BTreeMap<String, u64> = args.quotas.iter().cloned().collect();
    // Checked before the server starts, so that a misspelled name fails at once.
    if let Err(message) = steady::quotas_patch(&quotas) {
        tracing::error!("{message}");
        return ExitCode::from(EXIT_RUN_FAILED);
    }
    let signals = install_ctrl_c();

    let (server, addr, admin_token, target) = match &args.spawn_server {
        Some(binary) => {
            let durability = args.durability.unwrap_or(Durability::Fsync);
            match SpawnedServer::start(binary, durability, args.server_log.as_deref()).await {
                Ok(server) => {
                    let target = format!("spawned server, durability {}", durability.as_str());
                    let (addr, token) = (server.addr(), server.admin_token().to_string());
                    (Some(server), addr, token, target)
                }
                Err(message) => {
                    tracing::error!("{message}");
                    return ExitCode::from(EXIT_RUN_FAILED);
                }
            }
        }
        None => {
            let addr = args.url.expect("clap requires --url or --spawn-server");
            let token = args.admin_token.clone().filter(|token| !token.is_empty());
            let Some(token) = token else {
                tracing::error!(
                    "missing admin token: pass --admin-token or set BULKHEAD_ADMIN_TOKEN"
                );
                return ExitCode::from(EXIT_RUN_FAILED);
            };
            (None, addr, token, format!("http://{addr}"))
        }
    };

    let settings = steady::Settings {
        tenants: args.tenants,
        connections: args.connections,
        messages: args.messages,
        body_bytes: args.size,
        window: args.window,
        duration: Duration::from_secs(args.duration_secs),
        drain: Duration::from_secs(args.drain_secs),
        target,
        quotas,
    };
    let rest = RestClient::new(format!("http://{addr}"), admin_token);
    let mut created = Vec::new();
    let outcome = steady::run(
        &rest,
        &format!("ws://{addr}"),
        &settings,
        &signals,
        &mut created,
    )
    .await;

    provision::delete_tenants(&rest, &created).await;
    let server_log = match server {
        Some(server) => {
            let summary = server.stop().await;
            Some(ServerLogCounts {
                warnings: summary.warnings,
                errors: summary.errors,
            })
        }
        None => None,
    };

    let mut report = match outcome {
        Ok(report) => report,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    report.server_log = server_log;
    print!("{}", report.to_table());

    if let Some(path) = &args.json {
        if let Err(message) = report.write_json(path) {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// Watches for Ctrl-C: the first sets `stop_sending`, the second also sets `abort`.
fn install_ctrl_c() -> StopSignals {
    let (stop_sending_tx, stop_sending) = watch::channel(false);
    let (abort_tx, abort) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            tracing::warn!("failed to listen for Ctrl-C; the run stops only by its own limits");
            return;
        }
        tracing::warn!(
            "Ctrl-C: stopping sends; press Ctrl-C again to stop waiting for acks and deliveries"
        );
        stop_sending_tx.send_replace(true);

        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("second Ctrl-C: no longer waiting for acks and deliveries");
            abort_tx.send_replace(true);
        }
        // Keeps both senders alive, so that the flags stay readable to the end of the run.
        std::future::pending::<()>().await;
    });
    StopSignals {
        stop_sending,
        abort,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_url_is_accepted() {
        let addr = parse_loopback_url("http://127.0.0.1:8080/").unwrap();

        assert_eq!(addr, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn other_urls_are_rejected() {
        for url in [
            "http://10.0.0.1:8080",
            "http://localhost:8080",
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://127.0.0.1",
        ] {
            assert!(parse_loopback_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn quota_flag_is_parsed() {
        assert_eq!(parse_quota("weight=3"), Ok(("weight".to_string(), 3)));
        assert!(parse_quota("weight").is_err());
        assert!(parse_quota("weight=-1").is_err());
    }

    #[test]
    fn small_body_size_is_rejected() {
        assert!(parse_body_size("32").is_err());
        assert_eq!(parse_body_size("33"), Ok(33));
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
