//! The noisy-neighbour report: the quiet tenant's latencies alone and with the flooding
//! neighbour, the noisy tenant's acked rate against its quotas, server-side counters and
//! CPU use. Printed as a table, and optionally written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use bulkhead_client::proto::Quotas;
use serde::Serialize;

use super::history::HistoryFindings;
use crate::report::{to_ms, LatencySummary, ServerLogCounts};

/// A time window of the run, in seconds since the origin.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub from_secs: f64,
    pub to_secs: f64,
}

/// The quiet tenant's figures in one phase, for the sends made in its window.
#[derive(Debug, Clone, Serialize)]
pub struct QuietPhase {
    pub window: Window,
    /// Sends of the window that were acked.
    pub acked: u64,
    /// Send to ack, in microseconds.
    pub ack_latency_us: LatencySummary,
    /// Send to receipt of the `message` event by another member, in microseconds.
    pub delivery_latency_us: LatencySummary,
    /// How late the client queued each send after it was due, in microseconds. Large
    /// values mean this process was short of CPU, not the server.
    pub send_lag_us: LatencySummary,
    /// Server-side counters of the quiet tenant over the window.
    pub server: Option<TenantServerFigures>,
}

/// Differences of a tenant's `/metrics` series between two scrapes, per second where the
/// name says so.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantServerFigures {
    /// `bulkhead_tenant_cpu_seconds_total` per second of wall time: cores of engine CPU.
    pub cpu_cores: Option<f64>,
    /// `bulkhead_tenant_bytes_total{direction="in"}` per second.
    pub ingress_bytes_per_sec: Option<f64>,
    /// `bulkhead_tenant_messages_total{direction="in"}` per second.
    pub messages_in_per_sec: Option<f64>,
    /// `bulkhead_tenant_bytes_total{direction="out"}` per second: acks, errors and events.
    pub egress_bytes_per_sec: Option<f64>,
    /// `bulkhead_tenant_messages_total{direction="out"}` per second: `message` events
    /// written to sessions.
    pub messages_out_per_sec: Option<f64>,
    /// `bulkhead_tenant_throttled_seconds_total` added in the window, by resource.
    pub throttled_seconds: BTreeMap<String, f64>,
    /// `bulkhead_tenant_rejected_total` added in the window, by reason.
    pub rejected: BTreeMap<String, f64>,
    /// `bulkhead_tenant_backlog_bytes` and `_messages` at the end of the window.
    pub backlog_bytes_at_end: Option<f64>,
    pub backlog_messages_at_end: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuietReport {
    pub tenant: String,
    pub connections: u32,
    pub messages_per_sec: f64,
    pub body_bytes: usize,
    pub quotas: Quotas,
    pub alone: QuietPhase,
    pub with_neighbour: QuietPhase,
    /// p99 with the neighbour divided by p99 alone.
    pub delivery_p99_ratio: f64,
    pub ack_p99_ratio: f64,
    /// Over the whole run, warm-up included.
    pub sent: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    pub delivered: u64,
    pub expected_deliveries: u64,
    pub dropped_events: u64,
}

/// How much the noisy tenant was set to offer.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// `--flood-factor`, when the rate came from the ingress quota.
    pub factor: Option<f64>,
    pub messages_per_sec: f64,
    /// Estimated from the frame size of a typical send.
    pub frame_bytes_per_sec: f64,
    pub frame_bytes: u64,
    /// `--noisy-window`, when set.
    pub window: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoisyReport {
    pub tenant: String,
    pub connections: u32,
    pub body_bytes: usize,
    /// `--noisy-quota` values, and the quotas in effect with the server's defaults.
    pub quotas_set: BTreeMap<String, u64>,
    pub quotas: Quotas,
    pub flood: FloodReport,
    /// The measurement window: phase 2 without its warm-up.
    pub window: Window,
    /// Acks that arrived in the window, per second.
    pub acked_messages_per_sec: f64,
    pub acked_frame_bytes_per_sec: f64,
    /// `message` events that the noisy connections received in the window, per second.
    pub delivered_per_sec: f64,
    /// `acked_frame_bytes_per_sec` divided by `ingress_bytes_per_sec`.
    pub ingress_ratio: f64,
    /// Engine CPU from the server's metrics divided by `cpu_millicores` / 1000.
    pub cpu_ratio: Option<f64>,
    pub server: Option<TenantServerFigures>,
    /// Send to ack of the sends acked in the window, in microseconds.
    pub ack_latency_us: LatencySummary,
    /// Over the whole run.
    pub sent: u64,
    pub skipped: u64,
    pub held_back: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    pub delivered: u64,
    pub dropped_events: u64,
    pub history: Option<HistoryFindings>,
}

