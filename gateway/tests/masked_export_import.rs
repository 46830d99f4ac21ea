//! A masked export hides every original user id, display name, conversation id and body
//! string, but keeps the structure, seqs, timestamps and markers. A second export maps every
//! id to the same pseudonym. Loaded with `bulkhead import` into a new tenant of the
//! stopped server, it replays over the real API with the same seqs.

mod common;

use std::collections::BTreeMap;

use bulkhead_client::proto::export::ExportRequest;
use common::{export::*, *};
use serde_json::{json, Value};

const MASKED: ExportRequest = ExportRequest { mask: true };

/// Returns the masked lines with `exported_at_ms` removed, to compare two exports.
fn without_time(lines: &[Value]) -> Vec<Value> {
    let mut lines = lines.to_vec();
    lines[0].as_object_mut().unwrap().remove("exported_at_ms");
    lines
}

#[tokio::test]
async fn masked_export_hides_data_and_imports() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let sample = populate(&server, "acme").await;
    let copy = create_tenant(&server, "copy", &[]).await;

    let plain = lines(&sample.tenant.rest.export_tenant("acme", &ExportRequest::default()).await?);
    let text = sample.tenant.rest.export_tenant("acme", &MASKED).await?;
    let masked = lines(&text);
    let again = lines(&sample.tenant.rest.export_tenant("acme", &MASKED).await?);
    assert_eq!(without_time(&masked), without_time(&again), "pseudonyms are stable across exports");

    // None of the original values appears anywhere in the raw text.
    let mut originals: Vec<&str> = Vec::new();
    for (user, name) in USERS {
        originals.extend([user, name]);
    }
    originals.extend(BODY_STRINGS);
    originals.extend(["book-club", "alice-bob", "Carol's book club", "hello bob", "12.5", "todo"]);
    for original in originals {
        assert!(!text.contains(original), "the masked export contains {original:?}");
    }
    assert_eq!(masked[0]["masked"], true);

    // Line for line, the masked export has the plain one's shape, seqs, times and markers.
    assert_eq!(masked.len(), plain.len());
    for (masked_line, plain_line) in masked.iter().zip(&plain).skip(1) {
        assert_eq!(masked_line["type"], plain_line["type"]);
        for field in ["seq", "ts", "edited", "recalled", "created_at_ms", "kind"] {
            assert_eq!(masked_line.get(field), plain_line.get(field), "{field} of {plain_line}");
        }
        if masked_line["type"] == "message" {
            assert_ne!(masked_line["client_msg_id"], plain_line["client_msg_id"]);
            assert_ne!(masked_line["from"], plain_line["from"]);
        }
    }
    assert_eq!(masked.last(), plain.last(), "the end counts are the same");

    let messages = of_type(&masked, "message");
    let group_conv = messages[2]["conv"].as_str().unwrap().to_owned();
    let direct_conv = messages[0]["conv"].as_str().unwrap().to_owned();
    assert!(group_conv.starts_with("c-"), "{group_conv}");
    assert!(direct_conv.starts_with("c-"), "{direct_conv}");
    let bodies: Vec<&Value> = messages.iter().map(|m| &m["body"]).collect();
    assert_eq!(bodies[1], &Value::Null, "the recalled message stays recalled");
    assert_eq!(bodies[2], &json!({"text": "redacted", "priority": 0}));
    assert_eq!(bodies[3], &json!({"text": "redacted", "tags": ["redacted", {"owner": "redacted"}]}));
    assert_eq!(bodies[4], &json!({"text": "redacted", "amount": 0, "urgent": true}));
    assert_eq!(bodies[5], &json!("redacted"));

    // Alice sent the group's first message; her pseudonym is its sender.
    let alice = messages[2]["from"].as_str().unwrap().to_owned();
    assert_eq!(messages[0]["from"], alice.as_str(), "one user has one pseudonym everywhere");
    let group_line = of_type(&masked, "conversation")[1];
    assert!(group_line["members"].as_array().unwrap().contains(&json!(alice)));

    // Import into the new tenant while the server is stopped.
    let file = dir.path().join("acme-masked.ndjson");
    std::fs::write(&file, &text)?;
    server.terminate_cleanly();
    let (code, output) = import(dir.path(), "copy", &file);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("3 users, 2 conversations, 6 messages, 2 read markers"), "{output}");

    let server = TestServer::start(dir.path());
    let copy = copy.at(&server);
    let users = copy.rest.list_users("copy").await?;
    assert_eq!(users.len(), 3);
    let client = connect(&server, &copy, &alice).await;

    let (items, more) = client.history(&group_conv, None, None, None).await?;
    assert!(!more);
    assert_eq!(seqs(&items), vec![1, 2, 3, 4]);
    for (item, line) in items.iter().zip(messages.iter().skip(2)) {
        assert_eq!(item.from, line["from"].as_str().unwrap());
        assert_eq!(item.client_msg_id, line["client_msg_id"].as_str().unwrap());
        assert_eq!(item.ts, line["ts"].as_u64().unwrap());
        assert_eq!(serde_json::from_str::<Value>(item.body.get())?, line["body"]);
    }
    assert_eq!(items[0].edited, Some(sample.edited_at));

    let pages = client.sync(&BTreeMap::new(), None).await?;
    let direct = pages.iter().find(|page| page.conv == direct_conv).expect("sync returns the direct conversation");
    assert_eq!(seqs(&direct.items), vec![1, 2]);
    assert_eq!(direct.items[1].recalled, Some(sample.recalled_at));
    assert_eq!(direct.items[1].body.get(), "null");

    // The imported conversation goes on from the last seq, and its idempotency index works.
    let first_id = messages[2]["client_msg_id"].as_str().unwrap();
    assert_eq!(client.send(&group_conv, first_id, json!({"text": "again"})).await?.seq, 1);
    assert_eq!(client.send(&group_conv, "after-import", json!({"text": "new"})).await?.seq, 5);
    Ok(())
}
