//! `bulkhead-loadtest`: drives a bulkhead server with chat traffic from one process, then
//! reports throughput, latency percentiles and whether every message was delivered.
//!
//! It targets a server on 127.0.0.1 only: a running one (`--url`) or one it starts itself
//! (`--spawn-server`). Client and server then share the machine's cores, which the numbers
//! include.

mod compare;
mod connections;
mod fanout;
mod limits;
mod noisy;
mod plot;
mod progress;
mod provision;
mod report;
mod server;
mod soak;
mod stamp;
mod steady;
mod verify;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_client::RestClient;
use clap::{ArgGroup, Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use report::{RunReport, ServerLogCounts};
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
                  gap (noisy-neighbor: or an acked message of the noisy tenant is missing \
                  from its history; soak: or a seq arrived twice with different bodies, a \
                  message of another tenant arrived or a history page had a gap; \
                  connections: or a connection failed to open or was closed), 2 when the run \
                  could not start or finish."
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

    /// Measures whether a tenant that floods the server slows down a quiet tenant.
    ///
    /// A quiet tenant sends at a fixed rate into its group conversation for two phases of
    /// --duration-secs each: alone, then while a noisy tenant floods its own conversation
    /// without waiting for acks, at --flood-factor times its ingress quota or at
    /// --flood-rate. The report compares the quiet tenant's latencies in the two phases and
    /// the noisy tenant's acked rate with its quotas. The first second of each phase is left
    /// out of every figure. After phase 2 the noisy tenant's rate quotas are raised, so that
    /// its queued sends drain in seconds. Then every acked quiet message must have reached
    /// the other members in seq order, and every acked noisy message must be in its
    /// conversation's history.
    #[command(name = "noisy-neighbor")]
    NoisyNeighbor(NoisyArgs),

    /// Measures delivery in one large group: one tenant, one connection per member, and a
    /// few senders at a fixed total rate.
    ///
    /// The report gives the send-to-delivery latency to every member and the deliveries per
    /// second. The check: every acked message reached every other member.
    Fanout(fanout::FanoutArgs),

    /// Opens and holds idle authenticated WebSocket connections, and reports the resident
    /// memory of a started server before and after, per connection.
    Connections(connections::ConnectionsArgs),

    /// Several tenants with a steady mix of sends, history reads, typing and reconnects
    /// with sync, for a set time; checks every conversation at the end.
    Soak(soak::SoakArgs),

    /// Compares bulkhead with NATS on this machine: persisted publish (bulkhead send vs
    /// JetStream publish) and fan-out (group delivery vs core NATS subscribers), each at
    /// maximum throughput and at a fixed fraction of it, plus the RocksDB and WebSocket
    /// ceilings. scripts/compare-nats.sh starts the servers and runs it.
    Compare(compare::CompareArgs),
}

/// The server flags of every scenario: `--url` of a running server or `--spawn-server`.
#[derive(clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["url", "spawn_server"])))]
struct TargetArgs {
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
}

#[derive(clap::Args)]
struct SteadyArgs {
    #[command(flatten)]
    target: TargetArgs,

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

    /// File to write the report to as JSON, latencies in microseconds; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// File to draw each tenant's delivery p99 per second of send time to, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

#[derive(clap::Args)]
struct NoisyArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Length of each of the two phases, in seconds. The first second of each is warm-up
    /// and left out of the figures.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    duration_secs: u64,

    /// Time to wait after phase 2 for the outstanding acks and deliveries, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    drain_secs: u64,

    /// WebSocket connections of the quiet tenant, each for its own user.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=100))]
    quiet_connections: u32,

    /// Messages per second that the quiet tenant sends, spread evenly over its connections.
    #[arg(long, default_value_t = 200.0, value_parser = parse_rate)]
    quiet_rate: f64,

    /// Size of each quiet message body in bytes, as compact JSON.
    #[arg(long, default_value_t = 256, value_parser = parse_body_size)]
    size: usize,

    /// Quota set on the quiet tenant in place of the server's default, as NAME=VALUE like
    /// --quota of steady. Repeat it for several quotas.
    #[arg(long = "quiet-quota", value_name = "NAME=VALUE", value_parser = parse_quota)]
    quiet_quotas: Vec<(String, u64)>,

