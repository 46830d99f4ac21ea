//! `bulkhead-loadtest compare`: bulkhead next to NATS and two reference ceilings, on the
//! same machine, in the same run, with the same client-side load loop.
//!
//! Workloads, each at maximum throughput and then at a fixed rate of `--rate-fraction` of
//! that maximum:
//!
//! - persisted publish: bulkhead `send` acked after the WAL sync, against a JetStream
//!   publish to a file-storage stream acked by the server (and against a second NATS server
//!   that syncs on every write, when `--nats-synced` names one);
//! - fan-out: a bulkhead group conversation delivering to K members, against a core NATS
//!   publish to K subscribers.
//!
//! Ceilings, at maximum throughput: RocksDB's own synced write rate (`ceiling-rocksdb`) and a
//! WebSocket server that only responds (`ceiling-ws`), driven by the same client as bulkhead.
//!
//! Every phase is bounded by its duration and by a maximum count of sends.

mod bulkhead;
mod ceilings;
mod cpu;
mod drive;
mod nats;
mod report;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_client::RestClient;

use crate::server::{Durability, SpawnedServer};
use report::Report;
use workloads::{Settings, Systems};

/// Exit code when the run could not start or finish.
const EXIT_RUN_FAILED: u8 = 2;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Path of the bulkhead binary, started on 127.0.0.1 with a temporary data directory
    /// and stopped at the end.
    #[arg(long, value_name = "PATH")]
    spawn_server: PathBuf,

    /// Durability of the started bulkhead server.
    #[arg(long, value_enum, default_value = "fsync")]
    durability: Durability,

    /// Also measure the persisted workload on a second bulkhead server with durability
    /// `wal` (written to the WAL, not synced before the ack), which matches what a JetStream
    /// ack means with the server's default sync interval.
    #[arg(long)]
    compare_wal: bool,

    /// File to save the bulkhead server's log in.
    #[arg(long, value_name = "FILE")]
    server_log: Option<PathBuf>,

    /// Address of a running nats-server with JetStream enabled, as 127.0.0.1:PORT.
    #[arg(long, value_name = "ADDR", value_parser = parse_loopback_addr)]
    nats: SocketAddr,

    /// Process id of that nats-server, to report its CPU time per phase.
    #[arg(long, value_name = "PID")]
    nats_pid: Option<u32>,

    /// Sync setting of the nats-server at --nats, as the report should name it.
    #[arg(long, value_name = "TEXT", default_value = "server default sync interval")]
    nats_sync: String,

    /// Address of a second nats-server whose JetStream syncs every write
    /// (`sync_interval: always`); its persisted publish is measured too.
    #[arg(long, value_name = "ADDR", value_parser = parse_loopback_addr)]
    nats_synced: Option<SocketAddr>,

    /// Process id of the nats-server at --nats-synced.
    #[arg(long, value_name = "PID")]
    nats_synced_pid: Option<u32>,

    /// Path of the `ceiling-ws` binary of bulkhead-benches; the WebSocket ceiling is skipped
    /// without it.
    #[arg(long, value_name = "PATH")]
    ceiling_ws: Option<PathBuf>,

    /// Path of the `ceiling-rocksdb` binary of bulkhead-benches; the RocksDB ceiling is
    /// skipped without it.
    #[arg(long, value_name = "PATH")]
    ceiling_rocksdb: Option<PathBuf>,

    /// Sending connections of the persisted workload, on every system.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,

    /// Maximum sends per connection waiting for their ack in a maximum-throughput phase; in
    /// a fan-out phase, maximum messages on their way to the receivers.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    window: u32,

    /// Receivers of the fan-out workload (K), each on its own connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=999))]
    receivers: u32,

    /// Size of each message in bytes: the compact JSON body on bulkhead, the payload on NATS.
    #[arg(long, default_value_t = 256, value_parser = parse_message_size)]
    size: usize,

    /// Measured length of each phase, in seconds, after one second of warm-up.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration_secs: u64,

    /// Sends per connection after which a phase stops early.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_sends: u64,

    /// Rate of the fixed-rate phases, as a fraction of the maximum measured before.
    #[arg(long, default_value_t = 0.5, value_parser = parse_fraction)]
    rate_fraction: f64,

    /// File to write the report to as JSON, latencies in microseconds.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Starts a second bulkhead server with durability `wal` and measures the persisted workload
