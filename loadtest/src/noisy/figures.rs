//! Computation of the report from the recorded acks, deliveries and samples.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::history::HistoryFindings;
use super::report::{
    CpuUse, FloodReport, NoisyReport, QuietPhase, QuietReport, Report, TenantServerFigures, Window,
};
use super::sampling::{Metrics, Sample};
use super::traffic::TrafficOutcome;
use super::{FloodRate, Settings};
use crate::provision::TenantSetup;
use crate::report::{new_latency_histogram, LatencySummary};
use crate::verify::{self, ConversationLog, Received};

/// Everything the report is computed from.
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub timeline_phase: Duration,
    pub warm_up: Duration,
    pub quiet_setup: &'a TenantSetup,
    pub noisy_setup: &'a TenantSetup,
    pub flood_messages_per_sec: f64,
    pub flood_frame_bytes: u64,
    pub quiet: &'a TrafficOutcome,
    pub noisy: &'a TrafficOutcome,
    /// Samples at the start and end of the window alone, then of the window with the
    /// neighbour.
    pub samples: &'a [Option<Sample>; 4],
    pub history: Result<HistoryFindings, String>,
    pub interrupted: bool,
}

/// A window in nanoseconds since the origin, start included and end excluded.
#[derive(Debug, Clone, Copy)]
struct NanosWindow {
    from: u64,
    to: u64,
}

impl NanosWindow {
    fn new(from: Duration, to: Duration) -> Self {
        NanosWindow {
            from: from.as_nanos() as u64,
            to: to.as_nanos() as u64,
        }
    }

    fn contains(&self, ns: u64) -> bool {
        (self.from..self.to).contains(&ns)
    }

    fn to_report(self) -> Window {
        Window {
            from_secs: self.from as f64 / 1e9,
            to_secs: self.to as f64 / 1e9,
        }
    }
}

pub fn build_report(inputs: Inputs<'_>) -> Report {
    let phase = inputs.timeline_phase;
    let alone = NanosWindow::new(inputs.warm_up, phase);
    let with_neighbour = NanosWindow::new(phase + inputs.warm_up, 2 * phase);
    let [alone_start, alone_end, neighbour_start, neighbour_end] = inputs.samples;
    let alone_samples = (alone_start.as_ref(), alone_end.as_ref());
    let neighbour_samples = (neighbour_start.as_ref(), neighbour_end.as_ref());

    let mut failures = Vec::new();
    let quiet = quiet_report(
        &inputs,
        alone,
        with_neighbour,
        alone_samples,
        neighbour_samples,
        &mut failures,
    );
    let noisy = noisy_report(&inputs, with_neighbour, neighbour_samples, &mut failures);

    Report {
        scenario: "noisy-neighbor",
        target: inputs.settings.target.clone(),
        phase_secs: phase.as_secs(),
        warm_up_secs: inputs.warm_up.as_secs(),
        drain_secs: inputs.settings.drain.as_secs(),
        interrupted: inputs.interrupted,
        quiet,
        noisy,
        machine_cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_alone: cpu_use(alone_samples),
        cpu_with_neighbour: cpu_use(neighbour_samples),
        failures,
        server_log: None,
    }
}

type SamplePair<'a> = (Option<&'a Sample>, Option<&'a Sample>);

fn quiet_report(
    inputs: &Inputs<'_>,
    alone: NanosWindow,
    with_neighbour: NanosWindow,
    alone_samples: SamplePair<'_>,
    neighbour_samples: SamplePair<'_>,
    failures: &mut Vec<String>,
) -> QuietReport {
    let setup = inputs.quiet_setup;
    let outcome = inputs.quiet;
    let alone_phase = quiet_phase(outcome, alone, server_figures(&setup.tenant, alone_samples));
    let neighbour_phase = quiet_phase(
        outcome,
        with_neighbour,
        server_figures(&setup.tenant, neighbour_samples),
    );

    let acked: u64 = outcome.senders.iter().map(|s| s.acked.len() as u64).sum();
    let members = setup.members.len() as u64;
    let mut errors = BTreeMap::new();
    for sender in &outcome.senders {
        for (code, count) in &sender.errors {
            *errors.entry(code.clone()).or_default() += count;
        }
    }
    check_quiet_deliveries(inputs, failures);

    QuietReport {
        tenant: setup.tenant.clone(),
        connections: inputs.settings.quiet.connections,
        messages_per_sec: inputs.settings.quiet_rate,
        body_bytes: inputs.settings.quiet.body_bytes,
        quotas: setup.quotas.clone(),
        delivery_p99_ratio: ratio(
            neighbour_phase.delivery_latency_us.p99,
            alone_phase.delivery_latency_us.p99,
        ),
        ack_p99_ratio: ratio(
            neighbour_phase.ack_latency_us.p99,
            alone_phase.ack_latency_us.p99,
        ),
        alone: alone_phase,
        with_neighbour: neighbour_phase,
        sent: outcome.senders.iter().map(|s| s.sent).sum(),
        acked,
        errors,
        delivered: outcome
            .recorders
            .iter()
            .map(|r| r.deliveries.len() as u64)
            .sum(),
        expected_deliveries: acked * (members - 1),
        dropped_events: outcome.recorders.iter().map(|r| r.dropped_events).sum(),
    }
}

