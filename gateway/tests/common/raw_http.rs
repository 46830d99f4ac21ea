//! HTTP/1.1 requests written by hand on a TCP socket, for tests that need to set the `Host`
//! header or read response headers, which `RestClient` does not expose.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Bound on one exchange, so a server that never responds fails the test instead of hanging.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status, headers (names in lower case) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Parses the body as JSON, or returns `Null` when it is empty or not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Returns the `error.code` of an error envelope, or `""`.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends `GET path` with the given `Host` and bearer credential.
pub async fn get(addr: SocketAddr, host: &str, path: &str, credential: &str) -> RawResponse {
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {credential}\r\nConnection: close\r\n\r\n"
    );
    exchange(addr, &head).await
}

/// Sends a WebSocket upgrade request for `/v1/ws` and reads the response head: status 101
/// when the server accepts the token, an error status with its JSON body otherwise.
pub async fn ws_upgrade(addr: SocketAddr, host: &str, token: &str) -> RawResponse {
    let head = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    exchange(addr, &head).await
}

async fn exchange(addr: SocketAddr, head: &str) -> RawResponse {
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect to the server");
        tcp.write_all(head.as_bytes()).await.expect("write the request");
        read_response(&mut tcp).await
    })
    .await
    .expect("the server responds within the timeout")
}

/// Reads the status line, the headers and a body of `Content-Length` bytes (none for 101).
async fn read_response(tcp: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let header_end = loop {
        if let Some(position) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        let read = tcp.read(&mut buffer).await.expect("read the response");
        assert!(read > 0, "server closed before the end of the headers");
        data.extend_from_slice(&buffer[..read]);
    };

    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a valid status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();

    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let read = tcp.read(&mut buffer).await.expect("read the body");
        assert!(read > 0, "server closed before the end of the body");
        data.extend_from_slice(&buffer[..read]);
    }
    let body = String::from_utf8_lossy(&data[header_end..header_end + length]).into_owned();
    RawResponse { status, headers, body }
}
