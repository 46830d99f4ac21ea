//! A tenant's network allowlist rejects REST calls and WebSocket upgrades made with its
//! credentials from other addresses, with 403 `forbidden`. `X-Forwarded-For` names the client
//! only when the direct peer is a trusted proxy; from any other peer it is ignored. The
//! platform admin is not subject to the allowlist.

mod common;

use std::path::Path;

use bulkhead_client::{proto::NetworkPolicy, ErrorCode, Method};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a WebSocket upgrade request by hand, as a proxy would forward it, and returns the
/// HTTP status of the response.
async fn upgrade_status(server: &TestServer, token: &str, forwarded_for: Option<&str>) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await?;
    let mut request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n",
        server.addr
    );
    if let Some(addr) = forwarded_for {
        request.push_str(&format!("X-Forwarded-For: {addr}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    let status = String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0);
    Ok(status)
}

fn start_with_config(data_dir: &Path, config: &Path) -> TestServer {
    TestServer::start_with_env(data_dir, &[("BULKHEAD_CONFIG", config.to_str().expect("UTF-8 path"))])
}

#[tokio::test]
async fn allowlist_and_trusted_proxies() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let untrusted_config = dir.path().join("no-proxies.toml");
    std::fs::write(&untrusted_config, "trusted_proxies = []\n")?;
    let trusted_config = dir.path().join("proxy.toml");
    std::fs::write(&trusted_config, "trusted_proxies = [\"127.0.0.1/32\"]\n")?;

    let mut server = start_with_config(&data_dir, &untrusted_config);
    let acme = create_tenant(&server, "acme", &["alice"]).await;
    let globex = create_tenant(&server, "globex", &["alice"]).await;
    let acme_token = token(&acme, "alice").await;
    assert_eq!(upgrade_status(&server, &acme_token, None).await?, 101);

    // A tenant admin may not shut out its own address.
    let office = NetworkPolicy { allow: vec!["10.0.0.0/8".into()] };
    let err = acme.rest.set_network_policy("acme", &office).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    admin(&server).set_network_policy("acme", &office).await?;

    let err = acme.rest.list_users("acme").await.unwrap_err();
    assert_eq!((err.http_status(), err.code()), (Some(403), Some(ErrorCode::Forbidden)));
    assert_eq!(upgrade_status(&server, &acme_token, None).await?, 403);
    // From an untrusted peer the header is ignored, so an allowed address in it does not help.
    let forwarded = [("X-Forwarded-For", "10.1.2.3")];
    let (status, body) = acme.rest.request(Method::GET, "/v1/tenants/acme/users", None, &forwarded).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(upgrade_status(&server, &acme_token, Some("10.1.2.3")).await?, 403);
    // The platform admin and other tenants are not affected.
    assert_eq!(admin(&server).list_users("acme").await?.len(), 1);
    assert!(globex.rest.list_users("globex").await.is_ok());
    server.terminate_cleanly();

    // Behind a trusted proxy on 127.0.0.1, the forwarded address decides.
    let server = start_with_config(&data_dir, &trusted_config);
    let acme = acme.at(&server);
    let (status, body) = acme.rest.request(Method::GET, "/v1/tenants/acme/users", None, &forwarded).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upgrade_status(&server, &acme_token, Some("10.1.2.3")).await?, 101);
    let outside = [("X-Forwarded-For", "192.0.2.1")];
    let (status, body) = acme.rest.request(Method::GET, "/v1/tenants/acme/users", None, &outside).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(upgrade_status(&server, &acme_token, Some("192.0.2.1")).await?, 403);
    let (status, _) = acme.rest.request(Method::GET, "/v1/tenants/acme/users", None, &[]).await?;
    assert_eq!(status, 403, "the proxy's own address is not in the allowlist");

    // The policy survived the restart, and clearing it admits every address again.
    assert_eq!(acme.rest.network_policy("acme").await.unwrap_err().http_status(), Some(403));
    let policy = admin(&server).network_policy("acme").await?;
    assert_eq!(policy.allow, vec!["10.0.0.0/8".to_string()]);
    admin(&server).set_network_policy("acme", &NetworkPolicy::default()).await?;
    assert!(acme.rest.list_users("acme").await.is_ok());
    Ok(())
}
