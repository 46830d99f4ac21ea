//! `bulkhead audit verify` walks a stopped server's audit chains offline: "ok" on an intact
//! log, and the seq of the first changed entry, with exit code 1, once a stored entry's bytes
//! are changed in RocksDB.

mod common;

use std::{path::Path, process::Command};

use bulkhead_client::proto::{CreateApiKeyRequest, KeyRole};
use common::*;
use rocksdb::{Options, DB};

/// Runs `bulkhead audit verify` and returns its exit code and standard output.
fn verify(data_dir: &Path, tenant: Option<&str>) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    command.args(["audit", "verify", "--data-dir"]).arg(data_dir);
    if let Some(tenant) = tenant {
        command.args(["--tenant", tenant]);
    }
    let output = command.env_remove("BULKHEAD_DATA_DIR").output().expect("run bulkhead audit verify");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

/// Replaces the first occurrence of `from` with `to` (same length) in the value at `key`.
fn tamper(db_path: &Path, cf: &str, key: &[u8], from: &[u8], to: &[u8]) {
    let names = DB::list_cf(&Options::default(), db_path).expect("list column families");
    let db = DB::open_cf(&Options::default(), db_path, &names).expect("open the stopped server's database");
    let handle = db.cf_handle(cf).expect("column family exists");
    let mut value = db.get_cf(&handle, key).expect("read entry").expect("entry exists");
    let at = value.windows(from.len()).position(|w| w == from).expect("entry contains the text");
    value[at..at + to.len()].copy_from_slice(to);
    db.put_cf(&handle, key, &value).expect("write tampered entry");
}

fn entry_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    [prefix, &seq.to_be_bytes()].concat()
}

#[tokio::test]
async fn verify_names_the_changed_entry() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let acme = create_tenant(&server, "acme", &["alice", "bob", "carol"]).await;
    create_tenant(&server, "globex", &[]).await;
    let key = acme
        .rest
        .create_api_key("acme", &CreateApiKeyRequest { role: KeyRole::Service, name: None })
        .await?;
    acme.rest.delete_user("acme", "bob").await?;
    acme.rest.delete_user("acme", "carol").await?;
    acme.rest.delete_api_key("acme", &key.id).await?;
    server.terminate_cleanly();

    let (code, output) = verify(dir.path(), Some("acme"));
    assert_eq!(code, 0, "{output}");
    assert!(output.starts_with("ok: audit log of tenant acme, 4 entries"), "{output}");
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("2 entries"), "{output}");
    let (code, output) = verify(dir.path(), Some("nobody"));
    assert_eq!(code, 2, "{output}");

    // Entry 2 of acme's log records the deletion of bob; rename him in place.
    let db_path = dir.path().join("db");
    tamper(&db_path, "t.acme", &entry_key(b"a", 2), b"bob", b"bib");
    let (code, output) = verify(dir.path(), Some("acme"));
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("first broken entry seq 2"), "{output}");

    // The newest platform entry (the creation of globex) has no successor; the head record
    // catches a change to it.
    tamper(&db_path, "sys", &entry_key(b"a/", 2), b"globex", b"globey");
    let (code, output) = verify(dir.path(), None);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("first broken entry seq 2"), "{output}");
    Ok(())
}
