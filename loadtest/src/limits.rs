//! Process limits and memory figures from the operating system: the open-file limit
//! (`RLIMIT_NOFILE`) that many connections need, and a process's resident memory.

/// Open-file soft and hard limits of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OpenFileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Returns this process's open-file limits.
pub fn open_file_limit() -> Result<OpenFileLimit, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only to the rlimit struct it is given, which lives on the stack.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!("failed to read the open-file limit: {error}"));
    }
    Ok(OpenFileLimit {
        soft: limit.rlim_cur as u64,
        hard: limit.rlim_max as u64,
    })
}

/// Raises this process's open-file soft limit to at least `needed`, and the hard limit too
/// when it is lower, which only a privileged process may do. Child processes started later
/// inherit the new limits. Returns the limits in force afterwards.
pub fn raise_open_file_limit(needed: u64) -> Result<OpenFileLimit, String> {
    let current = open_file_limit()?;
    if current.soft >= needed {
        return Ok(current);
    }
    let wanted = OpenFileLimit {
        soft: needed,
        hard: current.hard.max(needed),
    };
    let limit = libc::rlimit {
        rlim_cur: wanted.soft as libc::rlim_t,
        rlim_max: wanted.hard as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the rlimit struct it is given.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "failed to raise the open-file limit from {} (hard {}) to {needed}: {error}; \
             raise it with `ulimit -n {needed}` as a user allowed to",
            current.soft, current.hard
        ));
    }
    tracing::info!(
        from = current.soft,
        to = wanted.soft,
        hard = wanted.hard,
        "raised the open-file limit"
    );
    open_file_limit()
}

/// Returns the open-file soft limit of process `pid` from `/proc/<pid>/limits`.
pub fn open_file_limit_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_open_files_line(&text)
}

fn parse_open_files_line(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// Returns the resident memory of process `pid` (`VmRSS` in `/proc/<pid>/status`) in bytes;
/// this process when `pid` is `None`.
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    parse_vm_rss(&text)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line.trim_start_matches("VmRSS:").split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tbulkhead\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t5\n";

        assert_eq!(parse_vm_rss(status), Some(51234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn open_files_line_gives_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             95012                95012                processes\n\
                      Max open files            20000                40000                files\n";

        assert_eq!(parse_open_files_line(limits), Some(20000));
    }

    #[test]
    fn own_process_figures_are_readable() {
        assert!(resident_bytes(None).is_some_and(|bytes| bytes > 0));
        let limit = open_file_limit().unwrap();
        assert!(limit.soft <= limit.hard);
        assert_eq!(open_file_limit_of(std::process::id()), Some(limit.soft));
    }

    #[test]
    fn raising_to_current_limit_changes_nothing() {
        let before = open_file_limit().unwrap();

        let after = raise_open_file_limit(before.soft).unwrap();

        assert_eq!(after, before);
    }
}