/// on it.
async fn persisted_on_wal_server(args: &CompareArgs, settings: &Settings) -> Result<Vec<report::Measurement>, String> {
    let server = SpawnedServer::start(&args.spawn_server, Durability::Wal, None).await?;
    let rest = RestClient::new(format!("http://{}", server.addr()), server.admin_token().to_string());
    let ws_url = format!("ws://{}", server.addr());
    let target = workloads::BulkheadTarget {
        rest: &rest,
        ws_url: &ws_url,
        pid: server.pid(),
        label: "bulkhead (wal)",
    };

    let mut created = Vec::new();
    let outcome = workloads::bulkhead_persisted(&target, settings, &workloads::run_suffix(), &mut created).await;
    crate::provision::delete_tenants(&rest, &created).await;
    server.stop().await;
    outcome.map(|(rows, _)| rows)
}

fn parse_loopback_addr(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .trim_start_matches("nats://")
        .parse()
        .map_err(|_| format!("expected 127.0.0.1:PORT, got {text:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("only loopback addresses are allowed as a target, got {}", addr.ip()));
    }
    Ok(addr)
}

fn parse_message_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .parse()
        .map_err(|_| format!("expected a number of bytes, got {text:?}"))?;
    if size < crate::steady::MIN_BODY_BYTES {
        return Err(format!(
            "message size must be at least {} bytes, to fit the send time",
            crate::steady::MIN_BODY_BYTES
        ));
    }
    Ok(size)
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        _ => Err(format!("expected a fraction in (0, 1], got {text:?}")),
    }
}

pub async fn run(args: CompareArgs) -> ExitCode {
    let server = match SpawnedServer::start(&args.spawn_server, args.durability, args.server_log.as_deref()).await {
        Ok(server) => server,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let rest = RestClient::new(format!("http://{}", server.addr()), server.admin_token().to_string());

    let settings = Settings {
        connections: args.connections,
        window: args.window as usize,
        receivers: args.receivers,
        message_bytes: args.size,
        warmup: Duration::from_secs(1),
        measured: Duration::from_secs(args.duration_secs),
        drain: Duration::from_secs(10),
        max_sends: args.max_sends,
        rate_fraction: args.rate_fraction,
    };
    let systems = Systems {
        bulkhead_ws: format!("ws://{}", server.addr()),
        bulkhead_pid: server.pid(),
        bulkhead_label: format!("bulkhead ({})", args.durability.as_str()),
        nats: args.nats.to_string(),
        nats_pid: args.nats_pid,
        nats_label: format!("JetStream file ({})", args.nats_sync),
        nats_synced: args.nats_synced.map(|addr| addr.to_string()),
        nats_synced_pid: args.nats_synced_pid,
        ceiling_ws: args.ceiling_ws.clone(),
        ceiling_rocksdb: args.ceiling_rocksdb.clone(),
    };

    let mut created = Vec::new();
    let outcome = workloads::run_all(&rest, &systems, &settings, &mut created).await;
    crate::provision::delete_tenants(&rest, &created).await;
    let log = server.stop().await;

    let mut report: Report = match outcome {
        Ok(report) => report,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    report.server_warnings = log.warnings;
    report.server_errors = log.errors;

    if args.compare_wal {
        match persisted_on_wal_server(&args, &settings).await {
            Ok(rows) => report.measurements.extend(rows),
            Err(message) => {
                tracing::error!("{message}");
                return ExitCode::from(EXIT_RUN_FAILED);
            }
        }
    }
    print!("{}", report.to_table());

    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(path, text).map_err(|e| e.to_string()));
        if let Err(error) = written {
            tracing::error!(path = %path.display(), %error, "failed to write the JSON report");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    }
    ExitCode::SUCCESS
}
