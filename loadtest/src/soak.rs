//! The `soak` scenario: several tenants, each with one group conversation, run a steady mix
//! of requests for a set time. Every connection does one operation per tick, chosen at
//! random: a send (most of them), a history read or a typing notice. Each connection also
//! closes and reconnects now and then, and catches up with `sync` from the last seq up to
//! which it has seen every message, as a real client does.
//!
//! At the end every conversation is checked. Every acked message must have reached every
//! other member, and each member's seqs must rise without gaps. A seq received twice (live
//! and again in a `sync`) must have the same body. No message of another tenant may arrive,
//! and every history page must be a run of consecutive seqs.

mod member;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_client::RestClient;
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::plot::{self, LatencySeries};
use crate::progress::{self, Progress};
use crate::provision::{self, TenantSetup, TenantSpec};
use crate::stamp::{self, MIN_TAGGED_BODY_BYTES};
use crate::steady::{quotas_patch, StopSignals, TOKEN_TTL_MARGIN_SECS};
use crate::{parse_quota, parse_rate, Target, TargetArgs, EXIT_RUN_FAILED};
use member::{Member, MemberOutcome};
pub use report::SoakReport;

const CONVERSATION: &str = "soak";

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Number of tenants.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    tenants: u32,

    /// WebSocket connections per tenant, each for its own user.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=500))]
    connections: u32,

    /// Length of the run, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_secs: u64,

    /// Operations per second of each connection: sends, history reads and typing notices.
    #[arg(long, default_value_t = 5.0, value_parser = parse_rate)]
    rate: f64,

    /// Share of the operations that are history reads, from 0 to 1.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    history_share: f64,

    /// Share of the operations that are typing notices, from 0 to 1.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    typing_share: f64,

    /// Mean time between two reconnects of one connection, in seconds. Each interval is
    /// drawn evenly from half to one and a half times this.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    reconnect_secs: u64,

    /// Size of each message body in bytes, as compact JSON.
    #[arg(long, default_value_t = 256, value_parser = parse_tagged_body_size)]
    size: usize,

    /// Time to wait after the run for the outstanding acks and deliveries, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    drain_secs: u64,

    /// Quota set on every tenant in place of the server's default, as NAME=VALUE like
    /// --quota of steady. Repeat it for several quotas.
    #[arg(long = "quota", value_name = "NAME=VALUE", value_parser = parse_quota)]
    quotas: Vec<(String, u64)>,

    /// File to write the report to as JSON, latencies in microseconds; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// File to draw each tenant's delivery p99 per second of send time to, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("expected a number from 0 to 1, got {text:?}")),
    }
}

fn parse_tagged_body_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .parse()
        .map_err(|_| format!("expected a number of bytes, got {text:?}"))?;
    if size < MIN_TAGGED_BODY_BYTES {
        return Err(format!(
            "body size must be at least {MIN_TAGGED_BODY_BYTES} bytes, to fit the send time \
             and the tenant tag"
        ));
    }
    Ok(size)
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tenants: u32,
    pub connections: u32,
    pub duration: Duration,
    pub ops_per_sec: f64,
    pub history_share: f64,
    pub typing_share: f64,
    pub reconnect_interval: Duration,
    pub body_bytes: usize,
    pub drain: Duration,
    pub quotas: BTreeMap<String, u64>,
    pub target: String,
    pub plot: Option<PathBuf>,
    pub show_progress: bool,
}

/// Runs the scenario from its command-line flags and returns the exit code.
pub async fn main(args: SoakArgs) -> ExitCode {
    let quotas: BTreeMap<String, u64> = args.quotas.iter().cloned().collect();
    let checked = quotas_patch(&quotas).and_then(|_| {
        if args.history_share + args.typing_share > 1.0 {
            return Err("--history-share and --typing-share add up to more than 1".to_string());
        }
        Ok(())
    });
    if let Err(message) = checked {
        tracing::error!("{message}");
        return ExitCode::from(EXIT_RUN_FAILED);
    }
    let signals = crate::install_ctrl_c();
    let target = match Target::start(&args.target).await {
        Ok(target) => target,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };

    let settings = Settings {
        tenants: args.tenants,
        connections: args.connections,
        duration: Duration::from_secs(args.duration_secs),
        ops_per_sec: args.rate,
        history_share: args.history_share,
        typing_share: args.typing_share,
        reconnect_interval: Duration::from_secs(args.reconnect_secs),
        body_bytes: args.size,
        drain: Duration::from_secs(args.drain_secs),
        quotas,
        target: target.description.clone(),
        plot: args.plot.clone(),
        show_progress: progress::wanted(args.json.as_deref()),
    };
    let rest = RestClient::new(
        format!("http://{}", target.addr),
        target.admin_token.clone(),
    );
    let mut created = Vec::new();
    let ws_url = format!("ws://{}", target.addr);
    let outcome = run(&rest, &ws_url, &settings, &signals, &mut created).await;

    provision::delete_tenants(&rest, &created).await;
    let server_log = target.stop().await;
    crate::finish(outcome, server_log, args.json.as_deref())
}

