//! WsClient against scripted WebSocket servers on 127.0.0.1 that reply with canned frames.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_client::{ClientError, ErrorCode, ServerFrame, WsClient, WsOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type ServerSocket = WebSocketStream<TcpStream>;

/// Bound on every wait in these tests, so a broken client fails the test instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

/// Accepts one WebSocket connection and runs `script` on it. Returns the `ws://` base URL,
/// the headers of the upgrade request, and the server task.
async fn scripted_server<F, Fut>(
    script: F,
) -> (String, Arc<Mutex<Vec<(String, String)>>>, JoinHandle<()>)
where
    F: FnOnce(ServerSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let headers = Arc::new(Mutex::new(Vec::new()));
    let recorded = headers.clone();

    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // tungstenite fixes the callback's error type, so its size is not ours to change.
        #[allow(clippy::result_large_err)]
        let record = |request: &Request, response: Response| {
            let mut recorded = recorded.lock().unwrap();
            recorded.push(("path".to_string(), request.uri().to_string()));
            for (name, value) in request.headers() {
                recorded.push((name.to_string(), value.to_str().unwrap().to_string()));
            }
            Ok(response)
        };
        let socket = tokio_tungstenite::accept_hdr_async(tcp, record)
            .await
            .unwrap();
        script(socket).await;
    });
    (url, headers, task)
}

