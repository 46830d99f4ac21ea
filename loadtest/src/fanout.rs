//! The `fanout` scenario: one tenant, one large group conversation with one connection per
//! member, and a few senders at a fixed total rate. Every acked message is pushed to every
//! other member, so the server's work per message grows with the group size. The report
//! gives the send-to-delivery latency over all members and the deliveries per second.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_client::RestClient;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::noisy::traffic::{self, Schedule, TrafficOutcome, TrafficPlan};
use crate::plot::{self, LatencySeries};
use crate::progress::{self, Progress};
use crate::provision::{self, TenantSetup, TenantSpec};
use crate::report::{
    new_latency_histogram, to_ms, write_checks, LatencySummary, RunReport, ServerLogCounts,
};
use crate::steady::{quotas_patch, StopSignals, REQUEST_TIMEOUT, TOKEN_TTL_MARGIN_SECS};
use crate::verify::{self, ConversationLog, Received};
use crate::{parse_body_size, parse_quota, parse_rate, Target, TargetArgs, EXIT_RUN_FAILED};

const CONVERSATION: &str = "fanout";

/// Time from the end of connecting to the first send, so that the first sends do not
/// compete with the last handshakes.
const START_DELAY: Duration = Duration::from_millis(500);

/// Maximum length of the sending phase that `--messages` and `--rate` may set.
const MAX_SENDING: Duration = Duration::from_secs(86_400);

#[derive(clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Members of the group conversation, each with its own WebSocket connection.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    members: u32,

    /// Members that send; the others only receive.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    senders: u32,

    /// Messages per second of all senders together, spread evenly over them.
    #[arg(long, default_value_t = 50.0, value_parser = parse_rate)]
    rate: f64,

    /// Messages to send in total. Sending lasts --messages / --rate seconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,

    /// Size of each message body in bytes, as compact JSON.
    #[arg(long, default_value_t = 256, value_parser = parse_body_size)]
    size: usize,

    /// Time to wait after the last send for the outstanding acks and deliveries, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    drain_secs: u64,

    /// Quota set on the tenant in place of the server's default, as NAME=VALUE like --quota
    /// of steady. Repeat it for several quotas.
    #[arg(long = "quota", value_name = "NAME=VALUE", value_parser = parse_quota)]
    quotas: Vec<(String, u64)>,

    /// File to write the report to as JSON, latencies in microseconds; `-` for stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// File to draw the delivery p99 per second of send time to, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// Runs the scenario from its command-line flags and returns the exit code.
pub async fn main(args: FanoutArgs) -> ExitCode {
    let quotas: BTreeMap<String, u64> = args.quotas.iter().cloned().collect();
    let checked = check_args(&args).and_then(|()| quotas_patch(&quotas).map(|_| ()));
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

    let addr = target.addr;
    let settings = Settings {
        members: args.members,
        senders: args.senders,
        messages_per_sec: args.rate,
        messages: args.messages,
        body_bytes: args.size,
        drain: Duration::from_secs(args.drain_secs),
        quotas,
        target: target.description.clone(),
        plot: args.plot.clone(),
        show_progress: progress::wanted(args.json.as_deref()),
    };
    let rest = RestClient::new(format!("http://{addr}"), target.admin_token.clone());
    let mut created = Vec::new();
    let outcome = run(
        &rest,
        &format!("ws://{addr}"),
        &settings,
        &signals,
        &mut created,
    )
    .await;

    provision::delete_tenants(&rest, &created).await;
    let server_log = target.stop().await;
    crate::finish(outcome, server_log, args.json.as_deref())
}