/// Cores of CPU time used per second of wall time in one window, from `/proc`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    pub client_cores: Option<f64>,
    pub server_cores: Option<f64>,
    /// Every process of the machine, this tool and the server included.
    pub machine_cores: Option<f64>,
}

impl CpuUse {
    /// Cores that processes other than this tool and the server used. The counters advance
    /// in clock ticks (10 ms with the usual USER_HZ of 100), so the difference can come out
    /// slightly below zero, which is shown as zero.
    pub fn other_cores(&self) -> Option<f64> {
        let other = self.machine_cores? - self.client_cores? - self.server_cores?;
        Some(other.max(0.0))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub target: String,
    pub phase_secs: u64,
    /// Seconds at the start of each phase left out of every figure.
    pub warm_up_secs: u64,
    pub drain_secs: u64,
    /// Whether Ctrl-C stopped the sending early.
    pub interrupted: bool,
    pub quiet: QuietReport,
    pub noisy: NoisyReport,
    /// Cores this tool can run on, which the server shares.
    pub machine_cores: usize,
    pub cpu_alone: CpuUse,
    pub cpu_with_neighbour: CpuUse,
    /// Failed checks. The exit code is 1 when this is not empty.
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
        self.write_header(&mut out);
        self.write_tenants(&mut out);
        self.write_quiet(&mut out);
        self.write_noisy(&mut out);
        self.write_cpu(&mut out);
        self.write_checks(&mut out);
        out
    }