    /// Quota set on the noisy tenant in place of the server's default, as NAME=VALUE like
    /// --quota of steady. Repeat it for several quotas. Without any, the noisy tenant gets
    /// ingress_bytes_per_sec=200000.
    #[arg(long = "noisy-quota", value_name = "NAME=VALUE", value_parser = parse_quota)]
    noisy_quotas: Vec<(String, u64)>,

    /// WebSocket connections of the noisy tenant, each for its own user. Every one floods
    /// and receives the others' messages.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=100))]
    noisy_connections: u32,

    /// Size of each noisy message body in bytes, as compact JSON.
    #[arg(long, default_value_t = 256, value_parser = parse_body_size)]
    noisy_size: usize,

    /// The noisy tenant offers this multiple of its ingress_bytes_per_sec quota, counted in
    /// bytes of send frames.
    #[arg(long, default_value_t = 10.0, value_parser = parse_rate)]
    flood_factor: f64,

    /// Messages per second that the noisy tenant offers, in place of --flood-factor.
    #[arg(long, value_name = "MSGS_PER_SEC", conflicts_with = "flood_factor", value_parser = parse_rate)]
    flood_rate: Option<f64>,

    /// Maximum sends per noisy connection that are waiting for their ack. A send that is due
    /// while the window is full is skipped and counted. Without it the window is unlimited
    /// and only the phase length bounds the sends.
    #[arg(long, value_name = "SENDS", value_parser = clap::value_parser!(u32).range(1..))]
    noisy_window: Option<u32>,

    /// File to write the report to as JSON, latencies in microseconds; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// File to write every quiet ack and delivery latency to as CSV, with the send time in
    /// seconds since the start of phase 1, warm-up included.
    #[arg(long, value_name = "FILE")]
    quiet_samples: Option<PathBuf>,

    /// File to draw both tenants' delivery p99 per second of send time to, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
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

/// Parses a positive, finite number such as a rate or a factor.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("expected a positive number, got {text:?}")),
    }
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
        Command::NoisyNeighbor(args) => run_noisy(args).await,
        Command::Fanout(args) => fanout::main(args).await,
        Command::Connections(args) => connections::main(args).await,
        Command::Soak(args) => soak::main(args).await,
        Command::Compare(args) => compare::run(args).await,
    }
}

/// A server to run against: one this tool started, or one at `--url`.
struct Target {
    server: Option<SpawnedServer>,
    addr: SocketAddr,
    admin_token: String,
    /// `--url` of the server, or how the tool started it, for the report.
    description: String,
}

impl Target {
    async fn start(args: &TargetArgs) -> Result<Target, String> {
        if let Some(binary) = &args.spawn_server {
            let durability = args.durability.unwrap_or(Durability::Fsync);
            let server =
                SpawnedServer::start(binary, durability, args.server_log.as_deref()).await?;
            return Ok(Target {
                addr: server.addr(),
                admin_token: server.admin_token().to_string(),
                description: format!("spawned server, durability {}", durability.as_str()),
                server: Some(server),
            });
        }

        let addr = args.url.expect("clap requires --url or --spawn-server");
        let token = args.admin_token.clone().filter(|token| !token.is_empty());
        let Some(admin_token) = token else {
            return Err(
                "missing admin token: pass --admin-token or set BULKHEAD_ADMIN_TOKEN".to_string(),
            );
        };
        Ok(Target {
            server: None,
            addr,
            admin_token,
            description: format!("http://{addr}"),
        })
    }

