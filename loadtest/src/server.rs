//! A bulkhead server started for one run: listening on 127.0.0.1 on a free port, with a
//! fresh temporary data directory and a random platform admin token, stopped with SIGTERM at
//! the end.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use clap::ValueEnum;
use std::io::Write;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

/// Time for the server to open its database and log its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Time to wait for the server to exit after SIGTERM before killing it. The server itself
/// gives its sessions 10 s to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Server log lines at WARN or ERROR that are copied to this tool's stderr. Later ones are
/// only counted.
const MAX_ECHOED_LINES: u64 = 20;

/// Startup lines kept for the error message when the server exits before it listens.
const KEPT_STARTUP_LINES: usize = 20;

/// The server's `--durability` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// An acked send has been synced to the write-ahead log.
    Fsync,
    /// An acked send has been written to the write-ahead log but not synced.
    Wal,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Wal => "wal",
        }
    }
}

/// Counts of the server's log lines by level.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSummary {
    pub warnings: u64,
    pub errors: u64,
}

pub struct SpawnedServer {
    child: Child,
    addr: SocketAddr,
    admin_token: String,
    log_task: JoinHandle<LogSummary>,
    /// Deleted when the server is dropped, after the process has exited.
    _data_dir: tempfile::TempDir,
}

impl SpawnedServer {
    /// Starts `binary serve` and waits until it logs the address it listens on.
    ///
    /// The server runs in its own process group, so a Ctrl-C in the terminal reaches only
    /// this tool, which then stops the server itself. With `log_file`, every line the server
    /// writes to stderr is saved there.
    pub async fn start(
        binary: &Path,
        durability: Durability,
        log_file: Option<&Path>,
    ) -> Result<SpawnedServer, String> {
        let data_dir = tempfile::Builder::new()
            .prefix("bulkhead-loadtest-")
            .tempdir()
            .map_err(|e| format!("failed to create a temporary data directory: {e}"))?;
        let admin_token = format!("{:032x}", rand::random::<u128>());

        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--durability", durability.as_str()])
            .args(["--log-format", "text"])
            // A config file named in the environment would override the defaults that this
            // tool reports, so the server runs on its built-in defaults and the flags above.
            .env_remove("BULKHEAD_CONFIG")
            .env("BULKHEAD_ADMIN_TOKEN", &admin_token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("failed to start {}: {e}", binary.display()))?;
        tracing::info!(
            pid = child.id(),
            binary = %binary.display(),
            durability = durability.as_str(),
            data_dir = %data_dir.path().display(),
            "server started"
        );

        let stderr = child.stderr.take().expect("stderr is piped");
        let mut log = ServerLog::open(stderr, log_file)?;

        let waiting = log.wait_for_address();
        let addr = match tokio::time::timeout(STARTUP_TIMEOUT, waiting).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(startup_lines)) => {
                let status = child.wait().await;
                return Err(format!(
                    "server exited ({}) before it logged its address; its last lines:\n{}",
                    describe_status(status),
                    startup_lines
                ));
            }
            Err(_) => {
                return Err(format!(
                    "server did not log its address within {} s",
                    STARTUP_TIMEOUT.as_secs()
                ))
            }
        };
        if addr.ip() != Ipv4Addr::LOCALHOST {
            return Err(format!("server listens on {addr}, expected 127.0.0.1"));
        }
        tracing::info!(%addr, "server is listening");

        Ok(SpawnedServer {
            child,
            addr,
            admin_token,
            log_task: tokio::spawn(log.copy_rest()),
            _data_dir: data_dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Process id of the server, or `None` once it has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM, waits for the server to exit (killing it after [`STOP_TIMEOUT`]) and
    /// deletes its data directory.
    pub async fn stop(mut self) -> LogSummary {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) has no memory effects. The pid is this tool's own child, which
            // has not been reaped yet, so the id cannot belong to another process.
            let result = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if result != 0 {
                let error = std::io::Error::last_os_error();
                tracing::warn!(pid, %error, "failed to send SIGTERM to the server");
            }
        }

        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => tracing::info!(status = %describe_status(status), "server stopped"),
            Err(_) => {
                tracing::warn!(
                    timeout_secs = STOP_TIMEOUT.as_secs(),
                    "server did not stop after SIGTERM; killing it"
                );
                if let Err(error) = self.child.kill().await {
                    tracing::warn!(%error, "failed to kill the server");
                }
            }
        }

        // The server's stderr closes when it exits, which ends the copy.
        match tokio::time::timeout(Duration::from_secs(5), self.log_task).await {
            Ok(Ok(summary)) => summary,
            _ => LogSummary::default(),
        }
    }
}

