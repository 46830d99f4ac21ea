//! The hard CPU cap of a tenant: `cpu_millicores` thousandths of one core per one-second
//! window of wall time. CPU used beyond the window's budget is carried into the next
//! windows as debt, so one long handler run cannot get free CPU by crossing a window edge.

use std::time::Duration;

/// Length of a CPU accounting window. One second matches the unit of `cpu_millicores`
/// and keeps a throttled tenant's pause short; it may be tuned.
pub const CPU_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct CpuBudget {
    budget_per_window: Duration,
    window_start: Duration,
    used: Duration,
}

impl CpuBudget {
    pub fn new(cpu_millicores: u64, now: Duration) -> Self {
        CpuBudget {
            budget_per_window: budget(cpu_millicores),
            window_start: window_start(now),
            used: Duration::ZERO,
        }
    }

    pub fn set_millicores(&mut self, cpu_millicores: u64) {
        self.budget_per_window = budget(cpu_millicores);
    }

    /// Adds CPU time used by the tenant.
    pub fn charge(&mut self, cpu: Duration, now: Duration) {
        self.roll(now);
        self.used += cpu;
    }

    /// `Ok` while the tenant may run; otherwise how long until the window that has budget.
    pub fn check(&mut self, now: Duration) -> Result<(), Duration> {
        self.roll(now);
        if self.used < self.budget_per_window {
            return Ok(());
        }
        // Debt beyond this window is paid by whole windows of budget.
        let windows_owed = (self.used - self.budget_per_window).as_nanos() / self.budget_per_window.as_nanos().max(1);
        let resume_at = self.window_start + CPU_WINDOW * (windows_owed as u32 + 1);
        Err(resume_at - now)
    }

    /// CPU used in the current window, for the usage gauge.
    pub fn used_in_window(&mut self, now: Duration) -> Duration {
        self.roll(now);
        self.used
    }

    fn roll(&mut self, now: Duration) {
        let current = window_start(now);
        if current <= self.window_start {
            return;
        }
        let windows = ((current - self.window_start).as_nanos() / CPU_WINDOW.as_nanos()) as u32;
        self.used = self.used.saturating_sub(self.budget_per_window * windows);
        self.window_start = current;
    }
}

fn budget(cpu_millicores: u64) -> Duration {
    CPU_WINDOW * cpu_millicores.max(1) as u32 / 1000
}

fn window_start(now: Duration) -> Duration {
    let index = now.as_nanos() / CPU_WINDOW.as_nanos();
    CPU_WINDOW * index as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn budget_resets_each_window() {
        let mut cpu = CpuBudget::new(200, Duration::ZERO);
        cpu.charge(150 * MS, 10 * MS);
        assert_eq!(cpu.check(20 * MS), Ok(()));
        cpu.charge(50 * MS, 30 * MS);
        assert_eq!(cpu.check(400 * MS), Err(600 * MS));
        assert_eq!(cpu.check(1000 * MS), Ok(()));
    }

    #[test]
    fn debt_carries_into_later_windows() {
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        // 350 ms in one run: 100 ms of this window and 250 ms of debt, i.e. 2.5 more windows.
        cpu.charge(350 * MS, 0 * MS);
        assert_eq!(cpu.check(500 * MS), Err(2500 * MS));
        assert!(cpu.check(2999 * MS).is_err());
        assert_eq!(cpu.check(3000 * MS), Ok(()));
        assert_eq!(cpu.used_in_window(3000 * MS), 50 * MS);
    }

    #[test]
    fn live_change_applies_to_current_window() {
        let mut cpu = CpuBudget::new(100, Duration::ZERO);
        cpu.charge(100 * MS, 0 * MS);
        assert!(cpu.check(1 * MS).is_err());
        cpu.set_millicores(500);
        assert_eq!(cpu.check(1 * MS), Ok(()));
    }
}
