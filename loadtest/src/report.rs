//! The run report: counts, throughput and latency percentiles per tenant and in total, and
//! the failed delivery checks. Printed as a table, and optionally written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram records, in microseconds (10 minutes). Larger values are
/// recorded as this value.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Returns an empty latency histogram in microseconds with 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("the bounds are valid")
}

/// Counters and latencies of one tenant, or of several merged.
#[derive(Debug, Clone)]
pub struct GroupStats {
    pub connections: u64,
    pub sent: u64,
    pub acked: u64,
    /// Failed sends by error code, such as `rate_limited` or `timeout`.
    pub errors: BTreeMap<String, u64>,
    pub delivered: u64,
    /// `acked × (members − 1)`, because a sender's own session does not get its message back.
    pub expected_deliveries: u64,
    pub undelivered: u64,
    pub order_violations: u64,
    pub gaps: u64,
    /// Events the client dropped because its event queue was full.
    pub dropped_events: u64,
    /// Time from the start of sending to the last ack.
    pub sending: Duration,
    /// Send to ack, in microseconds.
    pub ack_latency: Histogram<u64>,
    /// Send to receipt of the `message` event by another member, in microseconds.
    pub delivery_latency: Histogram<u64>,
}

impl Default for GroupStats {
    fn default() -> Self {
        GroupStats {
            connections: 0,
            sent: 0,
            acked: 0,
            errors: BTreeMap::new(),
            delivered: 0,
            expected_deliveries: 0,
            undelivered: 0,
            order_violations: 0,
            gaps: 0,
            dropped_events: 0,
            sending: Duration::ZERO,
            ack_latency: new_latency_histogram(),
            delivery_latency: new_latency_histogram(),
        }
    }
}

impl GroupStats {
    /// Adds `other` to these stats. The sending time becomes the longer of the two, because
    /// every tenant starts sending at the same instant.
    pub fn merge(&mut self, other: &GroupStats) {
        self.connections += other.connections;
        self.sent += other.sent;
        self.acked += other.acked;
        for (code, count) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += count;
        }
        self.delivered += other.delivered;
        self.expected_deliveries += other.expected_deliveries;
        self.undelivered += other.undelivered;
        self.order_violations += other.order_violations;
        self.gaps += other.gaps;
        self.dropped_events += other.dropped_events;
        self.sending = self.sending.max(other.sending);
        self.ack_latency
            .add(&other.ack_latency)
            .expect("histograms with the same bounds merge");
        self.delivery_latency
            .add(&other.delivery_latency)
            .expect("histograms with the same bounds merge");
    }

    pub fn to_report(&self, name: &str) -> GroupReport {
        let sending_secs = self.sending.as_secs_f64();
        let acked_per_sec = if sending_secs > 0.0 {
            self.acked as f64 / sending_secs
        } else {
            0.0
        };
        GroupReport {
            name: name.to_string(),
            connections: self.connections,
            sent: self.sent,
            acked: self.acked,
            errors: self.errors.clone(),
            delivered: self.delivered,
            expected_deliveries: self.expected_deliveries,
            undelivered: self.undelivered,
            order_violations: self.order_violations,
            gaps: self.gaps,
            dropped_events: self.dropped_events,
            sending_secs,
            acked_per_sec,
            ack_latency_us: LatencySummary::from_histogram(&self.ack_latency),
            delivery_latency_us: LatencySummary::from_histogram(&self.delivery_latency),
        }
    }
}

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn from_histogram(histogram: &Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// The figures of one tenant, or of the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub name: String,
    pub connections: u64,
    pub sent: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub undelivered: u64,
    pub order_violations: u64,
    pub gaps: u64,
    pub dropped_events: u64,
    pub sending_secs: f64,
    /// Acked messages per second over the sending phase.
    pub acked_per_sec: f64,
    pub ack_latency_us: LatencySummary,
    pub delivery_latency_us: LatencySummary,
}

/// The flags a run was started with.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub tenants: u32,
    pub connections_per_tenant: u32,
    pub messages_per_connection: u64,
    pub body_bytes: usize,
    pub window: u32,
    pub duration_secs: u64,
    pub drain_secs: u64,
    /// `--url` of the server, or how the tool started it.
    pub target: String,
    /// Quotas set on every tenant in place of the server's defaults, by field name.
    pub quotas: BTreeMap<String, u64>,
}