fn check_args(args: &FanoutArgs) -> Result<(), String> {
    if args.senders > args.members {
        return Err(format!(
            "--senders ({}) must not exceed --members ({})",
            args.senders, args.members
        ));
    }
    let sending_secs = args.messages as f64 / args.rate;
    if sending_secs > MAX_SENDING.as_secs_f64() {
        return Err(format!(
            "--messages / --rate is {sending_secs:.0} s of sending, more than the {} s \
             allowed; raise --rate or lower --messages",
            MAX_SENDING.as_secs()
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Settings {
    members: u32,
    senders: u32,
    messages_per_sec: f64,
    messages: u64,
    body_bytes: usize,
    drain: Duration,
    quotas: BTreeMap<String, u64>,
    target: String,
    plot: Option<PathBuf>,
    show_progress: bool,
}

impl Settings {
    /// Length of the sending phase: `messages` at `messages_per_sec`.
    fn sending(&self) -> Duration {
        Duration::from_secs_f64(self.messages as f64 / self.messages_per_sec)
    }
}

async fn run(
    rest: &RestClient,
    ws_url: &str,
    settings: &Settings,
    signals: &StopSignals,
    created: &mut Vec<String>,
) -> Result<FanoutReport, String> {
    let run_suffix = format!("{:08x}", rand::random::<u32>());
    let sending = settings.sending();
    let spec = TenantSpec {
        id: format!("lt-fanout-{run_suffix}"),
        name: format!("load test {run_suffix} fanout tenant"),
        members: settings.members,
        conversation: CONVERSATION.to_string(),
        token_ttl_secs: sending.as_secs() + 2 * settings.drain.as_secs() + TOKEN_TTL_MARGIN_SECS,
        quotas: quotas_patch(&settings.quotas)?,
    };
    let setup = provision::provision_tenant(rest, &spec, created).await?;

    let request_timeout = sending + 2 * settings.drain + REQUEST_TIMEOUT;
    let clients = traffic::connect_members(ws_url, &setup, request_timeout).await?;
    tracing::info!(
        members = clients.len(),
        senders = settings.senders,
        "connections open; sending"
    );

    let origin = Instant::now();
    let start = origin + START_DELAY;
    let end = start + sending;
    let per_sender = settings.messages_per_sec / settings.senders as f64;
    let schedules: Vec<Schedule> = (0..clients.len())
        .map(|index| {
            // A schedule that ends where it starts has no slots, so the member only receives.
            let end = if index < settings.senders as usize {
                end
            } else {
                start
            };
            Schedule {
                start,
                end,
                messages_per_sec: per_sender,
            }
        })
        .collect();
    let plan = TrafficPlan {
        setup: setup.clone(),
        clients,
        origin,
        schedules,
        body_bytes: settings.body_bytes,
        window: None,
        ack_wait: settings.drain,
        delivery_wait: settings.drain,
        signals: signals.clone(),
    };

    let mut progress = Progress::timed(settings.show_progress, START_DELAY + sending);
    progress.set_message("sending");
    let outcome = traffic::drive(plan).await?;
    progress.finish();

    let report = build_report(settings, &setup, &outcome, *signals.stop_sending.borrow());
    if let Some(path) = &settings.plot {
        let mut series = LatencySeries::default();
        for delivery in outcome.recorders.iter().flat_map(|r| &r.deliveries) {
            if let Some(sent_ns) = delivery.sent_ns {
                let latency_ns = delivery.received_ns.saturating_sub(sent_ns);
                series.record(sent_ns, latency_ns / 1000);
            }
        }
        let title = format!(
            "fanout: delivery p99 per second, {} members, {} msg/s",
            settings.members, settings.messages_per_sec
        );
        plot::write_latency_plot(path, &title, &[(setup.tenant.clone(), &series)])?;
    }
    Ok(report)
}

/// The fanout figures and checks.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub target: String,
    pub tenant: String,
    pub members: u32,
    pub senders: u32,
    /// Offered messages per second of all senders together.
    pub messages_per_sec: f64,
    pub messages: u64,
    pub body_bytes: usize,
    pub drain_secs: u64,
    pub quotas: BTreeMap<String, u64>,
    /// Whether Ctrl-C stopped the sending early.
    pub interrupted: bool,
    pub sent: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    pub delivered: u64,
    /// `acked × (members − 1)`, because a sender's own session does not get its message back.
    pub expected_deliveries: u64,
    /// From the first send to the last delivery.
    pub delivering_secs: f64,
    pub deliveries_per_sec: f64,
    pub acked_per_sec: f64,
    pub ack_latency_us: LatencySummary,
    /// Send to receipt of the `message` event, over every receiving member.
    pub delivery_latency_us: LatencySummary,
    pub dropped_events: u64,
    /// Connections the server closed during the run.
    pub closed_early: u64,
    /// Failed checks. The exit code is 1 when this is not empty.
    pub failures: Vec<String>,
    pub server_log: Option<ServerLogCounts>,
}

fn build_report(
    settings: &Settings,
    setup: &TenantSetup,
    outcome: &TrafficOutcome,
    interrupted: bool,
) -> FanoutReport {
    let mut ack_latency = new_latency_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_send_ns = u64::MAX;
    let mut last_ack_ns = 0;
    for sender in &outcome.senders {
        for (label, count) in &sender.errors {
            *errors.entry(label.clone()).or_default() += count;
        }
        for ack in &sender.acked {
            ack_latency.saturating_record(ack.acked_ns.saturating_sub(ack.sent_ns) / 1000);
            first_send_ns = first_send_ns.min(ack.sent_ns);
            last_ack_ns = last_ack_ns.max(ack.acked_ns);
        }
    }

    let (delivery_latency, last_delivery_ns) = delivery_latency(outcome);
    let sent: u64 = outcome.senders.iter().map(|s| s.sent).sum();
    let acked: u64 = outcome.senders.iter().map(|s| s.acked.len() as u64).sum();
    let delivered: u64 = outcome
        .recorders
        .iter()
        .map(|r| r.deliveries.len() as u64)
        .sum();
    let secs_between = |from_ns: u64, to_ns: u64| -> f64 {
        if from_ns == u64::MAX || to_ns <= from_ns {
            0.0
        } else {
            (to_ns - from_ns) as f64 / 1e9
        }
    };
    let delivering_secs = secs_between(first_send_ns, last_delivery_ns);
    let acking_secs = secs_between(first_send_ns, last_ack_ns);
    let per_sec = |count: u64, secs: f64| if secs > 0.0 { count as f64 / secs } else { 0.0 };

    FanoutReport {
        scenario: "fanout",
        target: settings.target.clone(),
        tenant: setup.tenant.clone(),
        members: settings.members,
        senders: settings.senders,
        messages_per_sec: settings.messages_per_sec,
        messages: settings.messages,
        body_bytes: settings.body_bytes,
        drain_secs: settings.drain.as_secs(),
        quotas: settings.quotas.clone(),
        interrupted,
        sent,
        acked,
        errors,
        delivered,
        expected_deliveries: acked * (setup.members.len() as u64 - 1),
        delivering_secs,
        deliveries_per_sec: per_sec(delivered, delivering_secs),
        acked_per_sec: per_sec(acked, acking_secs),
        ack_latency_us: LatencySummary::from_histogram(&ack_latency),
        delivery_latency_us: LatencySummary::from_histogram(&delivery_latency),
        dropped_events: outcome.recorders.iter().map(|r| r.dropped_events).sum(),
        closed_early: (outcome.recorders.iter())
            .filter(|r| r.closed_early.is_some())
            .count() as u64,
        failures: check_deliveries(settings, setup, outcome),
        server_log: None,
    }
}

/// Returns the histogram of delivery latencies and the receive time of the last delivery.
fn delivery_latency(outcome: &TrafficOutcome) -> (Histogram<u64>, u64) {
    let mut histogram = new_latency_histogram();
    let mut last_ns = 0;
    for delivery in outcome.recorders.iter().flat_map(|r| &r.deliveries) {
        last_ns = last_ns.max(delivery.received_ns);
        if let Some(sent_ns) = delivery.sent_ns {
            histogram.saturating_record(delivery.received_ns.saturating_sub(sent_ns) / 1000);
        }
    }
    (histogram, last_ns)
}

/// Checks that every acked message reached every other member in seq order without gaps,
/// and that nothing else arrived.
fn check_deliveries(
    settings: &Settings,
    setup: &TenantSetup,
    outcome: &TrafficOutcome,
) -> Vec<String> {
    let log = ConversationLog {
        acked: (outcome.senders.iter())
            .map(|s| s.acked.iter().map(|ack| ack.seq).collect())
            .collect(),
        delivered: (outcome.recorders.iter())
            .map(|r| {
                (r.deliveries.iter())
                    .map(|d| Received::new(d.seq, d.sender))
                    .collect()
            })
            .collect(),
        ..ConversationLog::default()
    };
    let names: Vec<String> = setup.members.iter().map(|m| m.user.clone()).collect();
    let findings = verify::check_conversation(&log, &names);
    let mut failures = findings.failure_lines(&setup.tenant, settings.drain);

    let tenant = &setup.tenant;
    let foreign: u64 = outcome.recorders.iter().map(|r| r.foreign_messages).sum();
    if foreign > 0 {
        failures.push(format!(
            "{tenant}: {foreign} message events of another conversation"
        ));
    }
    let unreadable = (outcome.recorders.iter().flat_map(|r| &r.deliveries))
        .filter(|d| d.sent_ns.is_none())
        .count();
    if unreadable > 0 {
        failures.push(format!(
            "{tenant}: {unreadable} message bodies without a readable send time"
        ));
    }
    failures
}

impl FanoutReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;

        let mut out = String::new();
        let _ = writeln!(
            out,
            "fanout: 1 tenant, {} members, {} senders, {} messages at {} msg/s, {}-byte bodies; \
             target: {}",
            self.members,
            self.senders,
            self.messages,
            self.messages_per_sec,
            self.body_bytes,
            self.target
        );
        if !self.quotas.is_empty() {
            let listed: Vec<String> = (self.quotas.iter())
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let _ = writeln!(out, "tenant quotas: {}", listed.join(" "));
        }
        if self.interrupted {
            let _ = writeln!(out, "interrupted with Ctrl-C: the figures are partial");
        }

        let errors: u64 = self.errors.values().sum();
        let _ = writeln!(
            out,
            "\n{:>9} {:>9} {:>7} {:>11} {:>11} {:>9} {:>13} {:>9}",
            "sent",
            "acked",
            "errors",
            "delivered",
            "expected",
            "seconds",
            "deliveries/s",
            "acked/s"
        );
        let _ = writeln!(
            out,
            "{:>9} {:>9} {:>7} {:>11} {:>11} {:>9.2} {:>13.0} {:>9.0}",
            self.sent,
            self.acked,
            errors,
            self.delivered,
            self.expected_deliveries,
            self.delivering_secs,
            self.deliveries_per_sec,
            self.acked_per_sec
        );

        let _ = writeln!(
            out,
            "\n{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        for (kind, latency) in [
            ("ack", &self.ack_latency_us),
            ("delivery", &self.delivery_latency_us),
        ] {
            let _ = writeln!(
                out,
                "{:<8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9}",
                kind,
                to_ms(latency.p50),
                to_ms(latency.p90),
                to_ms(latency.p99),
                to_ms(latency.p999),
                to_ms(latency.max),
                latency.count
            );
        }

        if !self.errors.is_empty() {
            let listed: Vec<String> = (self.errors.iter())
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            let _ = writeln!(out, "\nerrors: {}", listed.join(", "));
        }
        if self.dropped_events > 0 {
            let _ = writeln!(
                out,
                "\nthe client dropped {} events because its event queue was full",
                self.dropped_events
            );
        }
        if self.closed_early > 0 {
            let _ = writeln!(
                out,
                "\nthe server closed {} connections during the run",
                self.closed_early
            );
        }
        write_checks(
            &mut out,
            self.server_log,
            &self.failures,
            "every acked message reached every other member, in seq order without gaps",
        );
        out
    }
}

impl RunReport for FanoutReport {
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
