//! A plain export contains every user, conversation (with its members), message (with its seq,
//! sender, client_msg_id, body and edit or recall marker) and read marker of the tenant, in
//! the documented order, with continuous seqs and an `end` line whose counts match. The
//! export is recorded in the tenant's audit log, and in the platform log when the platform
//! admin asks for it.

mod common;

use bulkhead_client::proto::export::ExportRequest;
use common::{export::*, *};
use serde_json::{json, Value};

fn message<'a>(lines: &'a [Value], conv: &str, seq: u64) -> &'a Value {
    lines
        .iter()
        .find(|line| line["type"] == "message" && line["conv"] == conv && line["seq"] == seq)
        .unwrap_or_else(|| panic!("message {seq} of {conv} missing"))
}

/// Names a line by its type and, for conversation lines and their records, the conversation.
fn describe(line: &Value) -> String {
    let line_type = line["type"].as_str().expect("every line has a type");
    let conv = match line_type {
        "conversation" => line["id"].as_str(),
        "message" | "read_marker" => line["conv"].as_str(),
        _ => None,
    };
    match conv {
        Some(conv) => format!("{line_type} {conv}"),
        None => line_type.to_owned(),
    }
}

#[tokio::test]
async fn plain_export_holds_every_record() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let sample = populate(&server, "acme").await;

    let text = sample.tenant.rest.export_tenant("acme", &ExportRequest::default()).await?;
    let lines = lines(&text);

    let header = &lines[0];
    assert_eq!(header["type"], "header");
    assert_eq!(header["format"], 1);
    assert_eq!(header["tenant"], "acme");
    assert_eq!(header["masked"], false);
    assert!(header["exported_at_ms"].as_u64().is_some_and(|ms| ms > 0));

    let users: Vec<(&str, &str)> = of_type(&lines, "user")
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u["display_name"].as_str().unwrap()))
        .collect();
    assert_eq!(users, USERS.to_vec());

    let conversations = of_type(&lines, "conversation");
    assert_eq!(conversations.len(), 2);
    let direct = conversations[0];
    assert_eq!((direct["id"].as_str(), direct["kind"].as_str()), (Some("alice-bob"), Some("direct")));
    assert_eq!(direct["members"], json!(["alice.liddell", "bob.marley"]));
    let group = conversations[1];
    assert_eq!((group["id"].as_str(), group["kind"].as_str()), (Some("book-club"), Some("group")));
    assert_eq!(group["name"], "Carol's book club");
    assert_eq!(group["members"], json!(["alice.liddell", "bob.marley", "carol.danvers"]));

    // Messages and read markers follow their conversation's line.
    let order: Vec<String> = lines.iter().map(describe).collect();
    let expected_order = [
        "header", "user", "user", "user",
        "conversation alice-bob", "message alice-bob", "message alice-bob", "read_marker alice-bob",
        "conversation book-club", "message book-club", "message book-club", "message book-club",
        "message book-club", "read_marker book-club", "end",
    ];
    assert_eq!(order, expected_order);
    for (conv, count) in [("alice-bob", 2), ("book-club", 4)] {
        let seqs: Vec<u64> = of_type(&lines, "message")
            .iter()
            .filter(|m| m["conv"] == conv)
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=count).collect::<Vec<u64>>(), "seqs of {conv}");
    }

    let edited = message(&lines, "book-club", 1);
    assert_eq!(edited["from"], "alice.liddell");
    assert_eq!(edited["client_msg_id"], "g1");
    assert_eq!(edited["body"], json!({"text": BODY_STRINGS[3], "priority": 3}));
    assert_eq!(edited["edited"], sample.edited_at);
    assert!(edited.get("recalled").is_none());
    assert!(edited["ts"].as_u64().is_some_and(|ts| ts > 0 && ts <= sample.edited_at));

    let second = message(&lines, "book-club", 2);
    assert_eq!((second["from"].as_str(), second["client_msg_id"].as_str()), (Some("bob.marley"), Some("g2")));
    assert_eq!(second["body"]["tags"][1]["owner"], "alice.liddell");
    assert!(second.get("edited").is_none());

    let recalled = message(&lines, "alice-bob", 2);
    assert_eq!(recalled["body"], Value::Null);
    assert_eq!(recalled["recalled"], sample.recalled_at);
    assert!(!text.contains(BODY_STRINGS[5]), "a recalled body is not exported");

    let markers: Vec<(&str, &str, u64)> = of_type(&lines, "read_marker")
        .iter()
        .map(|m| (m["conv"].as_str().unwrap(), m["user"].as_str().unwrap(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(markers, vec![("alice-bob", "alice.liddell", 2), ("book-club", "alice.liddell", 4)]);

    let end = lines.last().unwrap();
    assert_eq!(end, &json!({"type": "end", "users": 3, "conversations": 2, "messages": 6, "read_markers": 2}));
    Ok(())
}

#[tokio::test]
async fn export_is_audited() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let sample = populate(&server, "acme").await;

    sample.tenant.rest.export_tenant("acme", &ExportRequest::default()).await?;
    admin(&server).export_tenant("acme", &ExportRequest { mask: true }).await?;

    let query = [("action", "tenant.export".to_string())];
    let tenant_log = sample.tenant.rest.tenant_audit("acme", &query).await?.items;
    assert_eq!(tenant_log.len(), 2, "{tenant_log:?}");
    assert_eq!(tenant_log[0].role, "admin");
    assert_eq!(tenant_log[0].detail.as_deref(), Some("mask=false"));
    assert_eq!(tenant_log[1].role, "platform");
    assert_eq!(tenant_log[1].detail.as_deref(), Some("mask=true"));
    for entry in &tenant_log {
        assert_eq!((entry.object.as_str(), entry.result.as_str(), entry.source.as_str()), ("acme", "ok", "127.0.0.1"));
    }

    // Only the platform admin's export is in the platform log.
    let platform_log = admin(&server).platform_audit(&query).await?.items;
    assert_eq!(platform_log.len(), 1, "{platform_log:?}");
    assert_eq!(platform_log[0].role, "platform");
    Ok(())
}
