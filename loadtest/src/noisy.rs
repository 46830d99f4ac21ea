//! The `noisy-neighbor` scenario: does a tenant that floods the server slow down a quiet one?
//!
//! Two tenants, each with one group conversation. The quiet tenant sends at a fixed rate for
//! two phases: alone, then while the noisy tenant floods. The noisy tenant sends open loop,
//! at a multiple of its ingress quota or at a given message rate, without waiting for acks.
//! Server metrics and `/proc` CPU times are sampled at the edges of the measurement windows,
//! which leave out the first [`WARM_UP`] of each phase.

mod figures;
mod history;
mod quiet;
mod report;
mod sampling;
pub(crate) mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_client::proto::{PatchTenantRequest, QuotasPatch};
use bulkhead_client::RestClient;
use tokio::time::Instant;

use crate::plot::{self, LatencySeries};
use crate::progress::Progress;
use crate::provision::{self, TenantSetup, TenantSpec};
use crate::steady::{
    quotas_patch, wait_until_true, StopSignals, REQUEST_TIMEOUT, TOKEN_TTL_MARGIN_SECS,
};
use history::ExpectedMessage;
use quiet::{QuietSpec, QuietThread};
use sampling::Sample;
use traffic::{client_msg_id, send_frame_bytes, Schedule, TrafficOutcome, TrafficPlan};

pub use report::Report;

/// The noisy tenant's ingress quota when no `--noisy-quota` is given, in bytes per second.
pub const DEFAULT_NOISY_INGRESS_BYTES_PER_SEC: u64 = 200_000;

/// Time at the start of each phase that is left out of every figure. It covers connection
/// and timer start-up, and the noisy tenant's ingress burst: its token bucket starts the
/// phase full with one second of tokens.
const WARM_UP: Duration = Duration::from_secs(1);

/// Most messages the flood may send in one run, so that a mistyped rate cannot exhaust the
/// memory of this process: every unsent frame and every ack waits in memory.
const MAX_FLOOD_MESSAGES: u64 = 5_000_000;

const QUIET_CONVERSATION: &str = "quiet";
const NOISY_CONVERSATION: &str = "noisy";

/// Bandwidth quotas of the noisy tenant after phase 2, in bytes per second, so that the
/// frames still queued in this process drain in seconds rather than minutes.
const DRAIN_BYTES_PER_SEC: u64 = 1 << 30;

/// CPU quota of the noisy tenant after phase 2: 1,000 cores, which lifts the cap.
const DRAIN_CPU_MILLICORES: u64 = 1_000_000;

/// The rate the noisy tenant offers.
#[derive(Debug, Clone, Copy)]
pub enum FloodRate {
    /// This multiple of the tenant's `ingress_bytes_per_sec`, in bytes of send frames.
    QuotaFactor(f64),
    /// Messages per second over all connections.
    Messages(f64),
}

#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub connections: u32,
    pub body_bytes: usize,
    /// Quotas that replace the server's defaults, by field name.
    pub quotas: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of each phase.
    pub phase: Duration,
    /// Time to wait after phase 2 for acks, and then for deliveries.
    pub drain: Duration,
    pub quiet: TenantSettings,
    /// Messages per second of the quiet tenant over all its connections.
    pub quiet_rate: f64,
    pub noisy: TenantSettings,
    pub flood: FloodRate,
    /// Maximum unacked sends per noisy connection; `None` for no limit.
    pub noisy_window: Option<u32>,
    /// `--url` of the server, or how the tool started it, for the report.
    pub target: String,
    /// Process id of a server this tool started, for its CPU time.
    pub server_pid: Option<u32>,
    /// File for every quiet latency sample as CSV.
    pub quiet_samples: Option<PathBuf>,
    /// File to draw both tenants' delivery p99 per second to, as SVG.
    pub plot: Option<PathBuf>,
    /// Whether to draw a progress bar over the two phases.
    pub show_progress: bool,
}

/// The noisy tenant's send rate, worked out from its quotas.
#[derive(Debug, Clone, Copy)]
struct FloodPlan {
    messages_per_sec: f64,
    /// Size of a typical send frame, from which the byte rate is estimated.
    frame_bytes: u64,
}

