//! Samples taken at the edges of the measurement windows: the server's tenant metrics from
//! `GET /metrics`, and the CPU time of this process and of the server from `/proc`.

use bulkhead_client::RestClient;
use tokio::time::Instant;

/// One Prometheus sample: a series name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of one scrape of `GET /metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    series: Vec<Series>,
}

impl Metrics {
    /// Parses the Prometheus text format. Comment lines and lines that do not parse are
    /// skipped. Label values with escaped quotes are not supported, which the tenant series
    /// never need because tenant ids are `[a-z0-9-]`.
    pub fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Metrics { series }
    }

    /// Value of the series `name` of `tenant` whose other labels include `label` (as
    /// `(name, value)`), or `None` when the scrape has no such series.
    pub fn tenant_value(
        &self,
        name: &str,
        tenant: &str,
        label: Option<(&str, &str)>,
    ) -> Option<f64> {
        let has = |series: &Series, key: &str, value: &str| {
            series.labels.iter().any(|(k, v)| k == key && v == value)
        };
        self.series
            .iter()
            .find(|s| {
                s.name == name
                    && has(s, "tenant", tenant)
                    && label.is_none_or(|(key, value)| has(s, key, value))
            })
            .map(|s| s.value)
    }

    /// Values of the series `name` of `tenant` by the value of `label_name`, such as the
    /// throttled seconds by `resource`.
    pub fn tenant_values_by(
        &self,
        name: &str,
        tenant: &str,
        label_name: &str,
    ) -> Vec<(String, f64)> {
        self.series
            .iter()
            .filter(|s| {
                s.name == name && s.labels.iter().any(|(k, v)| k == "tenant" && v == tenant)
            })
            .filter_map(|s| {
                let (_, value) = s.labels.iter().find(|(k, _)| k == label_name)?;
                Some((value.clone(), s.value))
            })
            .collect()
    }
}

fn parse_line(line: &str) -> Option<Series> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (head, Vec::new()),
    };
    Some(Series {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"` into pairs.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after_key) = rest.split_once("=\"")?;
        let (value, after_value) = after_key.split_once('"')?;
        labels.push((key.trim().to_string(), value.to_string()));
        rest = after_value.strip_prefix(',').unwrap_or(after_value);
    }
    Some(labels)
}

/// CPU time (user plus system) of a process in seconds, from `/proc/<pid>/stat`; this
/// process when `pid` is `None`. Returns `None` when the file cannot be read, as on systems
/// without `/proc`.
pub fn process_cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let ticks = cpu_ticks_from_stat(&text)?;
    // SAFETY: sysconf has no memory effects and _SC_CLK_TCK is a valid name.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_sec <= 0 {
        return None;
    }
    Some(ticks as f64 / ticks_per_sec as f64)
}

/// Sum of `utime` and `stime` (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks.
/// Fields are counted after the command name, which is in parentheses and may contain
/// spaces.
fn cpu_ticks_from_stat(text: &str) -> Option<u64> {
    let (_, after_name) = text.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field 14 is `fields[11]`.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time that all processes of the machine used, in seconds: every column of the `cpu`
/// line of `/proc/stat` except `idle` and `iowait`. Returns `None` when the file cannot be
/// read.
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = busy_ticks_from_proc_stat(&text)?;
    // SAFETY: sysconf has no memory effects and _SC_CLK_TCK is a valid name.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_sec <= 0 {
        return None;
    }
    Some(ticks as f64 / ticks_per_sec as f64)
}

/// Busy ticks of the `cpu` line: user, nice, system, irq, softirq and steal. `guest` and
/// `guest_nice` are left out because `user` and `nice` already contain them.
fn busy_ticks_from_proc_stat(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let column = |index: usize| values.get(index).copied().unwrap_or(0);
    // Columns: user nice system idle iowait irq softirq steal guest guest_nice.
    Some(column(0) + column(1) + column(2) + column(5) + column(6) + column(7))
}

/// Metrics and CPU times at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `None` when the scrape failed, which is logged.
    pub metrics: Option<Metrics>,
    pub client_cpu_secs: Option<f64>,
    pub server_cpu_secs: Option<f64>,
    pub machine_busy_secs: Option<f64>,
}

/// Reads the CPU times and scrapes `GET /metrics`.
pub async fn take_sample(rest: &RestClient, server_pid: Option<u32>) -> Sample {
    let at = Instant::now();
    let client_cpu_secs = process_cpu_seconds(None);
    let server_cpu_secs = server_pid.and_then(|pid| process_cpu_seconds(Some(pid)));
    let machine_busy_secs = machine_busy_seconds();
    let metrics = match rest.metrics_text().await {
        Ok(text) => Some(Metrics::parse(&text)),
        Err(error) => {
            tracing::warn!(%error, "failed to scrape GET /metrics; the figures from it are missing");
            None
        }
    };
    Sample {
        at,
        metrics,
        client_cpu_secs,
        server_cpu_secs,
        machine_busy_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# HELP bulkhead_tenant_cpu_seconds_total Engine CPU time spent on a tenant's work.
# TYPE bulkhead_tenant_cpu_seconds_total counter
bulkhead_tenant_cpu_seconds_total{tenant=\"quiet-a\"} 0.25
bulkhead_tenant_cpu_seconds_total{tenant=\"noisy-b\"} 1.5
bulkhead_tenant_throttled_seconds_total{tenant=\"noisy-b\",resource=\"cpu\"} 3
bulkhead_tenant_throttled_seconds_total{tenant=\"noisy-b\",resource=\"ingress_bandwidth\"} 0.5
bulkhead_actor_restarts_total 0
";

    #[test]
    fn tenant_value_is_found_by_labels() {
        let metrics = Metrics::parse(SCRAPE);

        let cpu = metrics.tenant_value("bulkhead_tenant_cpu_seconds_total", "noisy-b", None);
        let throttled = metrics.tenant_value(
            "bulkhead_tenant_throttled_seconds_total",
            "noisy-b",
            Some(("resource", "cpu")),
        );

        assert_eq!(cpu, Some(1.5));
        assert_eq!(throttled, Some(3.0));
    }

    #[test]
    fn missing_series_is_none() {
        let metrics = Metrics::parse(SCRAPE);

        assert_eq!(
            metrics.tenant_value("bulkhead_tenant_cpu_seconds_total", "other", None),
            None
        );
    }

    #[test]
    fn values_are_grouped_by_label() {
        let metrics = Metrics::parse(SCRAPE);

        let throttled = metrics.tenant_values_by(
            "bulkhead_tenant_throttled_seconds_total",
            "noisy-b",
            "resource",
        );

        assert_eq!(
            throttled,
            vec![
                ("cpu".to_string(), 3.0),
                ("ingress_bandwidth".to_string(), 0.5)
            ]
        );
    }

    #[test]
    fn unlabelled_series_parses() {
        let metrics = Metrics::parse(SCRAPE);

        assert!(metrics
            .series
            .iter()
            .any(|s| s.name == "bulkhead_actor_restarts_total"
                && s.labels.is_empty()
                && s.value == 0.0));
    }

    #[test]
    fn stat_ticks_skip_command_name() {
        let stat = "1234 (tokio (worker) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 100 1000000 500";

        assert_eq!(cpu_ticks_from_stat(stat), Some(300));
    }

    #[test]
    fn proc_stat_busy_leaves_out_idle() {
        let stat = "cpu  100 20 30 5000 40 1 2 3 7 0\ncpu0 50 10 15 2500 20 0 1 1 0 0\n";

        assert_eq!(busy_ticks_from_proc_stat(stat), Some(156));
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(process_cpu_seconds(None).is_some());
    }
}
