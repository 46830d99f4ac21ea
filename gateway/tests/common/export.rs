//! A tenant with every kind of exported record, and helpers to read an export and to run
//! `bulkhead import`.

use std::{path::Path, process::Command};

use bulkhead_client::proto::{ConversationKind, CreateConversationRequest, CreateUserRequest};
use serde_json::{json, Value};

use super::{connect, create_tenant, Tenant, TestServer};

/// Users of the sample tenant with their display names.
pub const USERS: [(&str, &str); 3] = [
    ("alice.liddell", "Alice Liddell"),
    ("bob.marley", "Bob Marley"),
    ("carol.danvers", "Carol Danvers"),
];

/// Text of every body string the sample tenant's messages were sent or edited with.
pub const BODY_STRINGS: [&str; 6] = [
    "meet at the harbour",
    "bring the ledger",
    "account 4711",
    "harbour moved to pier nine",
    "private note for bob",
    "recalled secret plan",
];

/// What [`populate`] recorded: the seqs and timestamps to compare an export against.
pub struct Sample {
    pub tenant: Tenant,
    pub edited_at: u64,
    pub recalled_at: u64,
}

/// Creates tenant `id` with three users, a group `book-club` with four messages (the first
/// edited) and a direct conversation `alice-bob` with two messages (the second recalled), and
/// read markers of alice in both.
pub async fn populate(server: &TestServer, id: &str) -> Sample {
    let tenant = create_tenant(server, id, &[]).await;
    for (user, name) in USERS {
        let request = CreateUserRequest {
            id: user.into(),
            display_name: Some(name.into()),
        };
        tenant.rest.create_user(id, &request).await.expect("create user");
    }
    let [alice, bob, carol] = USERS.map(|(user, _)| user);
    for (conv, kind, name, members) in [
        ("book-club", ConversationKind::Group, Some("Carol's book club"), vec![alice, bob, carol]),
        ("alice-bob", ConversationKind::Direct, None, vec![alice, bob]),
    ] {
        let request = CreateConversationRequest {
            id: Some(conv.into()),
            kind,
            members: members.iter().map(|m| m.to_string()).collect(),
            name: name.map(str::to_owned),
        };
        tenant.rest.create_conversation(id, &request).await.expect("create conversation");
    }

    let alice_ws = connect(server, &tenant, alice).await;
    let bob_ws = connect(server, &tenant, bob).await;
    let group = [
        (&alice_ws, "g1", json!({"text": BODY_STRINGS[0], "priority": 3})),
        (&bob_ws, "g2", json!({"text": BODY_STRINGS[1], "tags": ["todo", {"owner": alice}]})),
        (&alice_ws, "g3", json!({"text": BODY_STRINGS[2], "amount": 12.5, "urgent": true})),
        (&bob_ws, "g4", json!(BODY_STRINGS[4])),
    ];
    for (sender, client_msg_id, body) in group {
        sender.send("book-club", client_msg_id, body).await.expect("send to the group");
    }
    let edited_at = alice_ws
        .edit("book-club", 1, json!({"text": BODY_STRINGS[3], "priority": 3}))
        .await
        .expect("edit");

    alice_ws.send("alice-bob", "d1", json!({"text": "hello bob"})).await.expect("send direct");
    alice_ws
        .send("alice-bob", "d2", json!({"text": BODY_STRINGS[5]}))
        .await
        .expect("send direct");
    let recalled_at = alice_ws.recall("alice-bob", 2).await.expect("recall");
    alice_ws.read("book-club", 4).await.expect("read group");
    alice_ws.read("alice-bob", 2).await.expect("read direct");
    Sample {
        tenant,
        edited_at,
        recalled_at,
    }
}

/// Parses an NDJSON export into its lines.
pub fn lines(export: &str) -> Vec<Value> {
    assert!(export.ends_with('\n'), "an export ends with a newline");
    export
        .lines()
        .map(|line| serde_json::from_str(line).expect("every export line is JSON"))
        .collect()
}

/// Returns the lines of one `type`.
pub fn of_type<'a>(lines: &'a [Value], line_type: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["type"] == line_type).collect()
}

/// Runs `bulkhead import` on a stopped server's data directory and returns its exit code and
/// its standard output and error.
pub fn import(data_dir: &Path, tenant: &str, file: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["import", "--data-dir"])
        .arg(data_dir)
        .args(["--tenant", tenant, "--file"])
        .arg(file)
        .env_remove("BULKHEAD_DATA_DIR")
        .output()
        .expect("run bulkhead import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}
