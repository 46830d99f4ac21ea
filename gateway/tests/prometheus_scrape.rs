//! A real Prometheus server scrapes bulkhead on loopback and finds every tenant quota series.

mod common;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bulkhead_client::{Method, RestClient};
use common::*;

/// How long the test waits for Prometheus to start and complete a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(60);

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

#[tokio::test]
async fn prometheus_finds_quota_series() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(&dir.path().join("bulkhead"));
    create_tenant(&server, "acme", &["alice"]).await;

    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bulkhead\n    static_configs:\n      - targets: [\"{}\"]\n",
            server.addr
        ),
    )?;
    let port = free_port();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (Debian package prometheus; `make test` installs it)");
    let _prometheus = KillOnDrop(prometheus);

    let api = RestClient::new(format!("http://127.0.0.1:{port}"), "");
    let query = "/api/v1/query?query=bulkhead_tenant_quota%7Btenant%3D%22acme%22%7D";
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    let resources = loop {
        if let Ok((200, body)) = api.request(Method::GET, query, None, &[]).await {
            let results = body["data"]["result"].as_array().cloned().unwrap_or_default();
            if !results.is_empty() {
                break results;
            }
        }
        assert!(Instant::now() < deadline, "Prometheus found no quota series within {SCRAPE_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut found: Vec<String> = resources
        .iter()
        .map(|r| r["metric"]["resource"].as_str().unwrap_or_default().to_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["connections", "cpu", "egress_bandwidth", "ingress_bandwidth", "memory", "rest_requests", "storage"]
    );
    Ok(())
}
