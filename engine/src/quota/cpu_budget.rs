//! The hard CPU cap of a tenant: `cpu_millicores` thousandths of one core, as a token bucket
//! of CPU time.
//!
//! The balance fills at the quota's rate (100 millicores add 100 µs of CPU per millisecond of
//! wall time) up to a small burst, and every measured handler run is subtracted from it. A run
//! may take the balance below zero. The tenant runs again only once that debt is paid at the
//! quota's rate, so one long run cannot get free CPU.
//!
//! A bucket rather than fixed one-second windows: a saturated tenant is released in slices of
//! a few microseconds spread evenly over time, instead of spending a whole second's budget at
//! the start of each window, which is when other tenants' messages would queue behind it.

use std::time::Duration;

/// How much wall time of quota an idle tenant may save up and spend at once: 1 ms of CPU at
/// 100 millicores. With it, any one second contains at most 1.01 seconds of quota. The burst
/// is what a capped tenant may run at once after a pause, so it adds to the latency of other
/// tenants on the same threads; a tenant that needs longer runs needs a larger quota, not a
/// larger burst. It may be tuned.
pub const CPU_BURST: Duration = Duration::from_millis(10);

/// Length of the window for the usage gauge: CPU used in the current second.
const USAGE_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct CpuBudget {
    cpu_millicores: u64,
    /// CPU time the tenant may still use, in nanoseconds; negative while it owes.
    balance_nanos: i128,
    updated: Duration,
    usage: UsageWindow,
}

impl CpuBudget {
    /// A full bucket: a new tenant may use its burst at once.
    pub fn new(cpu_millicores: u64, now: Duration) -> Self {
        let cpu_millicores = cpu_millicores.max(1);
        CpuBudget {
            cpu_millicores,
            balance_nanos: burst_nanos(cpu_millicores),
            updated: now,
            usage: UsageWindow::new(now),
        }
    }

    /// Changes the rate at once; the balance keeps what it has up to the new burst.
    pub fn set_millicores(&mut self, cpu_millicores: u64, now: Duration) {
        self.refill(now);
        self.cpu_millicores = cpu_millicores.max(1);
        self.balance_nanos = self.balance_nanos.min(burst_nanos(self.cpu_millicores));
    }

    /// Subtracts CPU time used by the tenant.
    pub fn charge(&mut self, cpu: Duration, now: Duration) {
        self.refill(now);
        self.balance_nanos -= cpu.as_nanos() as i128;
        self.usage.add(cpu, now);
    }

    /// `Ok` while the tenant may run; otherwise how long until its balance is above zero.
    pub fn check(&mut self, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        if self.balance_nanos > 0 {
            return Ok(());
        }
        // Wall time that refills the debt plus one nanosecond of CPU, rounded up.
        let owed = (-self.balance_nanos + 1) as u128;
        let millicores = self.cpu_millicores as u128;
        let wait_nanos = (owed * 1000).div_ceil(millicores);
        Err(Duration::from_nanos(wait_nanos.min(u64::MAX as u128) as u64))
    }

    /// CPU used in the current one-second window, for the usage gauge.
    pub fn used_in_window(&mut self, now: Duration) -> Duration {
        self.usage.roll(now);
        self.usage.used
    }

    fn refill(&mut self, now: Duration) {
        let Some(elapsed) = now.checked_sub(self.updated) else {
            return;
        };
        self.updated = now;
        let earned = elapsed.as_nanos() as i128 * self.cpu_millicores as i128 / 1000;
        self.balance_nanos = (self.balance_nanos + earned).min(burst_nanos(self.cpu_millicores));
    }
}

fn burst_nanos(cpu_millicores: u64) -> i128 {
    CPU_BURST.as_nanos() as i128 * cpu_millicores as i128 / 1000
}

/// CPU time charged in the current one-second window of wall time.
#[derive(Debug, Clone)]
struct UsageWindow {
    start: Duration,
    used: Duration,
}