    fn write_header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "noisy-neighbor: phase 1 quiet tenant alone, phase 2 with the noisy tenant flooding, \
             {} s each; target: {}",
            self.phase_secs, self.target
        );
        let _ = writeln!(
            out,
            "the first {} s of each phase is warm-up and left out of every figure below",
            self.warm_up_secs
        );
        if self.interrupted {
            let _ = writeln!(out, "interrupted with Ctrl-C: the figures are partial");
        }
    }

    fn write_tenants(&self, out: &mut String) {
        let (quiet, noisy) = (&self.quiet, &self.noisy);
        let _ = writeln!(
            out,
            "quiet {}: {} connections, {} msg/s, {}-byte bodies",
            quiet.tenant, quiet.connections, quiet.messages_per_sec, quiet.body_bytes
        );

        let set: Vec<String> = noisy
            .quotas_set
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let _ = writeln!(
            out,
            "noisy {}: {} connections, {}-byte bodies, quotas set: {}",
            noisy.tenant,
            noisy.connections,
            noisy.body_bytes,
            set.join(" ")
        );

        let flood = &noisy.flood;
        let factor = match flood.factor {
            Some(factor) => format!(" ({factor}x ingress_bytes_per_sec)"),
            None => String::new(),
        };
        let window = match flood.window {
            Some(window) => format!(", at most {window} unacked sends per connection"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "noisy offers {:.0} msg/s = {:.0} B/s of {}-byte send frames{factor}, open loop{window}",
            flood.messages_per_sec, flood.frame_bytes_per_sec, flood.frame_bytes
        );
        out.push('\n');
    }

    fn write_quiet(&self, out: &mut String) {
        let quiet = &self.quiet;
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "quiet latency (ms)", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        let rows = [
            ("delivery, alone", &quiet.alone.delivery_latency_us),
            (
                "delivery, neighbour",
                &quiet.with_neighbour.delivery_latency_us,
            ),
            ("ack, alone", &quiet.alone.ack_latency_us),
            ("ack, neighbour", &quiet.with_neighbour.ack_latency_us),
            ("send lag, alone", &quiet.alone.send_lag_us),
            ("send lag, neighbour", &quiet.with_neighbour.send_lag_us),
        ];
        for (name, latency) in rows {
            write_latency_row(out, name, latency);
        }
        let _ = writeln!(
            out,
            "p99 with neighbour / alone: delivery {:.2}, ack {:.2}",
            quiet.delivery_p99_ratio, quiet.ack_p99_ratio
        );
        let _ = writeln!(
            out,
            "quiet sent {}, acked {}, delivered {} of {} expected{}",
            quiet.sent,
            quiet.acked,
            quiet.delivered,
            quiet.expected_deliveries,
            format_errors(&quiet.errors)
        );
        for (name, phase) in [
            ("alone", &quiet.alone),
            ("neighbour", &quiet.with_neighbour),
        ] {
            if let Some(server) = &phase.server {
                if let Some(line) = format_pressure(server) {
                    let _ = writeln!(out, "quiet server counters, {name}: {line}");
                }
            }
        }
        out.push('\n');
    }

    fn write_noisy(&self, out: &mut String) {
        let noisy = &self.noisy;
        let quotas = &noisy.quotas;
        let _ = writeln!(
            out,
            "noisy tenant, {:.0} to {:.0} s",
            noisy.window.from_secs, noisy.window.to_secs
        );
        let _ = writeln!(
            out,
            "  acked {:.0} msg/s, {:.0} B/s of frames; ingress_bytes_per_sec {}; ratio {:.3}",
            noisy.acked_messages_per_sec,
            noisy.acked_frame_bytes_per_sec,
            quotas.ingress_bytes_per_sec,
            noisy.ingress_ratio
        );
        let cpu_quota_cores = quotas.cpu_millicores as f64 / 1000.0;
        match (
            noisy.server.as_ref().and_then(|s| s.cpu_cores),
            noisy.cpu_ratio,
        ) {
            (Some(cores), Some(ratio)) => {
                let _ = writeln!(
                    out,
                    "  engine CPU {cores:.4} cores (bulkhead_tenant_cpu_seconds_total); \
                     cpu_millicores {} = {cpu_quota_cores:.3} cores; ratio {ratio:.3}",
                    quotas.cpu_millicores
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  engine CPU: not available (scrape of /metrics failed)"
                );
            }
        }
        if let Some(server) = &noisy.server {
            if let (Some(bytes), Some(messages)) =
                (server.ingress_bytes_per_sec, server.messages_in_per_sec)
            {
                let _ = writeln!(
                    out,
                    "  server counted {bytes:.0} B/s of frames read, {messages:.0} msg/s accepted"
                );
            }
            if let (Some(bytes), Some(messages)) =
                (server.egress_bytes_per_sec, server.messages_out_per_sec)
            {
                let _ = writeln!(
                    out,
                    "  server counted {bytes:.0} B/s written, {messages:.0} msg/s of events; \
                     the client received {:.0} events/s",
                    noisy.delivered_per_sec
                );
            }
            if let Some(line) = format_pressure(server) {
                let _ = writeln!(out, "  server counters: {line}");
            }
            if let (Some(bytes), Some(messages)) =
                (server.backlog_bytes_at_end, server.backlog_messages_at_end)
            {
                let _ = writeln!(
                    out,
                    "  backlog at the end of phase 2: {bytes:.0} bytes, {messages:.0} sends"
                );
            }
        }
        write_latency_row(out, "  ack latency (ms)", &noisy.ack_latency_us);
        let _ = writeln!(
            out,
            "  whole run: sent {}, skipped (window full) {}, held back by TCP {}, acked {}, delivered {}{}",
            noisy.sent,
            noisy.skipped,
            noisy.held_back,
            noisy.acked,
            noisy.delivered,
            format_errors(&noisy.errors)
        );
        if let Some(history) = &noisy.history {
            let _ = writeln!(
                out,
                "  history: {} messages stored, {} acked missing, {} differing",
                history.stored, history.missing, history.mismatched
            );
        }
        out.push('\n');
    }

    fn write_cpu(&self, out: &mut String) {
        let cores = |value: Option<f64>| match value {
            Some(value) => format!("{value:.2}"),
            None => "n/a".to_string(),
        };
        let _ = writeln!(
            out,
            "CPU from /proc in cores; client and server share this machine's {} cores",
            self.machine_cores
        );
        for (name, cpu) in [
            ("alone", &self.cpu_alone),
            ("neighbour", &self.cpu_with_neighbour),
        ] {
            let _ = writeln!(
                out,
                "  {name:<9} client {}, server {}, other processes {}",
                cores(cpu.client_cores),
                cores(cpu.server_cores),
                cores(cpu.other_cores()),
            );
        }
        if let Some(log) = &self.server_log {
            let _ = writeln!(
                out,
                "server log: {} WARN lines, {} ERROR lines",
                log.warnings, log.errors
            );
        }
    }

    fn write_checks(&self, out: &mut String) {
        if self.failures.is_empty() {
            let _ = writeln!(
                out,
                "\nchecks passed: every acked quiet message reached the other members in seq \
                 order without gaps, and every acked noisy message is in the history"
            );
        } else {
            let _ = writeln!(out, "\nchecks FAILED:");
            for failure in &self.failures {
                let _ = writeln!(out, "  {failure}");
            }
        }
    }
}

