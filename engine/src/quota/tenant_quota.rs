//! The live quota state of one tenant.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bulkhead_storage::QuotaLimits;
use parking_lot::{Mutex, RwLock};

use super::{clock::Clock, cpu_budget::CpuBudget, token_bucket::TokenBucket};
use crate::metrics::TenantMetrics;

/// A resource with a quota, as named in metric labels and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
    IngressBandwidth,
    EgressBandwidth,
    Connections,
    Storage,
    /// REST requests on the tenant's paths, limited by `rest_requests_per_sec`.
    RestRequests,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::IngressBandwidth,
        Resource::EgressBandwidth,
        Resource::Connections,
        Resource::Storage,
        Resource::RestRequests,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::IngressBandwidth => "ingress_bandwidth",
            Resource::EgressBandwidth => "egress_bandwidth",
            Resource::Connections => "connections",
            Resource::Storage => "storage",
            Resource::RestRequests => "rest_requests",
        }
    }
}

/// A request rejected because a quota is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub resource: Resource,
    pub retry_after: Duration,
}

/// How long a rejected sender should wait before retrying when memory is full. Memory frees
/// as soon as queued work commits or is delivered, which takes milliseconds when the tenant
/// is not throttled; 100 ms is a guess that avoids a retry storm and may be tuned.
const MEMORY_RETRY_AFTER: Duration = Duration::from_millis(100);

/// Time spent throttled on one resource, counted as the union of the throttled intervals so
/// that many sessions waiting at once do not multiply it.
#[derive(Default)]
struct ThrottleInterval {
    until: Duration,
}

impl ThrottleInterval {
    /// Records that the resource is throttled from `now` until `now + wait`; returns the time
    /// not counted before.
    fn record(&mut self, now: Duration, wait: Duration) -> Duration {
        let end = now + wait;
        if end <= self.until {
            return Duration::ZERO;
        }
        let added = end - self.until.max(now);
        self.until = end;
        added
    }
}

pub struct TenantQuota {
    clock: Arc<dyn Clock>,
    limits: RwLock<QuotaLimits>,
    ingress: Mutex<(TokenBucket, ThrottleInterval)>,
    egress: Mutex<(TokenBucket, ThrottleInterval)>,
    cpu: Mutex<(CpuBudget, ThrottleInterval)>,
    /// One token per REST request on the tenant's paths.
    rest: Mutex<(TokenBucket, ThrottleInterval)>,
    /// Bytes queued for the tenant: sends not yet committed and frames not yet written to a
    /// socket.
    memory_used: AtomicU64,
    /// Sends accepted into the backlog and not yet acknowledged or rejected.
    backlog_messages: AtomicU64,
    pub metrics: TenantMetrics,
}

impl TenantQuota {
    pub fn new(limits: QuotaLimits, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        TenantQuota {
            ingress: Mutex::new((TokenBucket::new(limits.ingress_bytes_per_sec, now), ThrottleInterval::default())),
            egress: Mutex::new((TokenBucket::new(limits.egress_bytes_per_sec, now), ThrottleInterval::default())),
            cpu: Mutex::new((CpuBudget::new(limits.cpu_millicores, now), ThrottleInterval::default())),
            rest: Mutex::new((TokenBucket::new(limits.rest_requests_per_sec, now), ThrottleInterval::default())),
            limits: RwLock::new(limits),
            memory_used: AtomicU64::new(0),
            backlog_messages: AtomicU64::new(0),
            metrics: TenantMetrics::default(),
            clock,
        }
    }

    pub fn limits(&self) -> QuotaLimits {
        self.limits.read().clone()
    }

    /// Applies new limits at once. The bandwidth buckets keep their tokens up to the new
    /// capacity. A changed `rest_requests_per_sec` starts a full bucket at the new rate, so
    /// that an operator who raises the limit of a throttled tenant unblocks it at once.
    pub fn set_limits(&self, limits: QuotaLimits) {
        let now = self.clock.now();
        self.ingress.lock().0.set_rate(limits.ingress_bytes_per_sec, now);
        self.egress.lock().0.set_rate(limits.egress_bytes_per_sec, now);
        self.cpu.lock().0.set_millicores(limits.cpu_millicores, now);
        {
            let mut rest = self.rest.lock();
            if rest.0.rate_per_sec() != limits.rest_requests_per_sec.max(1) {
                rest.0 = TokenBucket::new(limits.rest_requests_per_sec, now);
            }
        }
        *self.limits.write() = limits;
    }

    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    // ---- memory ----