/// Latencies of the quiet sends made in `window`.
fn quiet_phase(
    outcome: &TrafficOutcome,
    window: NanosWindow,
    server: Option<TenantServerFigures>,
) -> QuietPhase {
    let mut ack_latency = new_latency_histogram();
    let mut send_lag = new_latency_histogram();
    let mut acked = 0;
    for ack in outcome.senders.iter().flat_map(|s| &s.acked) {
        if !window.contains(ack.sent_ns) {
            continue;
        }
        acked += 1;
        record_micros(&mut ack_latency, ack.acked_ns.saturating_sub(ack.sent_ns));
        record_micros(&mut send_lag, ack.sent_ns.saturating_sub(ack.due_ns));
    }

    let mut delivery_latency = new_latency_histogram();
    for delivery in outcome.recorders.iter().flat_map(|r| &r.deliveries) {
        let Some(sent_ns) = delivery.sent_ns else {
            continue;
        };
        if window.contains(sent_ns) {
            record_micros(
                &mut delivery_latency,
                delivery.received_ns.saturating_sub(sent_ns),
            );
        }
    }

    QuietPhase {
        window: window.to_report(),
        acked,
        ack_latency_us: LatencySummary::from_histogram(&ack_latency),
        delivery_latency_us: LatencySummary::from_histogram(&delivery_latency),
        send_lag_us: LatencySummary::from_histogram(&send_lag),
        server,
    }
}

/// Checks that every acked quiet message reached every other member in seq order, without
/// gaps, and that no event of another conversation arrived.
fn check_quiet_deliveries(inputs: &Inputs<'_>, failures: &mut Vec<String>) {
    let setup = inputs.quiet_setup;
    let name = &setup.tenant;
    let log = ConversationLog {
        acked: inputs
            .quiet
            .senders
            .iter()
            .map(|s| s.acked.iter().map(|ack| ack.seq).collect())
            .collect(),
        delivered: inputs
            .quiet
            .recorders
            .iter()
            .map(|r| {
                r.deliveries
                    .iter()
                    .map(|d| Received::new(d.seq, d.sender))
                    .collect()
            })
            .collect(),
        ..ConversationLog::default()
    };
    let member_names: Vec<String> = setup.members.iter().map(|m| m.user.clone()).collect();
    let findings = verify::check_conversation(&log, &member_names);

    failures.extend(findings.failure_lines(name, inputs.settings.drain));

    let unreadable = (inputs.quiet.recorders.iter().flat_map(|r| &r.deliveries))
        .filter(|d| d.sent_ns.is_none())
        .count();
    if unreadable > 0 {
        failures.push(format!(
            "{name}: {unreadable} message bodies without a readable send time"
        ));
    }
    check_foreign_messages(name, inputs.quiet, failures);
}

fn check_foreign_messages(tenant: &str, outcome: &TrafficOutcome, failures: &mut Vec<String>) {
    let foreign: u64 = outcome.recorders.iter().map(|r| r.foreign_messages).sum();
    if foreign > 0 {
        failures.push(format!(
            "{tenant}: {foreign} message events of another conversation"
        ));
    }
    let other: u64 = outcome.recorders.iter().map(|r| r.other_events).sum();
    if other > 0 {
        tracing::warn!(%tenant, events = other, "received receipt or typing events, which this scenario never triggers");
    }
}

