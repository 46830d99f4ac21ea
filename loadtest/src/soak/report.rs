//! The soak report: per tenant and in total, the operations, deliveries, reconnects and
//! latencies, and the checks of every conversation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Settings, TenantOutcome};
use crate::report::{
    new_latency_histogram, to_ms, write_checks, LatencySummary, RunReport, ServerLogCounts,
};
use crate::verify::{self, ConversationLog};

/// The figures of one tenant, or of all of them.
#[derive(Debug, Clone, Serialize)]
pub struct SoakGroupReport {
    pub name: String,
    pub connections: u64,
    pub sent: u64,
    pub acked: u64,
    /// Failed operations by `operation:label`, such as `send:timeout`.
    pub errors: BTreeMap<String, u64>,
    pub live_deliveries: u64,
    pub synced: u64,
    /// Seqs received again with the same body after a reconnect, which clients deduplicate.
    pub redeliveries: u64,
    pub reconnects: u64,
    /// Connections the server closed, by close code.
    pub server_closes: BTreeMap<u16, u64>,
    pub history_reads: u64,
    pub typing_sent: u64,
    pub typing_received: u64,
    pub acked_per_sec: f64,
    pub ack_latency_us: LatencySummary,
    /// Send to receipt of live `message` events; messages read by `sync` are not included.
    pub delivery_latency_us: LatencySummary,
}

/// Counters and latencies while they are summed up.
struct GroupTotals {
    connections: u64,
    sent: u64,
    acked: u64,
    errors: BTreeMap<String, u64>,
    live_deliveries: u64,
    synced: u64,
    redeliveries: u64,
    reconnects: u64,
    server_closes: BTreeMap<u16, u64>,
    history_reads: u64,
    typing_sent: u64,
    typing_received: u64,
    ack_latency: Histogram<u64>,
    delivery_latency: Histogram<u64>,
}

impl GroupTotals {
    fn new() -> GroupTotals {
        GroupTotals {
            connections: 0,
            sent: 0,
            acked: 0,
            errors: BTreeMap::new(),
            live_deliveries: 0,
            synced: 0,
            redeliveries: 0,
            reconnects: 0,
            server_closes: BTreeMap::new(),
            history_reads: 0,
            typing_sent: 0,
            typing_received: 0,
            ack_latency: new_latency_histogram(),
            delivery_latency: new_latency_histogram(),
        }
    }

    fn add(&mut self, other: &GroupTotals) {
        self.connections += other.connections;
        self.sent += other.sent;
        self.acked += other.acked;
        for (label, count) in &other.errors {
            *self.errors.entry(label.clone()).or_default() += count;
        }
        self.live_deliveries += other.live_deliveries;
        self.synced += other.synced;
        self.redeliveries += other.redeliveries;
        self.reconnects += other.reconnects;
        for (code, count) in &other.server_closes {
            *self.server_closes.entry(*code).or_default() += count;
        }
        self.history_reads += other.history_reads;
        self.typing_sent += other.typing_sent;
        self.typing_received += other.typing_received;
        self.ack_latency
            .add(&other.ack_latency)
            .expect("histograms with the same bounds merge");
        self.delivery_latency
            .add(&other.delivery_latency)
            .expect("histograms with the same bounds merge");
    }