/// Counts of WARN and ERROR lines in the log of a server this tool started.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerLogCounts {
    pub warnings: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub settings: RunSettings,
    /// Whether Ctrl-C stopped the sending early.
    pub interrupted: bool,
    pub tenants: Vec<GroupReport>,
    pub total: GroupReport,
    /// Failed delivery checks. The exit code is 1 when this is not empty.
    pub failures: Vec<String>,
    pub server_log: Option<ServerLogCounts>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("the report serializes to JSON");
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("failed to write the JSON report to {}: {e}", path.display()))
    }

    /// Formats the report as plain-text tables, latencies in milliseconds.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "{}: {} tenant(s) x {} connections, up to {} messages per connection, \
             {}-byte bodies, window {}, limit {} s; target: {}",
            self.scenario,
            s.tenants,
            s.connections_per_tenant,
            s.messages_per_connection,
            s.body_bytes,
            s.window,
            s.duration_secs,
            s.target
        );
        if !s.quotas.is_empty() {
            let listed: Vec<String> = s
                .quotas
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let _ = writeln!(out, "tenant quotas: {}", listed.join(" "));
        }
        if self.interrupted {
            let _ = writeln!(out, "interrupted with Ctrl-C: the figures are partial");
        }
        out.push('\n');

        let groups: Vec<&GroupReport> = self.tenants.iter().chain([&self.total]).collect();
        let name_width = groups
            .iter()
            .map(|g| g.name.len())
            .max()
            .unwrap_or(5)
            .max(6);

        let _ = writeln!(
            out,
            "{:<name_width$} {:>9} {:>9} {:>7} {:>11} {:>11} {:>9} {:>10}",
            "tenant", "sent", "acked", "errors", "delivered", "expected", "seconds", "acked/s"
        );
        for group in &groups {
            let errors: u64 = group.errors.values().sum();
            let _ = writeln!(
                out,
                "{:<name_width$} {:>9} {:>9} {:>7} {:>11} {:>11} {:>9.2} {:>10.0}",
                group.name,
                group.sent,
                group.acked,
                errors,
                group.delivered,
                group.expected_deliveries,
                group.sending_secs,
                group.acked_per_sec
            );
        }
        out.push('\n');

        let _ = writeln!(
            out,
            "{:<name_width$} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "latency", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        for group in &groups {
            let rows = [
                ("ack", &group.ack_latency_us),
                ("delivery", &group.delivery_latency_us),
            ];
            for (kind, latency) in rows {
                let _ = writeln!(
                    out,
                    "{:<name_width$} {:<8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9}",
                    group.name,
                    kind,
                    to_ms(latency.p50),
                    to_ms(latency.p90),
                    to_ms(latency.p99),
                    to_ms(latency.p999),
                    to_ms(latency.max),
                    latency.count
                );
            }
        }

        for group in &self.tenants {
            if group.errors.is_empty() {
                continue;
            }
            let listed: Vec<String> = group
                .errors
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            let _ = writeln!(out, "\nerrors in {}: {}", group.name, listed.join(", "));
        }
        if self.total.dropped_events > 0 {
            let _ = writeln!(
                out,
                "\nthe client dropped {} events because its event queue was full",
                self.total.dropped_events
            );
        }
        if let Some(log) = &self.server_log {
            let _ = writeln!(
                out,
                "\nserver log: {} WARN lines, {} ERROR lines",
                log.warnings, log.errors
            );
        }

        if self.failures.is_empty() {
            let _ = writeln!(
                out,
                "\nchecks passed: every acked message reached every other member, in seq order \
                 without gaps"
            );
        } else {
            let _ = writeln!(out, "\nchecks FAILED:");
            for failure in &self.failures {
                let _ = writeln!(out, "  {failure}");
            }
        }
        out
    }
}

/// Writes `report` to `path` as pretty-printed JSON with a final newline.
pub fn write_json_file<T: Serialize>(report: &T, path: &Path) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).expect("the report serializes to JSON");
    std::fs::write(path, text + "\n")
        .map_err(|e| format!("failed to write the JSON report to {}: {e}", path.display()))
}

/// Writes the server log counts and the checks, the last part of a scenario's table.
/// `passed` is the sentence printed when no check failed.
pub fn write_checks(
    out: &mut String,
    server_log: Option<ServerLogCounts>,
    failures: &[String],
    passed: &str,
) {
    if let Some(log) = server_log {
        let _ = writeln!(
            out,
            "\nserver log: {} WARN lines, {} ERROR lines",
            log.warnings, log.errors
        );
    }
    if failures.is_empty() {
        let _ = writeln!(out, "\nchecks passed: {passed}");
    } else {
        let _ = writeln!(out, "\nchecks FAILED:");
        for failure in failures {
            let _ = writeln!(out, "  {failure}");
        }
    }
}

pub fn to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(acked: u64, sending_secs: u64, latency_us: u64) -> GroupStats {
        let mut stats = GroupStats {
            connections: 2,
            sent: acked,
            acked,
            sending: Duration::from_secs(sending_secs),
            ..GroupStats::default()
        };
        stats.ack_latency.record(latency_us).unwrap();
        stats.errors.insert("timeout".to_string(), 1);
        stats
    }

    #[test]
    fn merge_adds_counts_and_keeps_longest_sending() {
        let mut total = GroupStats::default();

        total.merge(&stats(100, 2, 500));
        total.merge(&stats(300, 4, 1500));

        assert_eq!(total.acked, 400);
        assert_eq!(total.connections, 4);
        assert_eq!(total.errors["timeout"], 2);
        assert_eq!(total.sending, Duration::from_secs(4));
        assert_eq!(total.ack_latency.len(), 2);
    }

    #[test]
    fn throughput_is_acked_over_sending_time() {
        let report = stats(500, 4, 1000).to_report("t");

        assert_eq!(report.acked_per_sec, 125.0);
        assert_eq!(report.ack_latency_us.count, 1);
    }

    #[test]
    fn throughput_without_sending_time_is_zero() {
        let report = stats(0, 0, 1000).to_report("t");

        assert_eq!(report.acked_per_sec, 0.0);
    }
}

/// What `main` does with the report of a finished run, whatever the scenario.
pub trait RunReport {
    fn set_server_log(&mut self, log: Option<ServerLogCounts>);
    fn to_table(&self) -> String;
    fn write_json(&self, path: &Path) -> Result<(), String>;
    /// Returns whether every check of the run passed.
    fn passed(&self) -> bool;
}

impl RunReport for Report {
    fn set_server_log(&mut self, log: Option<ServerLogCounts>) {
        self.server_log = log;
    }

    fn to_table(&self) -> String {
        Report::to_table(self)
    }

    fn write_json(&self, path: &Path) -> Result<(), String> {
        Report::write_json(self, path)
    }

    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