fn noisy_report(
    inputs: &Inputs<'_>,
    window: NanosWindow,
    samples: SamplePair<'_>,
    failures: &mut Vec<String>,
) -> NoisyReport {
    let setup = inputs.noisy_setup;
    let outcome = inputs.noisy;
    let settings = inputs.settings;
    let window_secs = (window.to - window.from) as f64 / 1e9;

    let mut ack_latency = new_latency_histogram();
    let (mut acked_in_window, mut bytes_in_window) = (0u64, 0u64);
    for ack in outcome.senders.iter().flat_map(|s| &s.acked) {
        if window.contains(ack.acked_ns) {
            acked_in_window += 1;
            bytes_in_window += ack.frame_bytes;
            record_micros(&mut ack_latency, ack.acked_ns.saturating_sub(ack.sent_ns));
        }
    }
    let acked_frame_bytes_per_sec = bytes_in_window as f64 / window_secs;
    let delivered_in_window = (outcome.recorders.iter().flat_map(|r| &r.deliveries))
        .filter(|d| window.contains(d.received_ns))
        .count();
    let server = server_figures(&setup.tenant, samples);
    let cpu_quota_cores = setup.quotas.cpu_millicores as f64 / 1000.0;
    let cpu_ratio = server
        .as_ref()
        .and_then(|s| s.cpu_cores)
        .map(|cores| cores / cpu_quota_cores);

    let mut errors = BTreeMap::new();
    for sender in &outcome.senders {
        for (code, count) in &sender.errors {
            *errors.entry(code.clone()).or_default() += count;
        }
    }

    let history = match &inputs.history {
        Ok(findings) => {
            if !findings.is_clean() {
                failures.push(format!(
                    "{}: {} acked messages missing from the history, {} stored differently",
                    setup.tenant, findings.missing, findings.mismatched
                ));
                failures.extend(
                    findings
                        .examples
                        .iter()
                        .map(|e| format!("{}: {e}", setup.tenant)),
                );
            }
            Some(findings.clone())
        }
        Err(message) => {
            failures.push(format!("{}: history not checked: {message}", setup.tenant));
            None
        }
    };
    check_foreign_messages(&setup.tenant, outcome, failures);

    NoisyReport {
        tenant: setup.tenant.clone(),
        connections: settings.noisy.connections,
        body_bytes: settings.noisy.body_bytes,
        quotas_set: settings.noisy.quotas.clone(),
        quotas: setup.quotas.clone(),
        flood: FloodReport {
            factor: match settings.flood {
                FloodRate::QuotaFactor(factor) => Some(factor),
                FloodRate::Messages(_) => None,
            },
            messages_per_sec: inputs.flood_messages_per_sec,
            frame_bytes_per_sec: inputs.flood_messages_per_sec * inputs.flood_frame_bytes as f64,
            frame_bytes: inputs.flood_frame_bytes,
            window: settings.noisy_window,
        },
        window: window.to_report(),
        acked_messages_per_sec: acked_in_window as f64 / window_secs,
        acked_frame_bytes_per_sec,
        delivered_per_sec: delivered_in_window as f64 / window_secs,
        ingress_ratio: acked_frame_bytes_per_sec / setup.quotas.ingress_bytes_per_sec as f64,
        cpu_ratio,
        server,
        ack_latency_us: LatencySummary::from_histogram(&ack_latency),
        sent: outcome.senders.iter().map(|s| s.sent).sum(),
        skipped: outcome.senders.iter().map(|s| s.skipped).sum(),
        held_back: outcome.senders.iter().map(|s| s.held_back).sum(),
        acked: outcome.senders.iter().map(|s| s.acked.len() as u64).sum(),
        errors,
        delivered: outcome
            .recorders
            .iter()
            .map(|r| r.deliveries.len() as u64)
            .sum(),
        dropped_events: outcome.recorders.iter().map(|r| r.dropped_events).sum(),
        history,
    }
}

/// Computes a tenant's server-side figures between two samples. Returns `None` when a
/// sample or its scrape is missing.
fn server_figures(tenant: &str, (start, end): SamplePair<'_>) -> Option<TenantServerFigures> {
    let (start, end) = (start?, end?);
    let (before, after) = (start.metrics.as_ref()?, end.metrics.as_ref()?);
    let secs = (end.at - start.at).as_secs_f64();
    let rate = |name: &str, label: Option<(&str, &str)>| -> Option<f64> {
        let delta =
            after.tenant_value(name, tenant, label)? - before.tenant_value(name, tenant, label)?;
        Some(delta / secs)
    };

    Some(TenantServerFigures {
        cpu_cores: rate("bulkhead_tenant_cpu_seconds_total", None),
        ingress_bytes_per_sec: rate("bulkhead_tenant_bytes_total", Some(("direction", "in"))),
        messages_in_per_sec: rate("bulkhead_tenant_messages_total", Some(("direction", "in"))),
        egress_bytes_per_sec: rate("bulkhead_tenant_bytes_total", Some(("direction", "out"))),
        messages_out_per_sec: rate("bulkhead_tenant_messages_total", Some(("direction", "out"))),
        throttled_seconds: deltas_by(
            before,
            after,
            "bulkhead_tenant_throttled_seconds_total",
            tenant,
            "resource",
        ),
        rejected: deltas_by(
            before,
            after,
            "bulkhead_tenant_rejected_total",
            tenant,
            "reason",
        ),
        backlog_bytes_at_end: after.tenant_value("bulkhead_tenant_backlog_bytes", tenant, None),
        backlog_messages_at_end: after.tenant_value(
            "bulkhead_tenant_backlog_messages",
            tenant,
            None,
        ),
    })
}

