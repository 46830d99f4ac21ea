//! Per-tenant metrics, kept in atomics and rendered in the Prometheus text format.
//!
//! The tenant-labelled series live here rather than in the global `metrics` recorder for two
//! reasons: updating an atomic on the hot path is cheaper than a labelled lookup, and a
//! deleted tenant's series disappear with its entry, which the recorder cannot do.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use parking_lot::Mutex;

use crate::quota::Resource;

/// The reason a tenant's request was rejected, as in the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Memory,
    Storage,
    Connections,
    PayloadTooLarge,
    SlowConsumer,
    /// A REST request over the tenant's `rest_requests_per_sec`.
    RateLimited,
}

impl RejectReason {
    const ALL: [RejectReason; 6] = [
        RejectReason::Memory,
        RejectReason::Storage,
        RejectReason::Connections,
        RejectReason::PayloadTooLarge,
        RejectReason::SlowConsumer,
        RejectReason::RateLimited,
    ];

    /// The reason for a rejection by the quota of `resource`. Only memory, storage,
    /// connections and REST requests reject; CPU and bandwidth quotas delay instead.
    fn for_resource(resource: Resource) -> Self {
        match resource {
            Resource::Storage => RejectReason::Storage,
            Resource::Connections => RejectReason::Connections,
            Resource::RestRequests => RejectReason::RateLimited,
            _ => RejectReason::Memory,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RejectReason::Memory => "memory",
            RejectReason::Storage => "storage",
            RejectReason::Connections => "connections",
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::SlowConsumer => "slow_consumer",
            RejectReason::RateLimited => "rate_limited",
        }
    }
}

/// Upper bounds of the delivery latency buckets in seconds: 12 buckets from 0.5 ms, where a
/// local delivery lands, to 5 s, where a user would call the chat broken.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// Amount per second over the last whole second (bytes, or REST requests), for the usage
/// gauges of rate quotas.
#[derive(Default)]
struct RateMeter {
    second: u64,
    bytes_this_second: u64,
    bytes_last_second: u64,
}

impl RateMeter {
    fn add(&mut self, bytes: u64, now: Duration) {
        self.roll(now);
        self.bytes_this_second += bytes;
    }

    fn rate(&mut self, now: Duration) -> u64 {
        self.roll(now);
        self.bytes_last_second
    }

    fn roll(&mut self, now: Duration) {
        let second = now.as_secs();
        if second == self.second {
            return;
        }
        self.bytes_last_second = if second == self.second + 1 { self.bytes_this_second } else { 0 };
        self.bytes_this_second = 0;
        self.second = second;
    }
}

#[derive(Default)]
pub struct TenantMetrics {
    throttled_nanos: [AtomicU64; Resource::ALL.len()],
    rejected: [AtomicU64; RejectReason::ALL.len()],
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    cpu_nanos: AtomicU64,
    ingress_rate: Mutex<RateMeter>,
    egress_rate: Mutex<RateMeter>,
    rest_rate: Mutex<RateMeter>,
    latency: Histogram,
}