fn describe_status(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("exit status unknown: {error}"),
    }
}

/// The server's stderr, copied to an optional log file.
///
/// The file is written with blocking calls from an async task. That is acceptable because
/// the writes are buffered, small and go to the page cache.
struct ServerLog {
    lines: Lines<BufReader<ChildStderr>>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    file_path: Option<PathBuf>,
    summary: LogSummary,
}

impl ServerLog {
    fn open(stderr: ChildStderr, log_file: Option<&Path>) -> Result<ServerLog, String> {
        let file = match log_file {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .map_err(|e| format!("failed to create server log {}: {e}", path.display()))?;
                Some(std::io::BufWriter::new(file))
            }
            None => None,
        };
        Ok(ServerLog {
            lines: BufReader::new(stderr).lines(),
            file,
            file_path: log_file.map(Path::to_path_buf),
            summary: LogSummary::default(),
        })
    }

    /// Reads lines until one contains `listening on ADDR`. When stderr ends first, returns the
    /// last startup lines as the error.
    async fn wait_for_address(&mut self) -> Result<SocketAddr, String> {
        let mut last_lines: Vec<String> = Vec::new();
        while let Some(line) = self.next_line().await {
            if let Some(addr) = parse_listening_line(&line) {
                return Ok(addr);
            }
            if last_lines.len() == KEPT_STARTUP_LINES {
                last_lines.remove(0);
            }
            last_lines.push(line);
        }
        Err(last_lines.join("\n"))
    }

    /// Copies the remaining lines until the server closes stderr, echoing the first WARN and
    /// ERROR lines to this tool's stderr.
    async fn copy_rest(mut self) -> LogSummary {
        while let Some(line) = self.next_line().await {
            let is_error = line.contains(" ERROR ");
            let is_warning = line.contains(" WARN ");
            if is_error {
                self.summary.errors += 1;
            }
            if is_warning {
                self.summary.warnings += 1;
            }
            let echoed = self.summary.errors + self.summary.warnings;
            if (is_error || is_warning) && echoed <= MAX_ECHOED_LINES {
                eprintln!("server: {line}");
                if echoed == MAX_ECHOED_LINES {
                    eprintln!("server: further WARN and ERROR lines are only counted");
                }
            }
        }
        if let Some(file) = &mut self.file {
            if let Err(error) = file.flush() {
                self.report_write_error(&error);
            }
        }
        self.summary
    }

    async fn next_line(&mut self) -> Option<String> {
        let line = match self.lines.next_line().await {
            Ok(line) => line?,
            Err(error) => {
                tracing::warn!(%error, "failed to read the server's stderr");
                return None;
            }
        };
        if let Some(file) = &mut self.file {
            if let Err(error) = writeln!(file, "{line}") {
                self.report_write_error(&error);
                self.file = None;
            }
        }
        Some(line)
    }

    fn report_write_error(&self, error: &std::io::Error) {
        let path = self.file_path.as_deref().unwrap_or(Path::new(""));
        tracing::warn!(
            path = %path.display(),
            %error,
            "failed to write the server log; no longer saving it"
        );
    }
}

/// Extracts ADDR from a log line containing `listening on ADDR`.
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_with_fields() {
        let line = "2025-01-01T00:00:00.000Z  INFO bulkhead_gateway::server: listening on \
                    127.0.0.1:40123 addr=127.0.0.1:40123";

        let addr = parse_listening_line(line);

        assert_eq!(addr, Some("127.0.0.1:40123".parse().unwrap()));
    }

    #[test]
    fn listening_line_at_end() {
        let addr = parse_listening_line("listening on 127.0.0.1:8080");

        assert_eq!(addr, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn other_lines_have_no_address() {
        assert_eq!(parse_listening_line("database opened"), None);
        assert_eq!(parse_listening_line("listening on nothing"), None);
    }
}
