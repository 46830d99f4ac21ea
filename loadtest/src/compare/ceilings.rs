//! The reference ceilings: the `ceiling-ws` server (a WebSocket server that only responds)
//! and the `ceiling-rocksdb` writer, both built from the `bulkhead-benches` crate.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Time for the WebSocket server to bind and log its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `ceiling-ws` process, killed when dropped.
pub struct CeilingWs {
    child: Child,
    pub addr: std::net::SocketAddr,
}

impl CeilingWs {
    /// Starts `binary --listen 127.0.0.1:0` and waits for its `listening on ADDR` line.
    pub async fn start(binary: &Path) -> Result<CeilingWs, String> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("failed to start {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();

        let waiting = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on ").and_then(|rest| rest.trim().parse().ok()) {
                    return Some(addr);
                }
            }
            None
        };
        let addr = match tokio::time::timeout(STARTUP_TIMEOUT, waiting).await {
            Ok(Some(addr)) => addr,
            Ok(None) => return Err(format!("{} exited before it logged its address", binary.display())),
            Err(_) => return Err(format!("{} did not log its address within {STARTUP_TIMEOUT:?}", binary.display())),
        };
        Ok(CeilingWs { child, addr })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server with SIGTERM, and kills it if it has not exited after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) has no memory effects, and the pid is this tool's own unreaped
            // child, so it cannot name another process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            tracing::warn!("ceiling-ws did not stop after SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// The JSON line that `ceiling-rocksdb` prints.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct RocksDbOutcome {
    pub threads: u32,
    pub batch_values: u32,
    pub value_bytes: usize,
    pub sync: bool,
    pub writes: u64,
    pub values: u64,
    pub seconds: f64,
    pub values_per_sec: f64,
    pub write_p50_us: u64,
    pub write_p99_us: u64,
}

/// Runs `ceiling-rocksdb` to completion and parses its result.
pub async fn run_rocksdb(
    binary: &Path,
    threads: u32,
    batch_values: u32,
    value_bytes: usize,
    duration: Duration,
) -> Result<RocksDbOutcome, String> {
    let output = Command::new(binary)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--batch-values")
        .arg(batch_values.to_string())
        .arg("--value-bytes")
        .arg(value_bytes.to_string())
        .arg("--duration-secs")
        .arg(duration.as_secs().max(1).to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("failed to run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("failed to parse the output of {}: {e}: {stdout}", binary.display()))
}
