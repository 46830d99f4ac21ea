//! The files in `deploy/` are valid: `promtool` accepts the alert rules, their unit tests
//! pass, the scrape configuration parses, and every metric the Grafana dashboard queries is
//! one that a running server exports.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use common::*;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(deploy_dir().join("prometheus"))
        .output()
        .expect("promtool is installed (Debian package prometheus; `make test` installs it)");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_rules_and_config() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}

#[tokio::test]
async fn dashboard_queries_exported_metrics() -> TestResult {
    let dashboard = std::fs::read_to_string(deploy_dir().join("grafana/bulkhead-quotas.json"))?;
    let _: serde_json::Value = serde_json::from_str(&dashboard)?;

    // Metric names in the dashboard's queries, without the histogram suffixes.
    let mut names = BTreeSet::new();
    for (start, _) in dashboard.match_indices("bulkhead_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name != "bulkhead_" && !name.starts_with("bulkhead_quotas") {
            names.insert(name);
        }
    }
    assert!(names.len() >= 8, "dashboard queries: {names:?}");

    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    create_tenant(&server, "acme", &["alice"]).await;
    let exported = admin(&server).metrics_text().await?;
    for name in names {
        let sample_prefix = format!("{name}{{");
        assert!(exported.contains(&sample_prefix), "the dashboard queries {name}, which the server does not export");
    }
    Ok(())
}
