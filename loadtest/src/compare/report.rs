//! The comparison report: one row per phase, the RocksDB ceiling runs, the ratios between
//! systems, and where the servers spent their CPU during the persisted maximum.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::ceilings::RocksDbOutcome;
use super::cpu::ThreadCpu;
use crate::report::to_ms;

/// Threads listed in the CPU breakdown, the busiest first.
const LISTED_THREADS: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct ReportSettings {
    pub connections: u32,
    pub window: usize,
    pub receivers: u32,
    pub message_bytes: usize,
    pub warmup_secs: f64,
    pub measured_secs: f64,
    pub rate_fraction: f64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyFigures {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl From<&Histogram<u64>> for LatencyFigures {
    fn from(histogram: &Histogram<u64>) -> LatencyFigures {
        LatencyFigures {
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `persisted`, `fan-out to K` or `ceiling`.
    pub workload: String,
    pub system: String,
    /// `max`, or `fixed N/s` with the offered send rate.
    pub mode: String,
    pub connections: u32,
    /// Sends started in the measured part of the phase.
    pub sent: u64,
    /// Acks (persisted, ceiling) or deliveries (fan-out) of those sends.
    pub completed: u64,
    pub failed: u64,
    /// Deliveries that never arrived (fan-out), or acks still missing at the end of the
    /// drain (persisted, ceiling).
    pub missing: u64,
    /// Fixed-rate sends skipped because too many were waiting for their ack.
    pub skipped: u64,
    pub first_error: Option<String>,
    /// Acks or deliveries per second.
    pub per_sec: f64,
    /// Send → ack (persisted, ceiling) or send → delivery (fan-out) latency.
    pub latency: LatencyFigures,
    /// CPU used by the server process during the phase, in cores.
    pub server_cpu_cores: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: ReportSettings,
    pub measurements: Vec<Measurement>,
    pub rocksdb: Vec<RocksDbOutcome>,
    /// CPU seconds per bulkhead server thread during the persisted maximum.
    #[serde(serialize_with = "serialize_threads")]
    pub bulkhead_persisted_threads: ThreadCpu,
    /// CPU seconds per nats-server thread during the JetStream persisted maximum.
    #[serde(serialize_with = "serialize_threads")]
    pub nats_persisted_threads: ThreadCpu,
    pub server_warnings: u64,
    pub server_errors: u64,
}

fn serialize_threads<S: serde::Serializer>(threads: &ThreadCpu, serializer: S) -> Result<S::Ok, S::Error> {
    threads.0.serialize(serializer)
}

impl Report {
    pub fn new(settings: ReportSettings) -> Report {
        Report {
            settings,
            measurements: Vec::new(),
            rocksdb: Vec::new(),
            bulkhead_persisted_threads: ThreadCpu::default(),
            nats_persisted_threads: ThreadCpu::default(),
            server_warnings: 0,
            server_errors: 0,
        }
    }

    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\npeer comparison: {} B messages, {} connections with window {} (persisted), \
             1 sender and {} receivers (fan-out), {:.0} s measured after {:.0} s warm-up",
            s.message_bytes, s.connections, s.window, s.receivers, s.measured_secs, s.warmup_secs
        );
        let _ = writeln!(
            out,
            "msg/s is acks per second (persisted, ceiling) or deliveries per second over all \
             receivers (fan-out); \"fixed N/s\" is the offered send rate"
        );
        let _ = writeln!(
            out,
            "\n{:<16} {:<46} {:<14} {:>11} {:>9} {:>9} {:>9} {:>7} {:>8}",
            "workload", "system", "mode", "msg/s", "p50 ms", "p99 ms", "max ms", "cores", "lost"
        );
        for row in &self.measurements {
            let cores = row.server_cpu_cores.map_or("-".to_string(), |c| format!("{c:.2}"));
            let lost = row.failed + row.missing + row.skipped;
            let _ = writeln!(
                out,
                "{:<16} {:<46} {:<14} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>8}",
                row.workload,
                row.system,
                row.mode,
                row.per_sec,
                to_ms(row.latency.p50_us),
                to_ms(row.latency.p99_us),
                to_ms(row.latency.max_us),
                cores,
                lost
            );
            if let Some(error) = &row.first_error {
                let _ = writeln!(out, "    first error: {error}");
            }
        }
        for run in &self.rocksdb {
            let _ = writeln!(
                out,
                "{:<16} {:<46} {:<14} {:>11.0} {:>9.2} {:>9.2} {:>9} {:>7} {:>8}",
                "ceiling",
                format!("RocksDB sync, {} threads x {} per batch", run.threads, run.batch_values),
                "max",
                run.values_per_sec,
                to_ms(run.write_p50_us),
                to_ms(run.write_p99_us),
                "-",
                "-",
                0
            );
        }

        self.write_ratios(&mut out);
        write_threads(&mut out, "bulkhead threads, persisted max", &self.bulkhead_persisted_threads);
        write_threads(&mut out, "nats-server threads, JetStream persisted max", &self.nats_persisted_threads);
        if self.server_warnings + self.server_errors > 0 {
            let _ = writeln!(
                out,
                "\nbulkhead server log: {} warnings, {} errors",
                self.server_warnings, self.server_errors
            );
        }
        out
    }

    fn write_ratios(&self, out: &mut String) {
        let max_of = |workload: &str, system_prefix: &str| {
            self.measurements
                .iter()
                .find(|m| m.mode == "max" && m.workload.starts_with(workload) && m.system.starts_with(system_prefix))
                .map(|m| m.per_sec)
        };
        let _ = writeln!(out, "\nratios of maximum throughput (same run):");
        let pairs = [
            ("persisted", "bulkhead", "persisted", "JetStream file (", "bulkhead / JetStream"),
            ("persisted", "bulkhead (wal)", "persisted", "JetStream file (", "bulkhead (wal) / JetStream"),
            ("persisted", "bulkhead", "persisted", "JetStream file (sync_interval: always)", "bulkhead / JetStream synced"),
            ("fan-out", "bulkhead", "fan-out", "NATS core", "bulkhead / NATS core (fan-out)"),
            ("persisted", "bulkhead", "ceiling", "WebSocket ceiling", "bulkhead persisted / WebSocket ceiling"),
        ];
        for (workload, system, other_workload, other_system, label) in pairs {
            if let (Some(ours), Some(theirs)) = (max_of(workload, system), max_of(other_workload, other_system)) {
                let _ = writeln!(out, "  {label:<44} {:.2}", ours / theirs);
            }
        }
        if let Some(ours) = max_of("persisted", "bulkhead") {
            for run in &self.rocksdb {
                let label = format!("bulkhead persisted / RocksDB x{} per batch", run.batch_values);
                let _ = writeln!(out, "  {label:<44} {:.2}", ours / run.values_per_sec);
            }
        }
    }
}

fn write_threads(out: &mut String, title: &str, threads: &ThreadCpu) {
    if threads.0.is_empty() {
        return;
    }
    let total = threads.total_seconds().max(1e-9);
    let mut busiest: Vec<(&String, &f64)> = threads.0.iter().collect();
    busiest.sort_by(|a, b| b.1.total_cmp(a.1));
    let _ = writeln!(out, "\n{title} (CPU seconds, share):");
    for (name, seconds) in busiest.into_iter().take(LISTED_THREADS) {
        let _ = writeln!(out, "  {name:<24} {seconds:>7.2} {:>5.1}%", 100.0 * seconds / total);
    }
}