/// The run's clock: the origin, and the phases relative to it.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    origin: Instant,
    phase: Duration,
}

impl Timeline {
    fn phase_two(&self) -> Instant {
        self.origin + self.phase
    }

    fn end(&self) -> Instant {
        self.origin + 2 * self.phase
    }

    /// Instants of the four samples: the two ends of each measurement window.
    fn sample_instants(&self) -> [Instant; 4] {
        [
            self.origin + WARM_UP,
            self.phase_two(),
            self.phase_two() + WARM_UP,
            self.end(),
        ]
    }
}

/// Provisions both tenants, runs the two phases and checks the results. Tenant ids are
/// pushed to `created` as they are created, for the caller to delete.
pub async fn run(
    rest: &RestClient,
    ws_url: &str,
    settings: &Settings,
    signals: &StopSignals,
    created: &mut Vec<String>,
) -> Result<Report, String> {
    let (quiet_setup, noisy_setup) = provision(rest, settings, created).await?;
    let flood = plan_flood(settings, &noisy_setup)?;
    tracing::info!(
        messages_per_sec = format!("{:.0}", flood.messages_per_sec),
        frame_bytes = flood.frame_bytes,
        "noisy tenant's offered rate"
    );

    let mut quiet = QuietThread::spawn(QuietSpec {
        setup: quiet_setup.clone(),
        ws_url: ws_url.to_string(),
        request_timeout: REQUEST_TIMEOUT,
        messages_per_sec: settings.quiet_rate,
        body_bytes: settings.quiet.body_bytes,
        sending: 2 * settings.phase,
        drain: settings.drain,
        signals: signals.clone(),
    })?;
    quiet.wait_ready().await?;
    // A send queued at the start of phase 2 can wait for its ack until the end of the noisy
    // tenant's `ack_wait` below. The request timeout is longer, so that deadline comes first.
    let noisy_timeout = settings.phase + 2 * settings.drain + REQUEST_TIMEOUT;
    let noisy_clients = traffic::connect_members(ws_url, &noisy_setup, noisy_timeout).await?;
    tracing::info!("connections open; phase 1: quiet tenant alone");

    let timeline = Timeline {
        origin: Instant::now(),
        phase: settings.phase,
    };
    let quiet = quiet.start(timeline.origin)?;
    let sampler = tokio::spawn(take_samples(
        rest.clone(),
        settings.server_pid,
        timeline.sample_instants(),
        signals.clone(),
    ));

    let per_connection = flood.messages_per_sec / noisy_clients.len() as f64;
    let schedule = Schedule {
        start: timeline.phase_two(),
        end: timeline.end(),
        messages_per_sec: per_connection,
    };
    let noisy_plan = TrafficPlan {
        schedules: vec![schedule; noisy_clients.len()],
        setup: noisy_setup.clone(),
        clients: noisy_clients,
        origin: timeline.origin,
        body_bytes: settings.noisy.body_bytes,
        window: settings.noisy_window.map(|window| window as usize),
        // The quiet tenant drains first, then the noisy one.
        ack_wait: 2 * settings.drain,
        delivery_wait: settings.drain,
        signals: signals.clone(),
    };
    let noisy = tokio::spawn(traffic::drive(noisy_plan));

    let mut bar = Progress::timed(settings.show_progress, 2 * settings.phase);
    bar.set_message("phase 1: quiet tenant alone");
    wait_for_phase_two(timeline, signals, &bar).await;
    bar.finish();
    let samples = sampler
        .await
        .map_err(|e| format!("the metrics sampler failed: {e}"))?;
    tracing::info!("phases done; waiting for the quiet tenant's acks and deliveries");

    // The quiet tenant finishes before the noisy tenant's queue drains at full speed, which
    // would otherwise delay the last quiet deliveries of phase 2.
    let quiet_outcome = quiet.finish().await?;
    lift_noisy_quotas(rest, &noisy_setup.tenant).await;
    tracing::info!("waiting for the noisy tenant's acks and deliveries");
    let noisy_outcome = noisy
        .await
        .map_err(|e| format!("the noisy tenant's task failed: {e}"))??;

    if let Some(path) = &settings.quiet_samples {
        write_quiet_samples(path, &quiet_outcome)?;
    }
    if let Some(path) = &settings.plot {
        let series = [
            (quiet_setup.tenant.clone(), delivery_series(&quiet_outcome)),
            (noisy_setup.tenant.clone(), delivery_series(&noisy_outcome)),
        ];
        let named: Vec<(String, &LatencySeries)> =
            series.iter().map(|(name, s)| (name.clone(), s)).collect();
        let title = "noisy-neighbor: delivery p99 per second (phase 2 starts at the middle)";
        plot::write_latency_plot(path, title, &named)?;
    }
    let history = check_noisy_history(rest, &noisy_setup, &noisy_outcome).await;
    let inputs = figures::Inputs {
        settings,
        timeline_phase: timeline.phase,
        warm_up: WARM_UP,
        quiet_setup: &quiet_setup,
        noisy_setup: &noisy_setup,
        flood_messages_per_sec: flood.messages_per_sec,
        flood_frame_bytes: flood.frame_bytes,
        quiet: &quiet_outcome,
        noisy: &noisy_outcome,
        samples: &samples,
        history,
        interrupted: *signals.stop_sending.borrow(),
    };
    Ok(figures::build_report(inputs))
}

