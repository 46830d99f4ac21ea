//! CPU time of a server process per thread, read from `/proc/<pid>/task/*/stat`, for the
//! report's "where did the server spend its CPU" figures where `perf` is not available.

use std::collections::BTreeMap;

/// CPU time (user + system) per thread name, in seconds. Threads with the same name (such
/// as the workers of a pool) are added up.
#[derive(Debug, Clone, Default)]
pub struct ThreadCpu(pub BTreeMap<String, f64>);

impl ThreadCpu {
    /// Reads the current counters of `pid`. Returns an empty sample when the process is gone
    /// or `/proc` is not readable.
    pub fn sample(pid: u32) -> ThreadCpu {
        let mut by_name = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return ThreadCpu(by_name);
        };
        let ticks_per_sec = clock_ticks_per_sec();
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = parse_stat(&stat) {
                *by_name.entry(name).or_insert(0.0) += ticks as f64 / ticks_per_sec;
            }
        }
        ThreadCpu(by_name)
    }

    /// Returns the CPU seconds spent per thread name between `earlier` and `self`. Threads
    /// that ended in between are missing from `self` and so left out.
    pub fn since(&self, earlier: &ThreadCpu) -> ThreadCpu {
        let delta = self
            .0
            .iter()
            .map(|(name, seconds)| {
                let before = earlier.0.get(name).copied().unwrap_or(0.0);
                (name.clone(), (seconds - before).max(0.0))
            })
            .collect();
        ThreadCpu(delta)
    }

    pub fn total_seconds(&self) -> f64 {
        self.0.values().sum()
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Parses the thread name and its utime + stime ticks from a `stat` line. The name is in
/// brackets and may itself contain spaces and brackets, so the fields are counted from the
/// last `)`.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), utime is field 14 and stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_name() {
        let line = "4242 (actix-rt|system:0) S 1 4242 4242 0 -1 4194624 500 0 0 0 120 30 0 0 20 0 9 0 1000 0 0";

        let parsed = parse_stat(line);

        assert_eq!(parsed, Some(("actix-rt|system:0".to_string(), 150)));
    }

    #[test]
    fn own_process_has_threads() {
        let sample = ThreadCpu::sample(std::process::id());

        assert!(!sample.0.is_empty());
    }
}