impl TenantMetrics {
    pub fn throttled(&self, resource: Resource, time: Duration) {
        self.throttled_nanos[resource as usize].fetch_add(time.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn throttled_time(&self, resource: Resource) -> Duration {
        Duration::from_nanos(self.throttled_nanos[resource as usize].load(Ordering::Relaxed))
    }

    /// Counts a rejection for the quota of `resource`.
    pub fn rejected(&self, resource: Resource) {
        self.reject(RejectReason::for_resource(resource));
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    pub fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    pub fn messages_out(&self, count: u64) {
        self.messages_out.fetch_add(count, Ordering::Relaxed);
    }

    pub fn bytes_in(&self, bytes: u64, now: Duration) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.ingress_rate.lock().add(bytes, now);
    }

    pub fn bytes_out(&self, bytes: u64, now: Duration) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.egress_rate.lock().add(bytes, now);
    }

    /// Counts one admitted REST request.
    pub fn rest_request(&self, now: Duration) {
        self.rest_rate.lock().add(1, now);
    }

    pub fn cpu_used(&self, cpu: Duration) {
        self.cpu_nanos.fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records one message's time from acceptance to being written to a member's socket.
    pub fn delivered(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        if let Some(index) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.latency.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.latency.count.fetch_add(1, Ordering::Relaxed);
        self.latency.sum_nanos.fetch_add(latency.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn ingress_rate(&self, now: Duration) -> u64 {
        self.ingress_rate.lock().rate(now)
    }

    pub fn egress_rate(&self, now: Duration) -> u64 {
        self.egress_rate.lock().rate(now)
    }

    /// Admitted REST requests in the last whole second.
    pub fn rest_request_rate(&self, now: Duration) -> u64 {
        self.rest_rate.lock().rate(now)
    }
}

/// One tenant's values at render time.
pub struct TenantSnapshot<'a> {
    pub tenant: &'a str,
    pub metrics: &'a TenantMetrics,
    /// `(resource, limit, usage)` in base units: cores, bytes, bytes per second, count,
    /// requests per second.
    pub quotas: Vec<(Resource, f64, f64)>,
    pub backlog_bytes: u64,
    pub backlog_messages: u64,
    pub connections: u64,
}

/// Renders the tenant series of the metric contract for every tenant in `tenants`.
pub fn render(tenants: &[TenantSnapshot<'_>], out: &mut String) {
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    header(out, "bulkhead_tenant_quota", "gauge", "Quota limit per tenant and resource, in cores, bytes, bytes/s, connections or requests/s.");
    for t in tenants {
        for (resource, limit, _) in &t.quotas {
            let _ = writeln!(out, "bulkhead_tenant_quota{{tenant=\"{}\",resource=\"{}\"}} {limit}", t.tenant, resource.as_str());
        }
    }
    header(out, "bulkhead_tenant_usage", "gauge", "Current usage per tenant and resource, in the unit of its quota.");
    for t in tenants {
        for (resource, _, usage) in &t.quotas {
            let _ = writeln!(out, "bulkhead_tenant_usage{{tenant=\"{}\",resource=\"{}\"}} {usage}", t.tenant, resource.as_str());
        }
    }
    header(out, "bulkhead_tenant_throttled_seconds_total", "counter", "Time a tenant's work waited for a quota.");
    for t in tenants {
        for resource in Resource::ALL {
            let seconds = t.metrics.throttled_time(resource).as_secs_f64();
            let _ = writeln!(out, "bulkhead_tenant_throttled_seconds_total{{tenant=\"{}\",resource=\"{}\"}} {seconds}", t.tenant, resource.as_str());
        }
    }
    header(out, "bulkhead_tenant_rejected_total", "counter", "Requests rejected because of a quota or limit.");
    for t in tenants {
        for reason in RejectReason::ALL {
            let count = t.metrics.rejected[reason as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "bulkhead_tenant_rejected_total{{tenant=\"{}\",reason=\"{}\"}} {count}", t.tenant, reason.as_str());
        }
    }
    header(out, "bulkhead_tenant_backlog_bytes", "gauge", "Bytes queued for a tenant: uncommitted sends and undelivered frames.");
    for t in tenants {
        let _ = writeln!(out, "bulkhead_tenant_backlog_bytes{{tenant=\"{}\"}} {}", t.tenant, t.backlog_bytes);
    }
    header(out, "bulkhead_tenant_backlog_messages", "gauge", "Sends of a tenant accepted and not yet acknowledged or rejected.");
    for t in tenants {
        let _ = writeln!(out, "bulkhead_tenant_backlog_messages{{tenant=\"{}\"}} {}", t.tenant, t.backlog_messages);
    }
    header(out, "bulkhead_tenant_messages_total", "counter", "Messages accepted (in) and delivered to sessions (out).");
    for t in tenants {
        let m = t.metrics;
        let _ = writeln!(out, "bulkhead_tenant_messages_total{{tenant=\"{}\",direction=\"in\"}} {}", t.tenant, m.messages_in.load(Ordering::Relaxed));
        let _ = writeln!(out, "bulkhead_tenant_messages_total{{tenant=\"{}\",direction=\"out\"}} {}", t.tenant, m.messages_out.load(Ordering::Relaxed));
    }
    header(out, "bulkhead_tenant_bytes_total", "counter", "WebSocket frame bytes received (in) and sent (out).");
    for t in tenants {
        let m = t.metrics;
        let _ = writeln!(out, "bulkhead_tenant_bytes_total{{tenant=\"{}\",direction=\"in\"}} {}", t.tenant, m.bytes_in.load(Ordering::Relaxed));
        let _ = writeln!(out, "bulkhead_tenant_bytes_total{{tenant=\"{}\",direction=\"out\"}} {}", t.tenant, m.bytes_out.load(Ordering::Relaxed));
    }
    header(out, "bulkhead_tenant_cpu_seconds_total", "counter", "Engine CPU time spent on a tenant's work.");
    for t in tenants {
        let seconds = Duration::from_nanos(t.metrics.cpu_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "bulkhead_tenant_cpu_seconds_total{{tenant=\"{}\"}} {seconds}", t.tenant);
    }
    header(out, "bulkhead_tenant_connections", "gauge", "Open WebSocket sessions of a tenant.");
    for t in tenants {
        let _ = writeln!(out, "bulkhead_tenant_connections{{tenant=\"{}\"}} {}", t.tenant, t.connections);
    }
    header(out, "bulkhead_tenant_delivery_latency_seconds", "histogram", "Time from accepting a message to writing it to a member's socket.");
    for t in tenants {
        let histogram = &t.metrics.latency;
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&histogram.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "bulkhead_tenant_delivery_latency_seconds_bucket{{tenant=\"{}\",le=\"{bound}\"}} {cumulative}", t.tenant);
        }
        let count = histogram.count.load(Ordering::Relaxed);
        let sum = Duration::from_nanos(histogram.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(out, "bulkhead_tenant_delivery_latency_seconds_bucket{{tenant=\"{}\",le=\"+Inf\"}} {count}", t.tenant);
        let _ = writeln!(out, "bulkhead_tenant_delivery_latency_seconds_sum{{tenant=\"{}\"}} {sum}", t.tenant);
        let _ = writeln!(out, "bulkhead_tenant_delivery_latency_seconds_count{{tenant=\"{}\"}} {count}", t.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = TenantMetrics::default();
        metrics.delivered(Duration::from_micros(400));
        metrics.delivered(Duration::from_millis(3));
        metrics.delivered(Duration::from_secs(9));
        let snapshot = TenantSnapshot {
            tenant: "acme",
            metrics: &metrics,
            quotas: vec![],
            backlog_bytes: 0,
            backlog_messages: 0,
            connections: 0,
        };
        let mut out = String::new();
        render(&[snapshot], &mut out);
        assert!(out.contains("bulkhead_tenant_delivery_latency_seconds_bucket{tenant=\"acme\",le=\"0.0005\"} 1\n"));
        assert!(out.contains("bulkhead_tenant_delivery_latency_seconds_bucket{tenant=\"acme\",le=\"0.005\"} 2\n"));
        assert!(out.contains("bulkhead_tenant_delivery_latency_seconds_bucket{tenant=\"acme\",le=\"5\"} 2\n"));
        assert!(out.contains("bulkhead_tenant_delivery_latency_seconds_bucket{tenant=\"acme\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("bulkhead_tenant_delivery_latency_seconds_count{tenant=\"acme\"} 3\n"));
    }

    #[test]
    fn rate_meter_reports_last_whole_second() {
        let mut meter = RateMeter::default();
        meter.add(100, Duration::from_millis(100));
        meter.add(50, Duration::from_millis(900));
        assert_eq!(meter.rate(Duration::from_millis(999)), 0);
        assert_eq!(meter.rate(Duration::from_millis(1500)), 150);
        assert_eq!(meter.rate(Duration::from_millis(3500)), 0);
    }
}