async fn provision(
    rest: &RestClient,
    settings: &Settings,
    created: &mut Vec<String>,
) -> Result<(TenantSetup, TenantSetup), String> {
    let run_suffix = format!("{:08x}", rand::random::<u32>());
    let token_ttl_secs = 2 * (settings.phase.as_secs() + settings.drain.as_secs())
        + REQUEST_TIMEOUT.as_secs()
        + TOKEN_TTL_MARGIN_SECS;
    let spec =
        |role: &str, tenant: &TenantSettings, conversation: &str| -> Result<TenantSpec, String> {
            Ok(TenantSpec {
                id: format!("lt-{role}-{run_suffix}"),
                name: format!("load test {run_suffix} {role} tenant"),
                members: tenant.connections,
                conversation: conversation.to_string(),
                token_ttl_secs,
                quotas: quotas_patch(&tenant.quotas)?,
            })
        };
    let quiet = spec("quiet", &settings.quiet, QUIET_CONVERSATION)?;
    let noisy = spec("noisy", &settings.noisy, NOISY_CONVERSATION)?;

    let quiet = provision::provision_tenant(rest, &quiet, created).await?;
    let noisy = provision::provision_tenant(rest, &noisy, created).await?;
    Ok((quiet, noisy))
}

/// Works out the noisy tenant's message rate from `--flood-factor` or `--flood-rate`.
fn plan_flood(settings: &Settings, noisy: &TenantSetup) -> Result<FloodPlan, String> {
    let connections = noisy.members.len() as f64;
    let body_bytes = settings.noisy.body_bytes;
    let phase_secs = settings.phase.as_secs_f64();
    // A frame's size depends on the digits of its slot and request id, so it is taken at
    // the middle slot of a connection's schedule.
    let typical_frame = |messages_per_sec: f64| -> u64 {
        let middle_slot = (messages_per_sec / connections * phase_secs / 2.0) as u64;
        let id = client_msg_id(0, middle_slot);
        send_frame_bytes(&noisy.conversation, &id, body_bytes, middle_slot + 1)
    };

    let messages_per_sec = match settings.flood {
        FloodRate::Messages(rate) => rate,
        FloodRate::QuotaFactor(factor) => {
            let offered = factor * noisy.quotas.ingress_bytes_per_sec as f64;
            // The frame size depends on the rate only through its digit counts, so a
            // second pass settles it.
            let first = offered / typical_frame(offered / 300.0) as f64;
            offered / typical_frame(first) as f64
        }
    };
    let total = (messages_per_sec * phase_secs).ceil() as u64;
    if total > MAX_FLOOD_MESSAGES {
        return Err(format!(
            "the flood would send {total} messages in {phase_secs} s, more than the \
             {MAX_FLOOD_MESSAGES} this tool allows; lower --flood-factor, --flood-rate or \
             --duration-secs"
        ));
    }
    Ok(FloodPlan {
        messages_per_sec,
        frame_bytes: typical_frame(messages_per_sec),
    })
}