    fn to_report(&self, name: &str, duration_secs: f64) -> SoakGroupReport {
        SoakGroupReport {
            name: name.to_string(),
            connections: self.connections,
            sent: self.sent,
            acked: self.acked,
            errors: self.errors.clone(),
            live_deliveries: self.live_deliveries,
            synced: self.synced,
            redeliveries: self.redeliveries,
            reconnects: self.reconnects,
            server_closes: self.server_closes.clone(),
            history_reads: self.history_reads,
            typing_sent: self.typing_sent,
            typing_received: self.typing_received,
            acked_per_sec: if duration_secs > 0.0 {
                self.acked as f64 / duration_secs
            } else {
                0.0
            },
            ack_latency_us: LatencySummary::from_histogram(&self.ack_latency),
            delivery_latency_us: LatencySummary::from_histogram(&self.delivery_latency),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub scenario: &'static str,
    pub target: String,
    pub tenants_count: u32,
    pub connections_per_tenant: u32,
    pub duration_secs: u64,
    pub ops_per_sec_per_connection: f64,
    pub history_share: f64,
    pub typing_share: f64,
    pub reconnect_secs: u64,
    pub body_bytes: usize,
    pub drain_secs: u64,
    pub quotas: BTreeMap<String, u64>,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
    pub tenants: Vec<SoakGroupReport>,
    pub total: SoakGroupReport,
    /// Failed checks. The exit code is 1 when this is not empty.
    pub failures: Vec<String>,
    pub server_log: Option<ServerLogCounts>,
}

/// Builds the report and runs the checks of every tenant's conversation.
pub fn build(settings: &Settings, tenants: &[TenantOutcome], interrupted: bool) -> SoakReport {
    let duration_secs = settings.duration.as_secs_f64();
    let mut total = GroupTotals::new();
    let mut tenant_reports = Vec::new();
    let mut failures = Vec::new();

    for tenant in tenants {
        let name = &tenant.setup.tenant;
        let mut totals = GroupTotals::new();
        let mut log = ConversationLog {
            tenant_tag: Some(tenant.tag),
            redelivery_expected: true,
            ..ConversationLog::default()
        };
        let mut history_violations = Vec::new();
        let mut foreign = 0;
        let mut unreadable = 0;

        for member in &tenant.members {
            totals.connections += 1;
            totals.sent += member.sent;
            totals.acked += member.acked.len() as u64;
            for (label, count) in &member.errors {
                *totals.errors.entry(label.clone()).or_default() += count;
            }
            totals.live_deliveries += member.live_deliveries;
            totals.synced += member.synced;
            totals.reconnects += member.reconnects;
            for (code, count) in &member.server_closes {
                *totals.server_closes.entry(*code).or_default() += count;
            }
            totals.history_reads += member.history_reads;
            totals.typing_sent += member.typing_sent;
            totals.typing_received += member.typing_received;
            if let Some(latency) = &member.ack_latency {
                totals.ack_latency.add(latency).expect("same bounds");
            }
            if let Some(latency) = &member.delivery_latency {
                totals.delivery_latency.add(latency).expect("same bounds");
            }
            history_violations.extend(member.history_violations.iter().cloned());
            foreign += member.foreign_messages;
            unreadable += member.unreadable_bodies;
            if let Some(reason) = &member.gave_up {
                failures.push(format!("{name}: a connection stopped early: {reason}"));
            }
            log.acked.push(member.acked.clone());
            log.delivered.push(member.received.clone());
        }

        let names: Vec<String> = tenant
            .setup
            .members
            .iter()
            .map(|m| m.user.clone())
            .collect();
        let findings = verify::check_conversation(&log, &names);
        totals.redeliveries = findings.redeliveries;
        failures.extend(findings.failure_lines(name, settings.drain));
        if !history_violations.is_empty() {
            failures.push(format!(
                "{name}: {} history pages were not a run of consecutive seqs",
                history_violations.len()
            ));
            failures.extend(
                (history_violations.iter().take(5)).map(|example| format!("{name}: {example}")),
            );
        }
        if foreign > 0 {
            failures.push(format!(
                "{name}: {foreign} messages of another conversation"
            ));
        }
        if unreadable > 0 {
            failures.push(format!(
                "{name}: {unreadable} message bodies without a readable send time and tenant tag"
            ));
        }

        total.add(&totals);
        tenant_reports.push(totals.to_report(name, duration_secs));
    }

    SoakReport {
        scenario: "soak",
        target: settings.target.clone(),
        tenants_count: settings.tenants,
        connections_per_tenant: settings.connections,
        duration_secs: settings.duration.as_secs(),
        ops_per_sec_per_connection: settings.ops_per_sec,
        history_share: settings.history_share,
        typing_share: settings.typing_share,
        reconnect_secs: settings.reconnect_interval.as_secs(),
        body_bytes: settings.body_bytes,
        drain_secs: settings.drain.as_secs(),
        quotas: settings.quotas.clone(),
        interrupted,
        tenants: tenant_reports,
        total: total.to_report("total", duration_secs),
        failures,
        server_log: None,
    }
}

impl SoakReport {
    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "soak: {} tenant(s) x {} connections for {} s, {} operations/s per connection \
             ({:.0} % history, {:.0} % typing), reconnect every {} s on average, {}-byte \
             bodies; target: {}",
            self.tenants_count,
            self.connections_per_tenant,
            self.duration_secs,
            self.ops_per_sec_per_connection,
            self.history_share * 100.0,
            self.typing_share * 100.0,
            self.reconnect_secs,
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
        out.push('\n');

        let groups: Vec<&SoakGroupReport> = self.tenants.iter().chain([&self.total]).collect();
        let width = groups
            .iter()
            .map(|g| g.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7} {:>10} {:>8} {:>7} {:>8}",
            "tenant",
            "sent",
            "acked",
            "errors",
            "live",
            "synced",
            "redeliv",
            "reconnects",
            "history",
            "typing",
            "acked/s"
        );
        for group in &groups {
            let errors: u64 = group.errors.values().sum();
            let _ = writeln!(
                out,
                "{:<width$} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7} {:>10} {:>8} {:>7} {:>8.1}",
                group.name,
                group.sent,
                group.acked,
                errors,
                group.live_deliveries,
                group.synced,
                group.redeliveries,
                group.reconnects,
                group.history_reads,
                group.typing_sent,
                group.acked_per_sec
            );
        }
        out.push('\n');

        let _ = writeln!(
            out,
            "{:<width$} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "latency", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        for group in &groups {
            for (kind, latency) in [
                ("ack", &group.ack_latency_us),
                ("delivery", &group.delivery_latency_us),
            ] {
                let _ = writeln!(
                    out,
                    "{:<width$} {:<8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9}",
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
        if !self.total.errors.is_empty() {
            let listed: Vec<String> = (self.total.errors.iter())
                .map(|(label, count)| format!("{label} {count}"))
                .collect();
            let _ = writeln!(out, "\nerrors: {}", listed.join(", "));
        }
        if !self.total.server_closes.is_empty() {
            let listed: Vec<String> = (self.total.server_closes.iter())
                .map(|(code, count)| format!("{code} {count}"))
                .collect();
            let _ = writeln!(
                out,
                "\nconnections closed by the server, by code: {}",
                listed.join(", ")
            );
        }
        write_checks(
            &mut out,
            self.server_log,
            &self.failures,
            "every acked message reached every other member, in seq order without gaps or \
             conflicting duplicates, no message of another tenant arrived, and every history \
             page was a run of consecutive seqs",
        );
        out
    }
}

impl RunReport for SoakReport {
    fn set_server_log(&mut self, log: Option<ServerLogCounts>) {
        self.server_log = log;
    }

    fn to_table(&self) -> String {
        self.table()
    }

    fn write_json(&self, path: &Path) -> Result<(), String> {
        crate::report::write_json_file(self, path)
    }

    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}