/// Progress of one tenant that its members share, to know when the drain is done.
#[derive(Debug)]
pub struct TenantProgress {
    /// Highest seq of any acked send in the conversation.
    pub max_acked: AtomicU64,
    /// For each member, the seq up to which it has seen every message, its own included.
    pub seen_through: Vec<AtomicU64>,
}

impl TenantProgress {
    fn new(members: usize) -> TenantProgress {
        TenantProgress {
            max_acked: AtomicU64::new(0),
            seen_through: (0..members).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Returns whether every member has seen every acked message.
    pub fn all_seen(&self) -> bool {
        let max_acked = self.max_acked.load(Ordering::Relaxed);
        (self.seen_through.iter()).all(|seen| seen.load(Ordering::Relaxed) >= max_acked)
    }
}

/// One provisioned tenant with its tag and its members' results.
pub struct TenantOutcome {
    pub setup: TenantSetup,
    pub tag: u64,
    pub members: Vec<MemberOutcome>,
}

async fn run(
    rest: &RestClient,
    ws_url: &str,
    settings: &Settings,
    signals: &StopSignals,
    created: &mut Vec<String>,
) -> Result<SoakReport, String> {
    let run_suffix = format!("{:08x}", rand::random::<u32>());
    let mut setups = Vec::new();
    for index in 0..settings.tenants {
        let spec = TenantSpec {
            id: format!("lt-soak{index}-{run_suffix}"),
            name: format!("load test {run_suffix} soak tenant {index}"),
            members: settings.connections,
            conversation: CONVERSATION.to_string(),
            token_ttl_secs: settings.duration.as_secs()
                + settings.drain.as_secs()
                + TOKEN_TTL_MARGIN_SECS,
            quotas: quotas_patch(&settings.quotas)?,
        };
        setups.push(provision::provision_tenant(rest, &spec, created).await?);
    }

    let origin = Instant::now();
    let deadline = origin + settings.duration;
    let mut tenant_tasks = Vec::new();
    let mut tags = Vec::new();
    for setup in &setups {
        let tag = stamp::new_tenant_tag();
        tags.push(tag);
        let progress = Arc::new(TenantProgress::new(setup.members.len()));
        let member_index: Arc<BTreeMap<String, u32>> = Arc::new(
            (setup.members.iter().enumerate())
                .map(|(index, member)| (member.user.clone(), index as u32))
                .collect(),
        );
        let tasks: Vec<_> = (setup.members.iter().enumerate())
            .map(|(index, account)| {
                let member = Member {
                    ws_url: ws_url.to_string(),
                    tenant: setup.tenant.clone(),
                    user: account.user.clone(),
                    token: account.token.clone(),
                    index,
                    conversation: setup.conversation.as_str().into(),
                    member_index: member_index.clone(),
                    tag,
                    settings: settings.clone(),
                    origin,
                    deadline,
                    signals: signals.clone(),
                    progress: progress.clone(),
                };
                tokio::spawn(member.run())
            })
            .collect();
        tenant_tasks.push(tasks);
    }
    tracing::info!(
        tenants = setups.len(),
        connections_per_tenant = settings.connections,
        duration_secs = settings.duration.as_secs(),
        "soak running"
    );

    let mut bar = Progress::timed(settings.show_progress, settings.duration);
    bar.set_message("running");
    let mut tenants = Vec::new();
    for ((setup, tag), tasks) in setups.into_iter().zip(tags).zip(tenant_tasks) {
        let mut members = Vec::new();
        for result in join_all(tasks).await {
            members.push(result.map_err(|e| format!("a soak connection task failed: {e}"))?);
        }
        tenants.push(TenantOutcome {
            setup,
            tag,
            members,
        });
    }
    bar.finish();

    if let Some(path) = &settings.plot {
        write_plot(path, settings, &mut tenants)?;
    }
    Ok(report::build(
        settings,
        &tenants,
        *signals.stop_sending.borrow(),
    ))
}

fn write_plot(
    path: &std::path::Path,
    settings: &Settings,
    tenants: &mut [TenantOutcome],
) -> Result<(), String> {
    let mut series = Vec::new();
    for tenant in tenants.iter_mut() {
        let mut merged = LatencySeries::default();
        for member in &mut tenant.members {
            merged.merge(std::mem::take(&mut member.latency_series));
        }
        series.push((tenant.setup.tenant.clone(), merged));
    }
    let named: Vec<(String, &LatencySeries)> =
        series.iter().map(|(name, s)| (name.clone(), s)).collect();
    let title = format!(
        "soak: delivery p99 per second, {} tenants x {} connections",
        settings.tenants, settings.connections
    );
    plot::write_latency_plot(path, &title, &named)
}