/// Reads the next text frame as JSON, skipping control frames.
async fn next_request(socket: &mut ServerSocket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for a client frame")
            .expect("client closed the connection")
            .expect("failed to read a client frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn reply(socket: &mut ServerSocket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// Keeps reading until the client closes, so that the client's close completes.
async fn drain(mut socket: ServerSocket) {
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, socket.next()).await {}
}

fn fast_options() -> WsOptions {
    WsOptions {
        request_timeout: Duration::from_millis(300),
        ..WsOptions::default()
    }
}

#[tokio::test]
async fn connect_sends_bearer_token() {
    let (url, headers, server) = scripted_server(|mut socket| async move {
        let ping = next_request(&mut socket).await;
        reply(&mut socket, json!({"id": ping["id"], "op": "pong"})).await;
        drain(socket).await;
    })
    .await;

    let client = WsClient::connect(&url, "tok.en.sig").await.unwrap();
    client.ping().await.unwrap();
    client.close().await.unwrap();
    server.await.unwrap();

    let headers = headers.lock().unwrap();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(find("path").as_deref(), Some("/v1/ws"));
    assert_eq!(find("authorization").as_deref(), Some("Bearer tok.en.sig"));
}

#[tokio::test]
async fn connect_puts_token_in_query() {
    let (url, headers, server) = scripted_server(drain).await;
    let options = WsOptions {
        token_in_query: true,
        ..WsOptions::default()
    };

    let client = WsClient::connect_with(&url, "abc", options).await.unwrap();
    client.close().await.unwrap();
    server.await.unwrap();

    let headers = headers.lock().unwrap();
    assert!(headers.contains(&("path".to_string(), "/v1/ws?token=abc".to_string())));
    assert!(!headers.iter().any(|(name, _)| name == "authorization"));
}

#[tokio::test]
async fn responses_route_by_id_out_of_order() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let mut requests = Vec::new();
        for _ in 0..3 {
            requests.push(next_request(&mut socket).await);
        }

        // Responds in reverse order, with each seq derived from the client_msg_id, so a
        // response handed to the wrong caller shows up as a wrong seq.
        for request in requests.iter().rev() {
            let frame = match request["op"].as_str().unwrap() {
                "send" => {
                    let cmid = request["client_msg_id"].as_str().unwrap();
                    let seq: u64 = cmid.trim_start_matches('m').parse().unwrap();
                    json!({"id": request["id"], "op": "ok", "seq": seq, "ts": 1000 + seq})
                }
                "ping" => json!({"id": request["id"], "op": "pong"}),
                other => panic!("unexpected op {other}"),
            };
            reply(&mut socket, frame).await;
        }
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();
    let other = client.clone();

    let (first, second, pong) = tokio::join!(
        client.send("c1", "m7", json!({"text": "a"})),
        other.send("c1", "m9", json!(null)),
        client.ping(),
    );

    let first = first.unwrap();
    assert_eq!(first.seq, 7);
    assert_eq!(first.ts, 1007);
    assert!(!first.duplicate);
    assert_eq!(second.unwrap().seq, 9);
    pong.unwrap();
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn send_frame_has_expected_fields() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let request = next_request(&mut socket).await;
        assert_eq!(request["op"], "send");
        assert_eq!(request["conv"], "c1");
        assert_eq!(request["client_msg_id"], "m1");
        assert_eq!(request["body"], json!({"text": "hi", "n": [1, 2]}));
        assert!(request["id"].is_u64(), "id must be a number: {request}");

        let ack = json!({"id": request["id"], "op": "ok", "seq": 3, "ts": 5, "duplicate": true});
        reply(&mut socket, ack).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let ack = client
        .send("c1", "m1", json!({"text": "hi", "n": [1, 2]}))
        .await
        .unwrap();

    assert_eq!(ack.seq, 3);
    assert!(ack.duplicate);
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn send_nowait_pipelines_many() {
    const COUNT: u64 = 50;
    let (url, _, server) = scripted_server(|mut socket| async move {
        // Reads every request before the first ack, which only works if the client did
        // not wait for acks between sends.
        let mut ids = Vec::new();
        for _ in 0..COUNT {
            ids.push(next_request(&mut socket).await["id"].clone());
        }
        for (index, id) in ids.into_iter().enumerate() {
            reply(
                &mut socket,
                json!({"id": id, "op": "ok", "seq": index + 1, "ts": 1}),
            )
            .await;
        }
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let mut acks = Vec::new();
    for index in 0..COUNT {
        let pending = client
            .send_nowait("c1", &format!("m{index}"), json!(index))
            .unwrap();
        acks.push(pending);
    }

    for (index, pending) in acks.into_iter().enumerate() {
        assert_eq!(pending.await.unwrap().seq, index as u64 + 1);
    }
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn events_go_to_event_queue() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let ping = next_request(&mut socket).await;
        let event = json!({"op": "message", "conv": "c1", "seq": 4, "from": "u2", "ts": 9,
            "client_msg_id": "x", "body": {"text": "hey"}});
        reply(&mut socket, event).await;
        reply(
            &mut socket,
            json!({"op": "receipt", "conv": "c1", "user": "u2", "seq": 4}),
        )
        .await;
        reply(&mut socket, json!({"id": ping["id"], "op": "pong"})).await;
        reply(
            &mut socket,
            json!({"op": "typing", "conv": "c1", "user": "u3"}),
        )
        .await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    client.ping().await.unwrap();

    let Some(ServerFrame::Message(item)) = client.try_next_event() else {
        panic!("the message event arrived before the pong and must be queued");
    };
    assert_eq!(item.seq, 4);
    assert_eq!(item.body.get(), r#"{"text":"hey"}"#);
    let receipt = client.next_event(WAIT).await;
    assert!(
        matches!(receipt, Some(ServerFrame::Receipt { seq: 4, .. })),
        "{receipt:?}"
    );
    let typing = client.next_event(WAIT).await;
    assert!(
        matches!(typing, Some(ServerFrame::Typing { .. })),
        "{typing:?}"
    );
    assert!(client
        .next_event(Duration::from_millis(100))
        .await
        .is_none());
    assert!(client.try_next_event().is_none());
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn error_frame_becomes_server_error() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let request = next_request(&mut socket).await;
        let error = json!({"id": request["id"], "op": "error", "code": "quota_exceeded",
            "message": "message quota exhausted", "retry_after_ms": 1500, "resource": "messages"});
        reply(&mut socket, error).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let error = client.send("c1", "m1", json!({})).await.unwrap_err();

    assert_eq!(error.code(), Some(ErrorCode::QuotaExceeded));
    let ClientError::Server {
        message,
        retry_after_ms,
        resource,
        ..
    } = error
    else {
        panic!("expected ClientError::Server, got {error:?}");
    };
    assert_eq!(message, "message quota exhausted");
    assert_eq!(retry_after_ms, Some(1500));
    assert_eq!(resource.as_deref(), Some("messages"));
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn history_and_sync_requests() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let history = next_request(&mut socket).await;
        assert_eq!(history["op"], "history");
        assert_eq!(history["conv"], "c1");
        assert_eq!(history["before"], 10);
        assert_eq!(history["limit"], 2);
        assert!(
            history.get("after").is_none(),
            "unset after must be left out: {history}"
        );
        let page = json!({"id": history["id"], "op": "messages", "conv": "c1", "more": true,
        "items": [
            {"conv": "c1", "seq": 8, "from": "u1", "ts": 1, "client_msg_id": "a", "body": 1},
            {"conv": "c1", "seq": 9, "from": "u1", "ts": 2, "client_msg_id": "b", "body": 2}
        ]});
        reply(&mut socket, page).await;

        let sync = next_request(&mut socket).await;
        assert_eq!(sync["op"], "sync");
        assert_eq!(sync["since"], json!({"c1": 4, "c2": 0}));
        assert!(sync.get("limit").is_none());
        let pages = json!({"id": sync["id"], "op": "messages", "convs": [
            {"conv": "c1", "items": [], "more": false},
            {"conv": "c2", "items": [
                {"conv": "c2", "seq": 1, "from": "u1", "ts": 3, "client_msg_id": "c", "body": "x"}
            ], "more": true}
        ]});
        reply(&mut socket, pages).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let (items, more) = client.history("c1", Some(10), None, Some(2)).await.unwrap();
    let since = BTreeMap::from([("c1".to_string(), 4), ("c2".to_string(), 0)]);
    let pages = client.sync(&since, None).await.unwrap();

    assert_eq!(
        items.iter().map(|item| item.seq).collect::<Vec<_>>(),
        vec![8, 9]
    );
    assert!(more);
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[1].conv, "c2");
    assert_eq!(pages[1].items[0].body.get(), r#""x""#);
    assert!(pages[1].more);
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn read_and_typing_expect_ok() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let read = next_request(&mut socket).await;
        assert_eq!(read["op"], "read");
        assert_eq!(read["seq"], 5);
        reply(&mut socket, json!({"id": read["id"], "op": "ok"})).await;

        // A pong where ok is expected must be reported, not accepted.
        let typing = next_request(&mut socket).await;
        assert_eq!(typing["op"], "typing");
        reply(&mut socket, json!({"id": typing["id"], "op": "pong"})).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    client.read("c1", 5).await.unwrap();
    let error = client.typing("c1").await.unwrap_err();

    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn send_raw_text_returns_null_id_error() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(message, Message::text("{not json"));
        let error = json!({"id": null, "op": "error", "code": "invalid_request",
            "message": "frame is not valid JSON"});
        reply(&mut socket, error).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let response = client.send_raw_text("{not json").await.unwrap();

    let ServerFrame::Error { id, code, .. } = response else {
        panic!("expected an error frame, got {response:?}");
    };
    assert!(id.is_none());
    assert_eq!(code, ErrorCode::InvalidRequest);
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn undecodable_response_fails_request() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let request = next_request(&mut socket).await;
        let unknown_code = json!({"id": request["id"], "op": "error", "code": "brand_new",
            "message": "a code this client does not know"});
        reply(&mut socket, unknown_code).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    // The default request timeout is 30 s, so only routing by the salvaged id ends this
    // within WAIT.
    let error = tokio::time::timeout(WAIT, client.send("c1", "m1", json!(1)))
        .await
        .expect("an undecodable response must fail its request at once")
        .unwrap_err();

    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn request_times_out_and_recovers() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let ignored = next_request(&mut socket).await;
        let ping = next_request(&mut socket).await;

        // The late response to the timed-out request must not be taken for the ping's.
        reply(
            &mut socket,
            json!({"id": ignored["id"], "op": "ok", "seq": 1, "ts": 1}),
        )
        .await;
        reply(&mut socket, json!({"id": ping["id"], "op": "pong"})).await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect_with(&url, "t", fast_options())
        .await
        .unwrap();

    let error = client.send("c1", "m1", json!(1)).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout), "{error:?}");

    client.ping().await.unwrap();
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn server_close_fails_pending_request() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        next_request(&mut socket).await;
        let frame = CloseFrame {
            code: CloseCode::from(4008),
            reason: "slow consumer".into(),
        };
        socket.close(Some(frame)).await.unwrap();
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let error = tokio::time::timeout(WAIT, client.send("c1", "m1", json!(1)))
        .await
        .expect("a pending request must fail when the server closes")
        .unwrap_err();

    let ClientError::Closed { code, reason } = &error else {
        panic!("expected ClientError::Closed, got {error:?}");
    };
    assert_eq!(*code, 4008);
    assert_eq!(reason, "slow consumer");
    let expected = Some((4008, "slow consumer".to_string()));
    assert_eq!(client.wait_closed(WAIT).await, expected);
    assert_eq!(client.closed(), expected);
    server.await.unwrap();
}

#[tokio::test]
async fn request_after_close_fails_at_once() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "shutting down".into(),
        };
        socket.close(Some(frame)).await.unwrap();
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();
    assert_eq!(
        client.wait_closed(WAIT).await.map(|(code, _)| code),
        Some(1001)
    );

    let error = tokio::time::timeout(WAIT, client.ping())
        .await
        .unwrap()
        .unwrap_err();

    assert_eq!(error.close_code(), Some(1001));
    assert!(
        client.next_event(WAIT).await.is_none(),
        "closed client must not wait for events"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn dropped_connection_reports_1006() {
    let (url, _, server) = scripted_server(|socket| async move {
        // Dropping the socket ends the TCP connection without a close frame.
        drop(socket);
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    let closed = client.wait_closed(WAIT).await;

    assert_eq!(closed.map(|(code, _)| code), Some(1006));
    server.await.unwrap();
}

#[tokio::test]
async fn client_close_sends_normal_code() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Close(Some(frame)) = message else {
            panic!("expected a close frame, got {message:?}");
        };
        assert_eq!(u16::from(frame.code), 1000);
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    client.close().await.unwrap();

    // The server's reply to the close frame echoes the code.
    assert_eq!(client.closed().map(|(code, _)| code), Some(1000));
    server.await.unwrap();
}

#[tokio::test]
async fn server_ping_gets_pong() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        socket
            .send(Message::Ping(b"probe".to_vec().into()))
            .await
            .unwrap();
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(message, Message::Pong(b"probe".to_vec().into()));
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();

    // The pong goes out from the reader task without any call on the client.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn full_event_queue_drops_and_counts() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let ping = next_request(&mut socket).await;
        for seq in 1..=5 {
            reply(
                &mut socket,
                json!({"op": "receipt", "conv": "c1", "user": "u", "seq": seq}),
            )
            .await;
        }
        reply(&mut socket, json!({"id": ping["id"], "op": "pong"})).await;
        drain(socket).await;
    })
    .await;
    let options = WsOptions {
        event_capacity: 2,
        ..WsOptions::default()
    };
    let client = WsClient::connect_with(&url, "t", options).await.unwrap();

    // The pong still arrives although the event queue overflowed before it.
    client.ping().await.unwrap();

    assert_eq!(client.dropped_events(), 3);
    assert!(matches!(
        client.try_next_event(),
        Some(ServerFrame::Receipt { seq: 1, .. })
    ));
    assert!(matches!(
        client.try_next_event(),
        Some(ServerFrame::Receipt { seq: 2, .. })
    ));
    assert!(client.try_next_event().is_none());
    client.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn paused_reading_holds_events_back() {
    let (url, _, server) = scripted_server(|mut socket| async move {
        let ping = next_request(&mut socket).await;
        reply(&mut socket, json!({"id": ping["id"], "op": "pong"})).await;
        reply(
            &mut socket,
            json!({"op": "typing", "conv": "c1", "user": "u"}),
        )
        .await;
        drain(socket).await;
    })
    .await;
    let client = WsClient::connect(&url, "t").await.unwrap();
    client.pause_reading();

    let pong = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    assert!(client
        .next_event(Duration::from_millis(300))
        .await
        .is_none());
    assert!(
        !pong.is_finished(),
        "the pong must wait while reading is paused"
    );

    client.resume_reading();
    pong.await.unwrap().unwrap();
    assert!(client.next_event(WAIT).await.is_some());
    client.close().await.unwrap();
    server.await.unwrap();
}

/// Accepts one TCP connection and responds to the upgrade request with `status` and a JSON body.
async fn rejecting_server(status: &'static str, body: &'static str) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());

    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = tcp.read(&mut buffer).await.unwrap();
            assert!(read > 0, "client closed before sending the upgrade request");
            request.extend_from_slice(&buffer[..read]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(response.as_bytes()).await.unwrap();
    });
    (url, task)
}

#[tokio::test]
async fn rejected_upgrade_exposes_status() {
    let cases = [
        ("401 Unauthorized", 401, "unauthorized"),
        ("429 Too Many Requests", 429, "quota_exceeded"),
    ];

    for (status_line, status, code) in cases {
        let body = Box::leak(
            format!(r#"{{"error":{{"code":"{code}","message":"rejected"}}}}"#).into_boxed_str(),
        );
        let (url, server) = rejecting_server(status_line, body).await;

        let error = WsClient::connect(&url, "bad").await.unwrap_err();

        assert_eq!(error.http_status(), Some(status), "{error}");
        let ClientError::Connect { message, .. } = &error else {
            panic!("expected ClientError::Connect, got {error:?}");
        };
        assert!(
            message.contains(code),
            "the message must contain the body: {message}"
        );
        server.await.unwrap();
    }
}

#[tokio::test]
async fn connect_refused_has_no_status() {
    // Binding and dropping a listener yields a port that refuses connections.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);

    let error = WsClient::connect(&url, "t").await.unwrap_err();

    assert!(
        matches!(error, ClientError::Connect { status: None, .. }),
        "{error:?}"
    );
}
