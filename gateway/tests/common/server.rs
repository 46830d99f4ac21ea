//! A real `bulkhead` process on 127.0.0.1 with a port picked by the OS.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// How long a test waits for the server to start or stop before it fails.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts the server on `data_dir` with the fixed admin token of the tests.
    pub fn start(data_dir: &Path) -> TestServer {
        TestServer::start_with_env(data_dir, &[])
    }

    /// Starts the server with extra environment variables (e.g. `FAILPOINTS`).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("BULKHEAD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .env_remove("BULKHEAD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("failed to start the bulkhead binary");

        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let log_writer = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                log_writer.lock().unwrap().push(line);
            }
        });

        let addr = match addr_rx.recv_timeout(PROCESS_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not report its address; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        TestServer {
            child: Some(child),
            addr,
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and asserts that the server exits with status 0 after closing its
    /// database, showing its log if not.
    pub fn terminate_cleanly(&mut self) {
        let status = self.terminate();
        let log = self.log();
        assert!(status.success(), "server exited with {status} after SIGTERM; log:\n{log}");
        assert!(
            !log.contains("database still referenced at exit"),
            "server exited without closing its database; log:\n{log}"
        );
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid this test spawned and still owns; no memory is shared.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "failed to send SIGTERM");

        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit after SIGTERM; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the bound address from the server's "listening on ADDR" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token = rest.split_whitespace().next()?;
    token.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()
}