/// Increase of each series of `name` between two scrapes, by the value of `label`. A series
/// missing from the first scrape counts from zero.
fn deltas_by(
    before: &Metrics,
    after: &Metrics,
    name: &str,
    tenant: &str,
    label: &str,
) -> BTreeMap<String, f64> {
    let earlier: BTreeMap<String, f64> = before
        .tenant_values_by(name, tenant, label)
        .into_iter()
        .collect();
    after
        .tenant_values_by(name, tenant, label)
        .into_iter()
        .map(|(key, value)| {
            let start = earlier.get(&key).copied().unwrap_or(0.0);
            (key, value - start)
        })
        .collect()
}

fn cpu_use((start, end): SamplePair<'_>) -> CpuUse {
    let (Some(start), Some(end)) = (start, end) else {
        return CpuUse::default();
    };
    let secs = (end.at - start.at).as_secs_f64();
    let cores = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / secs);
    CpuUse {
        client_cores: cores(start.client_cpu_secs, end.client_cpu_secs),
        server_cores: cores(start.server_cpu_secs, end.server_cpu_secs),
        machine_cores: cores(start.machine_busy_secs, end.machine_busy_secs),
    }
}

fn record_micros(histogram: &mut Histogram<u64>, nanos: u64) {
    histogram.saturating_record(nanos / 1000);
}

/// `numerator / denominator`, or NaN (written as `null` in JSON) when the denominator is 0.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        f64::NAN
    } else {
        numerator as f64 / denominator as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn sample(at: Instant, text: &str, client: f64, server: f64) -> Sample {
        Sample {
            at,
            metrics: Some(Metrics::parse(text)),
            client_cpu_secs: Some(client),
            server_cpu_secs: Some(server),
            machine_busy_secs: Some(client + server + 1.0),
        }
    }

    #[test]
    fn window_includes_start_only() {
        let window = NanosWindow::new(Duration::from_secs(1), Duration::from_secs(2));

        assert!(window.contains(1_000_000_000));
        assert!(!window.contains(2_000_000_000));
        assert!(!window.contains(999_999_999));
    }

    #[test]
    fn server_figures_are_rates_over_the_window() {
        let start = Instant::now();
        let end = start + Duration::from_secs(2);
        let before = sample(
            start,
            "bulkhead_tenant_cpu_seconds_total{tenant=\"n\"} 1.0\n\
             bulkhead_tenant_rejected_total{tenant=\"n\",reason=\"memory\"} 5\n",
            10.0,
            20.0,
        );
        let after = sample(
            end,
            "bulkhead_tenant_cpu_seconds_total{tenant=\"n\"} 1.2\n\
             bulkhead_tenant_rejected_total{tenant=\"n\",reason=\"memory\"} 45\n\
             bulkhead_tenant_throttled_seconds_total{tenant=\"n\",resource=\"cpu\"} 1.5\n",
            11.0,
            23.0,
        );

        let figures = server_figures("n", (Some(&before), Some(&after))).unwrap();
        let cpu = cpu_use((Some(&before), Some(&after)));

        assert!((figures.cpu_cores.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(figures.rejected["memory"], 40.0);
        assert_eq!(figures.throttled_seconds["cpu"], 1.5);
        assert_eq!(cpu.client_cores, Some(0.5));
        assert_eq!(cpu.server_cores, Some(1.5));
        assert_eq!(cpu.other_cores(), Some(0.0));
    }

    #[test]
    fn missing_sample_gives_no_figures() {
        let at = Instant::now();
        let only = sample(at, "", 0.0, 0.0);

        assert!(server_figures("n", (Some(&only), None)).is_none());
        assert_eq!(cpu_use((None, Some(&only))).client_cores, None);
    }

    #[test]
    fn ratio_of_zero_is_nan() {
        assert_eq!(ratio(3, 2), 1.5);
        assert!(ratio(3, 0).is_nan());
    }
}