    /// Reserves `bytes` for a send entering the backlog, or rejects it when the tenant's
    /// queued bytes would pass `memory_bytes`. A reservation is returned with
    /// [`TenantQuota::release_send`].
    pub fn reserve_send(&self, bytes: u64) -> Result<(), QuotaExceeded> {
        let limit = self.limits.read().memory_bytes;
        let reserved = self.memory_used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            (used + bytes <= limit).then_some(used + bytes)
        });
        match reserved {
            Ok(_) => {
                self.backlog_messages.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                self.metrics.rejected(Resource::Memory);
                Err(QuotaExceeded {
                    resource: Resource::Memory,
                    retry_after: MEMORY_RETRY_AFTER,
                })
            }
        }
    }

    pub fn release_send(&self, bytes: u64) {
        self.memory_used.fetch_sub(bytes, Ordering::AcqRel);
        self.backlog_messages.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an outbound frame queued for a session. Accepted messages are always
    /// delivered, so this never fails; a session that lets too much pile up is closed.
    pub fn reserve_outbound(&self, bytes: u64) {
        self.memory_used.fetch_add(bytes, Ordering::AcqRel);
    }

    pub fn release_outbound(&self, bytes: u64) {
        self.memory_used.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub fn memory_used(&self) -> u64 {
        self.memory_used.load(Ordering::Acquire)
    }

    pub fn backlog_messages(&self) -> u64 {
        self.backlog_messages.load(Ordering::Relaxed)
    }

    /// Whether optional events (typing, receipts) should be dropped: the tenant has used
    /// half of its memory quota, or its outbound bandwidth is exhausted.
    pub fn shedding(&self) -> bool {
        let over_memory = self.memory_used() * 2 >= self.limits.read().memory_bytes;
        let now = self.clock.now();
        let egress_exhausted = self.egress.lock().0.available(now) == 0;
        over_memory || egress_exhausted
    }

    // ---- bandwidth ----

    /// Takes `bytes` of ingress bandwidth, or returns how long reading must pause.
    pub fn take_ingress(&self, bytes: u64) -> Result<(), Duration> {
        self.take(&self.ingress, Resource::IngressBandwidth, bytes)
    }

    /// Takes `bytes` of egress bandwidth, or returns how long the write must wait.
    pub fn take_egress(&self, bytes: u64) -> Result<(), Duration> {
        self.take(&self.egress, Resource::EgressBandwidth, bytes)
    }

    fn take(&self, bucket: &Mutex<(TokenBucket, ThrottleInterval)>, resource: Resource, bytes: u64) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut guard = bucket.lock();
        let (bucket, throttle) = &mut *guard;
        bucket.try_take(bytes, now).map_err(|wait| {
            self.metrics.throttled(resource, throttle.record(now, wait));
            wait
        })
    }

    // ---- REST requests ----

    /// Takes the token of one REST request, or rejects it with the time until a token is
    /// available. A rejection counts in `rejected_total{reason="rate_limited"}`, and the time
    /// until the next token in the throttled time of [`Resource::RestRequests`].
    pub fn take_rest_request(&self) -> Result<(), QuotaExceeded> {
        let now = self.clock.now();
        let mut guard = self.rest.lock();
        let (bucket, throttle) = &mut *guard;
        match bucket.try_take(1, now) {
            Ok(()) => {
                drop(guard);
                self.metrics.rest_request(now);
                Ok(())
            }
            Err(wait) => {
                self.metrics.throttled(Resource::RestRequests, throttle.record(now, wait));
                self.metrics.rejected(Resource::RestRequests);
                Err(QuotaExceeded {
                    resource: Resource::RestRequests,
                    retry_after: wait,
                })
            }
        }
    }

    // ---- CPU ----

    /// `Ok` while the tenant is under its CPU cap; otherwise how long until it may run.
    pub fn check_cpu(&self) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut guard = self.cpu.lock();
        let (budget, throttle) = &mut *guard;
        budget.check(now).map_err(|wait| {
            self.metrics.throttled(Resource::Cpu, throttle.record(now, wait));
            wait
        })
    }

    pub fn charge_cpu(&self, cpu: Duration) {
        let now = self.clock.now();
        self.cpu.lock().0.charge(cpu, now);
        self.metrics.cpu_used(cpu);
    }

    /// CPU used in the current one-second window of wall time, in cores.
    pub fn cpu_usage_cores(&self) -> f64 {
        let now = self.clock.now();
        self.cpu.lock().0.used_in_window(now).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::ManualClock;

    fn limits() -> QuotaLimits {
        QuotaLimits {
            cpu_millicores: 100,
            memory_bytes: 1000,
            ingress_bytes_per_sec: 1000,
            egress_bytes_per_sec: 1000,
            max_connections: 10,
            max_message_bytes: 100,
            max_storage_bytes: 1 << 20,
            weight: 1,
            rest_requests_per_sec: 1000,
        }
    }

    #[test]
    fn memory_quota_rejects_then_recovers() {
        let quota = TenantQuota::new(limits(), Arc::new(ManualClock::new()));
        for _ in 0..10 {
            quota.reserve_send(100).unwrap();
        }
        let err = quota.reserve_send(1).unwrap_err();
        assert_eq!(err.resource, Resource::Memory);
        assert_eq!(quota.metrics.rejections(crate::metrics::RejectReason::Memory), 1);

        quota.release_send(100);
        assert!(quota.reserve_send(100).is_ok());
        assert_eq!(quota.backlog_messages(), 10);
    }

    #[test]
    fn throttled_time_is_not_double_counted() {
        let clock = Arc::new(ManualClock::new());
        let quota = TenantQuota::new(limits(), clock.clone());
        quota.take_egress(1000).unwrap();

        // Two sessions wait for the same refill: 100 ms of throttling, counted once.
        assert_eq!(quota.take_egress(100), Err(Duration::from_millis(100)));
        assert_eq!(quota.take_egress(100), Err(Duration::from_millis(100)));
        assert_eq!(quota.metrics.throttled_time(Resource::EgressBandwidth), Duration::from_millis(100));
    }

    #[test]
    fn live_limit_change_applies() {
        let clock = Arc::new(ManualClock::new());
        let quota = TenantQuota::new(limits(), clock.clone());
        quota.take_ingress(1000).unwrap();
        assert!(quota.take_ingress(500).is_err());

        let mut raised = limits();
        raised.ingress_bytes_per_sec = 10_000;
        quota.set_limits(raised);
        clock.advance(Duration::from_millis(50));
        assert_eq!(quota.take_ingress(500), Ok(()));
    }

    #[test]
    fn rest_requests_are_rejected_after_the_burst() {
        let clock = Arc::new(ManualClock::new());
        let mut small = limits();
        small.rest_requests_per_sec = 4;
        let quota = TenantQuota::new(small, clock.clone());

        for _ in 0..4 {
            assert_eq!(quota.take_rest_request(), Ok(()));
        }
        let err = quota.take_rest_request().unwrap_err();
        assert_eq!(err.resource, Resource::RestRequests);
        assert_eq!(err.retry_after, Duration::from_millis(250));
        assert_eq!(quota.metrics.rejections(crate::metrics::RejectReason::RateLimited), 1);
        assert_eq!(quota.metrics.throttled_time(Resource::RestRequests), Duration::from_millis(250));

        clock.advance(Duration::from_millis(250));
        assert_eq!(quota.take_rest_request(), Ok(()));
        clock.advance(Duration::from_secs(1));
        assert_eq!(quota.metrics.rest_request_rate(clock.now()), 5);
    }

    #[test]
    fn raised_rest_rate_refills_at_once() {
        let clock = Arc::new(ManualClock::new());
        let mut small = limits();
        small.rest_requests_per_sec = 1;
        let quota = TenantQuota::new(small.clone(), clock.clone());
        quota.take_rest_request().unwrap();
        assert!(quota.take_rest_request().is_err());

        let mut raised = small.clone();
        raised.rest_requests_per_sec = 100;
        quota.set_limits(raised.clone());
        for _ in 0..100 {
            assert_eq!(quota.take_rest_request(), Ok(()));
        }
        assert!(quota.take_rest_request().is_err());

        // Setting the same rate again does not refill the bucket.
        quota.set_limits(raised);
        assert!(quota.take_rest_request().is_err());
    }

    #[test]
    fn cpu_cap_holds_tenant_until_debt_is_paid() {
        let clock = Arc::new(ManualClock::new());
        let quota = TenantQuota::new(limits(), clock.clone());

        // 100 millicores: the 1 ms burst and 10 ms of debt, refilled in 100 ms.
        quota.charge_cpu(Duration::from_millis(11));
        assert_eq!(quota.check_cpu(), Err(Duration::from_millis(100) + Duration::from_nanos(10)));
        assert_eq!(quota.metrics.throttled_time(Resource::Cpu), Duration::from_millis(100) + Duration::from_nanos(10));

        clock.advance(Duration::from_millis(101));
        assert_eq!(quota.check_cpu(), Ok(()));
    }
}