/// Takes a sample at each instant, until the first Ctrl-C. Samples not taken are `None`.
async fn take_samples(
    rest: RestClient,
    server_pid: Option<u32>,
    instants: [Instant; 4],
    mut signals: StopSignals,
) -> [Option<Sample>; 4] {
    let mut samples: [Option<Sample>; 4] = Default::default();
    for (slot, at) in samples.iter_mut().zip(instants) {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = wait_until_true(&mut signals.stop_sending) => break,
        }
        *slot = Some(sampling::take_sample(&rest, server_pid).await);
    }
    samples
}

/// Waits until the end of phase 2 or the first Ctrl-C, logging the start of phase 2.
async fn wait_for_phase_two(timeline: Timeline, signals: &StopSignals, bar: &Progress) {
    let mut stop = signals.stop_sending.clone();
    tokio::select! {
        _ = tokio::time::sleep_until(timeline.phase_two()) => {
            tracing::info!("phase 2: the noisy tenant floods");
            bar.set_message("phase 2: the noisy tenant floods");
        }
        _ = wait_until_true(&mut stop) => return,
    }
    tokio::select! {
        _ = tokio::time::sleep_until(timeline.end()) => {}
        _ = wait_until_true(&mut stop) => {}
    }
}

/// Raises the noisy tenant's bandwidth and CPU quotas, so that its queued sends drain
/// quickly. A failure is logged, and the drain then takes longer.
async fn lift_noisy_quotas(rest: &RestClient, tenant: &str) {
    let request = PatchTenantRequest {
        quotas: Some(QuotasPatch {
            ingress_bytes_per_sec: Some(DRAIN_BYTES_PER_SEC),
            egress_bytes_per_sec: Some(DRAIN_BYTES_PER_SEC),
            cpu_millicores: Some(DRAIN_CPU_MILLICORES),
            ..QuotasPatch::default()
        }),
        ..PatchTenantRequest::default()
    };
    match rest.patch_tenant(tenant, &request).await {
        Ok(_) => tracing::info!(%tenant, "raised the noisy tenant's quotas for the drain"),
        Err(error) => tracing::warn!(
            %tenant,
            %error,
            "failed to raise the noisy tenant's quotas; its queued sends drain at its quota"
        ),
    }
}

/// Collects a tenant's delivery latencies by send time, for the plot.
fn delivery_series(outcome: &TrafficOutcome) -> LatencySeries {
    let mut series = LatencySeries::default();
    for delivery in outcome.recorders.iter().flat_map(|r| &r.deliveries) {
        if let Some(sent_ns) = delivery.sent_ns {
            series.record(sent_ns, delivery.received_ns.saturating_sub(sent_ns) / 1000);
        }
    }
    series
}

/// Writes one CSV row per quiet ack and delivery: the kind, the send time in seconds since
/// the origin, and the latency in milliseconds.
fn write_quiet_samples(path: &Path, outcome: &TrafficOutcome) -> Result<(), String> {
    let failed = |e: std::io::Error| {
        format!(
            "failed to write the quiet samples to {}: {e}",
            path.display()
        )
    };
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut out = std::io::BufWriter::new(file);

    writeln!(out, "kind,sent_secs,latency_ms").map_err(failed)?;
    for ack in outcome.senders.iter().flat_map(|s| &s.acked) {
        let latency_ns = ack.acked_ns.saturating_sub(ack.sent_ns);
        writeln!(
            out,
            "ack,{:.6},{:.3}",
            ack.sent_ns as f64 / 1e9,
            latency_ns as f64 / 1e6
        )
        .map_err(failed)?;
    }
    for delivery in outcome.recorders.iter().flat_map(|r| &r.deliveries) {
        let Some(sent_ns) = delivery.sent_ns else {
            continue;
        };
        let latency_ns = delivery.received_ns.saturating_sub(sent_ns);
        writeln!(
            out,
            "delivery,{:.6},{:.3}",
            sent_ns as f64 / 1e9,
            latency_ns as f64 / 1e6
        )
        .map_err(failed)?;
    }
    out.flush().map_err(failed)
}