fn write_latency_row(out: &mut String, name: &str, latency: &LatencySummary) {
    let _ = writeln!(
        out,
        "{:<24} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8}",
        name,
        to_ms(latency.p50),
        to_ms(latency.p90),
        to_ms(latency.p99),
        to_ms(latency.p999),
        to_ms(latency.max),
        latency.count
    );
}

/// Formats failed sends as `; errors: code count, ...`, or nothing when there are none.
fn format_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = errors
        .iter()
        .map(|(code, count)| format!("{code} {count}"))
        .collect();
    format!("; errors: {}", listed.join(", "))
}

/// Formats the non-zero throttled seconds and rejections, or `None` when all are zero.
fn format_pressure(server: &TenantServerFigures) -> Option<String> {
    let mut parts = Vec::new();
    for (resource, seconds) in &server.throttled_seconds {
        if *seconds > 0.0 {
            parts.push(format!("throttled {resource} {seconds:.2} s"));
        }
    }
    for (reason, count) in &server.rejected {
        if *count > 0.0 {
            parts.push(format!("rejected {reason} {count:.0}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_listed_by_code() {
        let errors = BTreeMap::from([
            ("quota_exceeded:memory".to_string(), 12),
            ("timeout".to_string(), 1),
        ]);

        assert_eq!(
            format_errors(&errors),
            "; errors: quota_exceeded:memory 12, timeout 1"
        );
        assert_eq!(format_errors(&BTreeMap::new()), "");
    }

    #[test]
    fn pressure_lists_only_nonzero_counters() {
        let server = TenantServerFigures {
            throttled_seconds: BTreeMap::from([
                ("cpu".to_string(), 0.0),
                ("ingress_bandwidth".to_string(), 13.5),
            ]),
            rejected: BTreeMap::from([("memory".to_string(), 0.0)]),
            ..TenantServerFigures::default()
        };

        assert_eq!(
            format_pressure(&server).as_deref(),
            Some("throttled ingress_bandwidth 13.50 s")
        );
        assert_eq!(format_pressure(&TenantServerFigures::default()), None);
    }
}

impl crate::report::RunReport for Report {
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

