//! Bad input gets its documented error code, the session and the server keep running, and
//! nothing accepted before is lost.

mod common;

use bulkhead_client::{
    proto::{ConversationKind::Group, QuotasPatch},
    ErrorCode, Method, ServerFrame,
};
use common::*;
use serde_json::json;

/// `max_message_bytes` of the test tenant, small so that an oversized body is cheap to send.
const MAX_MESSAGE_BYTES: u64 = 256;

fn error_code(frame: &ServerFrame) -> ErrorCode {
    match frame {
        ServerFrame::Error { code, .. } => *code,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_frames_get_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path());
    let quotas = QuotasPatch {
        max_message_bytes: Some(MAX_MESSAGE_BYTES),
        ..QuotasPatch::default()
    };
    let acme = create_tenant_with_quotas(&server, "acme", &["alice", "bob", "carol"], Some(quotas)).await;
    let globex = create_tenant(&server, "globex", &["alice"]).await;
    create_conversation(&acme, "team", Group, &["alice", "bob"]).await;
    create_conversation(&acme, "private", Group, &["bob", "carol"]).await;
    create_conversation(&globex, "secret", Group, &["alice"]).await;

    let alice = connect(&server, &acme, "alice").await;
    let accepted = alice.send("team", "keep-me", json!({"text": "accepted before"})).await?;

    let frames = [
        ("malformed JSON", "{\"op\": \"send\", ".to_string(), ErrorCode::InvalidRequest),
        ("not an object", "[1, 2, 3]".to_string(), ErrorCode::InvalidRequest),
        ("unknown op", r#"{"id":1,"op":"shout"}"#.to_string(), ErrorCode::InvalidRequest),
        ("missing op", r#"{"id":2}"#.to_string(), ErrorCode::InvalidRequest),
        ("missing body", r#"{"id":3,"op":"send","conv":"team","client_msg_id":"x"}"#.to_string(), ErrorCode::InvalidRequest),
        ("missing conv", r#"{"id":4,"op":"history"}"#.to_string(), ErrorCode::InvalidRequest),
        ("wrong type", r#"{"id":5,"op":"read","conv":"team","seq":"last"}"#.to_string(), ErrorCode::InvalidRequest),
        ("limit too large", r#"{"id":6,"op":"history","conv":"team","limit":5000}"#.to_string(), ErrorCode::InvalidRequest),
        ("empty client_msg_id", r#"{"id":7,"op":"send","conv":"team","client_msg_id":"","body":1}"#.to_string(), ErrorCode::InvalidRequest),
        (
            "body over max_message_bytes",
            json!({"id": 8, "op": "send", "conv": "team", "client_msg_id": "big", "body": "x".repeat(MAX_MESSAGE_BYTES as usize + 1)}).to_string(),
            ErrorCode::PayloadTooLarge,
        ),
        ("not a member", r#"{"id":9,"op":"send","conv":"private","client_msg_id":"y","body":1}"#.to_string(), ErrorCode::NotFound),
        ("other tenant's conversation", r#"{"id":10,"op":"history","conv":"secret"}"#.to_string(), ErrorCode::NotFound),
        ("no such conversation", r#"{"id":11,"op":"typing","conv":"nowhere"}"#.to_string(), ErrorCode::NotFound),
        ("invalid conversation id", r#"{"id":12,"op":"typing","conv":"a b"}"#.to_string(), ErrorCode::NotFound),
        ("read past the end", r#"{"id":13,"op":"read","conv":"team","seq":99}"#.to_string(), ErrorCode::InvalidRequest),
    ];
    for (case, text, expected) in frames {
        let response = alice.send_raw_text(text).await?;
        assert_eq!(error_code(&response), expected, "{case}: {response:?}");
        alice.ping().await.unwrap_or_else(|e| panic!("session closed after {case}: {e}"));
    }
    let response = alice.send_raw_binary(vec![0, 159, 146, 150]).await?;
    assert_eq!(error_code(&response), ErrorCode::InvalidRequest, "binary frame");

    // The id of a rejected request is echoed so the client can match the error.
    match alice.send_raw_text(r#"{"id":"abc","op":"shout"}"#).await? {
        ServerFrame::Error { id, .. } => assert_eq!(id.map(|i| i.get().to_owned()), Some("\"abc\"".into())),
        other => panic!("expected an error, got {other:?}"),
    }

    // Nothing of the above was stored, and the accepted message is intact.
    let (items, _) = alice.history("team", None, None, None).await?;
    assert_eq!(seqs(&items), vec![accepted.seq]);
    assert_eq!(body_text(&items[0]), "accepted before");

    // A client that keeps sending garbage is disconnected with 1008; others are unaffected.
    let bob = connect(&server, &acme, "bob").await;
    let noisy = connect(&server, &acme, "alice").await;
    for _ in 0..10 {
        let _ = noisy.send_raw_text("garbage").await;
    }
    let close = noisy.wait_closed(EVENT_TIMEOUT).await.expect("noisy session closed");
    assert_eq!(close.0, 1008);
    bob.ping().await?;

    // A frame above the server's frame limit closes that session with 1009.
    let huge = connect(&server, &acme, "alice").await;
    let _ = huge.send_raw_text("x".repeat(2 << 20)).await;
    let close = huge.wait_closed(EVENT_TIMEOUT).await.expect("oversized frame closes the session");
    assert_eq!(close.0, 1009);

    // REST bodies are checked the same way.
    let rest = &acme.rest;
    let cases = [
        (Method::POST, "/v1/tenants/acme/users", json!({"id": "has space"}), 400, "invalid_request"),
        (Method::POST, "/v1/tenants/acme/users", json!({"id": "x", "extra": 1}), 400, "invalid_request"),
        (Method::POST, "/v1/tenants/acme/users", json!({"id": "bob"}), 409, "conflict"),
        (Method::POST, "/v1/tenants/acme/conversations", json!({"kind": "direct", "members": ["alice"]}), 400, "invalid_request"),
        (Method::POST, "/v1/tenants/acme/conversations", json!({"kind": "group", "members": ["ghost"]}), 404, "not_found"),
        (Method::POST, "/v1/tenants/acme/tokens", json!({"user": "alice", "ttl_secs": 0}), 400, "invalid_request"),
        (
            Method::POST,
            "/v1/tenants/acme/conversations/team/messages",
            json!({"from": "alice", "client_msg_id": "r1", "body": "y".repeat(MAX_MESSAGE_BYTES as usize + 1)}),
            413,
            "payload_too_large",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, response) = rest.request(method.clone(), path, Some(&body), &[]).await?;
        assert_eq!(got, status, "{method} {path} {body}: {response}");
        assert_eq!(response["error"]["code"], code, "{method} {path} {body}");
    }
    let (status, response) = rest
        .request(Method::POST, "/v1/tenants/acme/users", None, &[("content-type", "application/json")])
        .await?;
    assert_eq!(status, 400, "{response}");

    // The server is healthy and the accepted message is still there.
    assert_eq!(admin(&server).healthz().await?["status"], "ok");
    let page = rest.list_messages("acme", "team", None, None, None).await?;
    assert_eq!(seqs(&page.items), vec![accepted.seq]);
    Ok(())
}