/// Checks that every acked noisy send is in the history. Fails when the history could not
/// be read, which the report lists as a failed check.
async fn check_noisy_history(
    rest: &RestClient,
    setup: &TenantSetup,
    outcome: &TrafficOutcome,
) -> Result<history::HistoryFindings, String> {
    let mut acked: HashMap<u64, ExpectedMessage> = HashMap::new();
    let mut sent = 0;
    for (connection, (sender, member)) in outcome.senders.iter().zip(&setup.members).enumerate() {
        sent += sender.sent;
        for ack in &sender.acked {
            acked.insert(
                ack.seq,
                ExpectedMessage {
                    from: member.user.clone(),
                    client_msg_id: client_msg_id(connection, ack.slot),
                },
            );
        }
    }
    tracing::info!(acked = acked.len(), "reading the noisy tenant's history");
    history::check_history(rest, &setup.tenant, &setup.conversation, &acked, sent).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::Member;
    use bulkhead_client::proto::Quotas;

    fn noisy_setup(ingress_bytes_per_sec: u64) -> TenantSetup {
        let member = |i: u32| Member {
            user: format!("user-{i}"),
            token: String::new(),
        };
        TenantSetup {
            tenant: "lt-noisy-test".to_string(),
            conversation: NOISY_CONVERSATION.to_string(),
            members: vec![member(0), member(1)],
            quotas: Quotas {
                cpu_millicores: 1000,
                memory_bytes: 1 << 26,
                ingress_bytes_per_sec,
                egress_bytes_per_sec: 1 << 24,
                max_connections: 100,
                max_message_bytes: 1 << 16,
                max_storage_bytes: 1 << 30,
                weight: 1,
                rest_requests_per_sec: 1000,
            },
        }
    }

    fn settings(flood: FloodRate) -> Settings {
        let tenant = TenantSettings {
            connections: 2,
            body_bytes: 256,
            quotas: BTreeMap::new(),
        };
        Settings {
            phase: Duration::from_secs(15),
            drain: Duration::from_secs(30),
            quiet: tenant.clone(),
            quiet_rate: 200.0,
            noisy: tenant,
            flood,
            noisy_window: None,
            target: "test".to_string(),
            server_pid: None,
            quiet_samples: None,
            plot: None,
            show_progress: false,
        }
    }

    #[test]
    fn flood_factor_multiplies_ingress_quota() {
        let plan = plan_flood(
            &settings(FloodRate::QuotaFactor(10.0)),
            &noisy_setup(200_000),
        )
        .unwrap();

        let offered = plan.messages_per_sec * plan.frame_bytes as f64;

        assert!((offered - 2_000_000.0).abs() < 1.0, "offered {offered}");
        assert!(
            (320..340).contains(&plan.frame_bytes),
            "{}",
            plan.frame_bytes
        );
    }

    #[test]
    fn flood_rate_is_taken_as_given() {
        let plan = plan_flood(
            &settings(FloodRate::Messages(5000.0)),
            &noisy_setup(200_000),
        )
        .unwrap();

        assert_eq!(plan.messages_per_sec, 5000.0);
    }

    #[test]
    fn oversized_flood_is_rejected() {
        let error =
            plan_flood(&settings(FloodRate::Messages(1e9)), &noisy_setup(200_000)).unwrap_err();

        assert!(error.contains("--flood-rate"), "{error}");
    }

    #[test]
    fn samples_frame_the_windows() {
        let origin = Instant::now();
        let timeline = Timeline {
            origin,
            phase: Duration::from_secs(15),
        };

        let offsets = timeline.sample_instants().map(|at| at - origin);

        assert_eq!(offsets.map(|d| d.as_secs()), [1, 15, 16, 30]);
    }
}