impl UsageWindow {
    fn new(now: Duration) -> Self {
        UsageWindow {
            start: window_start(now),
            used: Duration::ZERO,
        }
    }

    fn add(&mut self, cpu: Duration, now: Duration) {
        self.roll(now);
        self.used += cpu;
    }

    fn roll(&mut self, now: Duration) {
        let current = window_start(now);
        if current > self.start {
            self.start = current;
            self.used = Duration::ZERO;
        }
    }
}

fn window_start(now: Duration) -> Duration {
    let index = now.as_nanos() / USAGE_WINDOW.as_nanos();
    USAGE_WINDOW * index as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    #[test]
    fn new_tenant_may_spend_its_burst_at_once() {
        // 100 millicores: a burst of 1 ms of CPU.
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        cpu.charge(800 * US, Duration::ZERO);
        assert_eq!(cpu.check(Duration::ZERO), Ok(()));
        cpu.charge(200 * US, Duration::ZERO);
        // The balance is exactly zero: one more nanosecond of CPU takes 10 ns of wall time.
        assert_eq!(cpu.check(Duration::ZERO), Err(Duration::from_nanos(10)));
    }

    #[test]
    fn debt_is_paid_at_the_quota_rate() {
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        // 11 ms in one run: the 1 ms burst and 10 ms of debt, which takes 100 ms to refill.
        cpu.charge(11 * MS, Duration::ZERO);
        assert_eq!(cpu.check(Duration::ZERO), Err(100 * MS + Duration::from_nanos(10)));
        assert!(cpu.check(100 * MS).is_err());
        assert_eq!(cpu.check(101 * MS), Ok(()));
    }

    #[test]
    fn idle_time_saves_no_more_than_the_burst() {
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        cpu.charge(1 * MS, Duration::ZERO);
        // Ten idle seconds refill 1 s of CPU, but the bucket keeps at most 1 ms.
        cpu.charge(1 * MS, 10_000 * MS);
        assert!(cpu.check(10_000 * MS).is_err());
    }

    #[test]
    fn saturated_tenant_gets_its_quota_and_no_more() {
        // A tenant that always has work runs 50 µs jobs whenever it may, for ten seconds,
        // polled every 10 µs. It gets 1 s of CPU at 100 millicores, plus its burst and one job.
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut used = Duration::ZERO;
        while now < 10_000 * MS {
            if cpu.check(now).is_ok() {
                cpu.charge(50 * US, now);
                used += 50 * US;
            }
            now += 10 * US;
        }
        assert!(used >= 1000 * MS, "used {used:?}");
        assert!(used <= 1000 * MS + 1 * MS + 50 * US, "used {used:?}");
    }

    #[test]
    fn throttled_tenant_runs_in_short_slices() {
        // Once the burst is spent, the wait is the time the last job's debt takes to refill
        // at the quota's rate, not a whole window.
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        cpu.charge(1 * MS, Duration::ZERO);
        cpu.charge(50 * US, Duration::ZERO);
        let wait = cpu.check(Duration::ZERO).unwrap_err();
        assert_eq!(wait, 500 * US + Duration::from_nanos(10));
    }

    #[test]
    fn live_change_applies_at_once() {
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        cpu.charge(11 * MS, Duration::ZERO);
        assert!(cpu.check(1 * MS).is_err());
        // At 1000 millicores the 10 ms of debt (less the 0.1 ms earned) refills in 9.9 ms.
        cpu.set_millicores(1000, 1 * MS);
        assert!(cpu.check(10 * MS).is_err());
        assert_eq!(cpu.check(11 * MS), Ok(()));
    }

    #[test]
    fn usage_counts_the_current_second() {
        let mut cpu = CpuBudget::new(1000, Duration::ZERO);
        cpu.charge(30 * MS, 100 * MS);
        cpu.charge(20 * MS, 900 * MS);
        assert_eq!(cpu.used_in_window(999 * MS), 50 * MS);
        assert_eq!(cpu.used_in_window(1000 * MS), Duration::ZERO);
    }
}
