//! WsClient binds its socket to `WsOptions::local_addr` before it connects, so the
//! connection's peer address on the server is that address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bulkhead_client::{ClientError, WsClient, WsOptions};
use futures_util::StreamExt;
use tokio::net::TcpListener;

/// Bound on every wait in this test, so a broken client fails the test instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn connection_comes_from_local_addr() -> Result<(), ClientError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // Reads until the client's close completes.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, socket.next()).await {}
        peer
    });
    let local_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let options = WsOptions {
        local_addr: Some(local_ip),
        ..WsOptions::default()
    };

    let client = WsClient::connect_with(&url, "t", options).await?;
    client.close().await?;
    let peer = tokio::time::timeout(WAIT, server).await.unwrap().unwrap();

    assert_eq!(peer.ip(), local_ip);
    Ok(())
}

#[tokio::test]
async fn unbindable_local_addr_fails_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    // TEST-NET-1 (RFC 5737) is assigned to no interface of a test machine.
    let options = WsOptions {
        local_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        ..WsOptions::default()
    };

    let error = WsClient::connect_with(&url, "t", options)
        .await
        .unwrap_err();

    match error {
        ClientError::Connect { status, message } => {
            assert_eq!(status, None);
            assert!(message.contains("failed to bind to 192.0.2.1"), "{message}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}