    /// Stops a server this tool started and returns the counts of its WARN and ERROR lines.
    async fn stop(self) -> Option<ServerLogCounts> {
        let summary = self.server?.stop().await;
        Some(ServerLogCounts {
            warnings: summary.warnings,
            errors: summary.errors,
        })
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

    let target = match Target::start(&args.target).await {
        Ok(target) => target,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let addr = target.addr;

    let settings = steady::Settings {
        tenants: args.tenants,
        connections: args.connections,
        messages: args.messages,
        body_bytes: args.size,
        window: args.window,
        duration: Duration::from_secs(args.duration_secs),
        drain: Duration::from_secs(args.drain_secs),
        target: target.description.clone(),
        quotas,
        plot: args.plot.clone(),
        show_progress: progress::wanted(args.json.as_deref()),
    };
    let rest = RestClient::new(format!("http://{addr}"), target.admin_token.clone());
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
    let server_log = target.stop().await;

    finish(outcome, server_log, args.json.as_deref())
}

async fn run_noisy(args: NoisyArgs) -> ExitCode {
    let noisy_quotas: BTreeMap<String, u64> = if args.noisy_quotas.is_empty() {
        BTreeMap::from([(
            "ingress_bytes_per_sec".to_string(),
            noisy::DEFAULT_NOISY_INGRESS_BYTES_PER_SEC,
        )])
    } else {
        args.noisy_quotas.iter().cloned().collect()
    };
    let quiet_quotas: BTreeMap<String, u64> = args.quiet_quotas.iter().cloned().collect();
    // Checked before the server starts, so that a misspelled name fails at once.
    for quotas in [&quiet_quotas, &noisy_quotas] {
        if let Err(message) = steady::quotas_patch(quotas) {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    }
    let flood = match args.flood_rate {
        Some(messages_per_sec) => noisy::FloodRate::Messages(messages_per_sec),
        None => noisy::FloodRate::QuotaFactor(args.flood_factor),
    };
    let signals = install_ctrl_c();

    let target = match Target::start(&args.target).await {
        Ok(target) => target,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let addr = target.addr;
    let settings = noisy::Settings {
        phase: Duration::from_secs(args.duration_secs),
        drain: Duration::from_secs(args.drain_secs),
        quiet: noisy::TenantSettings {
            connections: args.quiet_connections,
            body_bytes: args.size,
            quotas: quiet_quotas,
        },
        quiet_rate: args.quiet_rate,
        noisy: noisy::TenantSettings {
            connections: args.noisy_connections,
            body_bytes: args.noisy_size,
            quotas: noisy_quotas,
        },
        flood,
        noisy_window: args.noisy_window,
        target: target.description.clone(),
        server_pid: target.server.as_ref().and_then(SpawnedServer::pid),
        quiet_samples: args.quiet_samples.clone(),
        plot: args.plot.clone(),
        show_progress: progress::wanted(args.json.as_deref()),
    };

    let rest = RestClient::new(format!("http://{addr}"), target.admin_token.clone());
    let mut created = Vec::new();
    let outcome = noisy::run(
        &rest,
        &format!("ws://{addr}"),
        &settings,
        &signals,
        &mut created,
    )
    .await;

    provision::delete_tenants(&rest, &created).await;
    let server_log = target.stop().await;

    finish(outcome, server_log, args.json.as_deref())
}

/// Prints the report of a finished run, writes its JSON when asked, and returns the exit
/// code: 0 when every check passed, 1 when one failed, 2 when the run itself failed.
fn finish<R: RunReport>(outcome: Result<R, String>, server_log: Option<ServerLogCounts>, json: Option<&Path>) -> ExitCode {
    let mut report = match outcome {
        Ok(report) => report,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    report.set_server_log(server_log);
    // With `--json -` the JSON goes to stdout, so the table goes to stderr.
    let json_to_stdout = json.is_some_and(|path| path == Path::new("-"));
    if json_to_stdout {
        eprint!("{}", report.to_table());
    } else {
        print!("{}", report.to_table());
    }

    let json = if json_to_stdout { Some(Path::new("/dev/stdout")) } else { json };
    if let Some(path) = json {
        if let Err(message) = report.write_json(path) {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    }
    exit_code_for(&report)
}

/// Returns the exit code of a run that finished: 0 when every check passed, 1 otherwise.
fn exit_code_for(report: &impl RunReport) -> ExitCode {
    if report.passed() {
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
    fn rate_must_be_positive() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for text in ["0", "-1", "inf", "NaN", "fast"] {
            assert!(parse_rate(text).is_err(), "{text}");
        }
    }

    #[test]
    fn flood_rate_conflicts_with_factor() {
        let parsed = Cli::try_parse_from([
            "bulkhead-loadtest",
            "noisy-neighbor",
            "--url",
            "http://127.0.0.1:8080",
            "--flood-factor",
            "5",
            "--flood-rate",
            "1000",
        ]);

        assert!(parsed.is_err());
    }

    #[test]
    fn noisy_neighbor_needs_target() {
        let parsed = Cli::try_parse_from(["bulkhead-loadtest", "noisy-neighbor"]);

        assert!(parsed.is_err());
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
