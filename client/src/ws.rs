//! WebSocket client for `GET /v1/ws`.
//!
//! Two background tasks own the socket. The reader decodes every frame, hands each response
//! to the request waiting for its `id` and queues events. The writer sends queued frames.
//! Callers never touch the socket, so any number of requests can be in flight at once from
//! clones of one [`WsClient`].

mod routes;
mod tasks;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_proto::{ConversationPage, MessageItem, SendAck, ServerFrame};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{describe_error, ClientError, ABNORMAL_CLOSURE};
use routes::{closed_error, PendingGuard, Routes};
use tasks::{write_loop, Reader};

/// Time a request waits for its response before failing with [`ClientError::Timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Events kept for the caller before new ones are dropped (see [`WsClient::dropped_events`]).
pub const DEFAULT_EVENT_CAPACITY: usize = 65_536;

/// Time [`WsClient::close`] waits for the server to complete the close handshake.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The close code and reason of a finished connection.
pub type CloseInfo = (u16, String);

/// Settings for [`WsClient::connect_with`].
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Time a request waits for its response, counted from when the frame is queued. It also
    /// bounds the WebSocket handshake.
    pub request_timeout: Duration,
    /// Events kept for [`WsClient::next_event`] before new ones are dropped. A bound keeps a
    /// load generator that never reads events from growing without limit, and dropping
    /// instead of blocking keeps responses flowing.
    pub event_capacity: usize,
    /// Send the token as `?token=` instead of the `Authorization` header.
    pub token_in_query: bool,
    /// Local address to bind the socket to before connecting, with a port the system picks.
    /// A client that opens more connections to one server than there are ephemeral ports
    /// spreads them over several addresses, such as 127.0.0.2 and 127.0.0.3. `None` lets the
    /// system choose.
    pub local_addr: Option<IpAddr>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            token_in_query: false,
            local_addr: None,
        }
    }
}

/// A connection to `GET /v1/ws`. Clones share the connection.
///
/// Every request method takes `&self` and may run concurrently with the others, except
/// [`WsClient::send_raw_text`] and [`WsClient::send_raw_binary`]. The connection closes when
/// the server closes it, on [`WsClient::close`], or when the last clone is dropped.
#[derive(Clone)]
pub struct WsClient {
    inner: Arc<Inner>,
}

struct Inner {
    outgoing: mpsc::UnboundedSender<Message>,
    /// Frames queued and not yet flushed to the socket. It grows when TCP pushes back.
    unwritten: Arc<AtomicUsize>,
    next_id: AtomicU64,
    routes: Arc<Routes>,
    events: tokio::sync::Mutex<mpsc::Receiver<ServerFrame>>,
    dropped_events: Arc<AtomicU64>,
    closed: watch::Receiver<Option<CloseInfo>>,
    reading: watch::Sender<bool>,
    request_timeout: Duration,
}

impl WsClient {
    /// Connects to `{ws_base_url}/v1/ws` (such as `ws://127.0.0.1:8080`) with the token in
    /// the `Authorization: Bearer` header. An empty token sends no credential.
    ///
    /// A rejected upgrade fails with [`ClientError::Connect`] whose `status` is the HTTP
    /// status, such as 401 for a bad token or 429 when the tenant has too many connections.
    pub async fn connect(ws_base_url: &str, token: &str) -> Result<WsClient, ClientError> {
        Self::connect_with(ws_base_url, token, WsOptions::default()).await
    }

    /// Connects like [`WsClient::connect`] with explicit options.
    pub async fn connect_with(
        ws_base_url: &str,
        token: &str,
        options: WsOptions,
    ) -> Result<WsClient, ClientError> {
        let request = build_upgrade_request(ws_base_url, token, options.token_in_query)?;

        let connecting = async {
            match options.local_addr {
                None => {
                    // Nagle's algorithm would hold small frames back for up to one round
                    // trip, which shows up as latency in load tests.
                    let connected =
                        tokio_tungstenite::connect_async_with_config(request, None, true).await;
                    connected.map(|(socket, _response)| socket).map_err(connect_error)
                }
                Some(local_ip) => {
                    let tcp = connect_from(local_ip, request.uri()).await?;
                    let handshake = tokio_tungstenite::client_async_with_config(
                        request,
                        MaybeTlsStream::Plain(tcp),
                        None,
                    );
                    let (socket, _response) = handshake.await.map_err(connect_error)?;
                    Ok(socket)
                }
            }
        };
        let socket = tokio::time::timeout(options.request_timeout, connecting)
            .await
            .map_err(|_| ClientError::Connect {
                status: None,
                message: format!("handshake timed out after {:?}", options.request_timeout),
            })??;

        Ok(Self::start(socket, &options))
    }

    fn start(socket: Socket, options: &WsOptions) -> WsClient {
        let (sink, stream) = socket.split();
        let (outgoing_tx, outgoing_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let (closed_tx, closed_rx) = watch::channel(None);
        let (reading_tx, reading_rx) = watch::channel(true);
        let routes = Arc::new(Routes::new());
        let dropped_events = Arc::new(AtomicU64::new(0));
        let unwritten = Arc::new(AtomicUsize::new(0));

        let reader = Reader {
            routes: routes.clone(),
            events: events_tx,
            dropped_events: dropped_events.clone(),
            closed: closed_tx,
            reading: reading_rx,
        };
        tokio::spawn(reader.run(stream));
        tokio::spawn(write_loop(sink, outgoing_rx, unwritten.clone()));

        WsClient {
            inner: Arc::new(Inner {
                outgoing: outgoing_tx,
                unwritten,
                next_id: AtomicU64::new(1),
                routes,
                events: tokio::sync::Mutex::new(events_rx),
                dropped_events,
                closed: closed_rx,
                reading: reading_tx,
                request_timeout: options.request_timeout,
            }),
        }
    }

    /// Sends a message and waits for its acknowledgement.
    ///
    /// `duplicate` in the result is true when the server had already accepted
    /// `client_msg_id` in this conversation, and `seq` is then the original one.
    pub async fn send(
        &self,
        conv: &str,
        client_msg_id: &str,
        body: Value,
    ) -> Result<SendAck, ClientError> {
        self.send_nowait(conv, client_msg_id, body)?.await
    }

    /// Queues a message and returns a future for its acknowledgement, so that a load
    /// generator can keep sending without waiting for each ack.
    ///
    /// The request timeout starts now, not when the future is first polled. Dropping the
    /// future abandons the ack but not the message, which is already on its way.
    pub fn send_nowait(
        &self,
        conv: &str,
        client_msg_id: &str,
        body: Value,
    ) -> Result<impl Future<Output = Result<SendAck, ClientError>> + Send + 'static, ClientError>
    {
        let frame = json!({
            "op": "send",
            "conv": conv,
            "client_msg_id": client_msg_id,
            "body": body,
        });
        let response = self.start_request(frame)?;
        Ok(async move { parse_send_ack(response.await?) })
    }

    /// Reads one page of a conversation and returns its items in ascending `seq` and whether
    /// more follow. Parameters left as `None` are not sent, so the server's defaults apply.
    pub async fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(Vec<MessageItem>, bool), ClientError> {
        let mut frame = json!({"op": "history", "conv": conv});
        insert_some(&mut frame, "before", before);
        insert_some(&mut frame, "after", after);
        insert_some(&mut frame, "limit", limit);

        match self.request_ok(frame).await? {
            ServerFrame::Messages { items, more, .. } => Ok((items, more)),
            other => Err(unexpected_response("messages", &other)),
        }
    }

    /// Fetches the messages after the given `seq` of each conversation in `since`, at most
    /// `limit` per conversation.
    pub async fn sync(
        &self,
        since: &BTreeMap<String, u64>,
        limit: Option<u32>,
    ) -> Result<Vec<ConversationPage>, ClientError> {
        let mut frame = json!({"op": "sync", "since": since});
        insert_some(&mut frame, "limit", limit);

        match self.request_ok(frame).await? {
            ServerFrame::Messages { convs, .. } => Ok(convs),
            other => Err(unexpected_response("messages", &other)),
        }
    }

    /// Replaces the body of message `seq`, which this user sent. Returns the time of the
    /// edit, which `history` and `sync` then show as the message's `edited` marker.
    ///
    /// Fails with [`ClientError::Server`] and code `forbidden` when another member sent
    /// the message, and `feature_disabled` when the tenant's plan has no `edit_recall`.
    pub async fn edit(&self, conv: &str, seq: u64, body: Value) -> Result<u64, ClientError> {
        let frame = json!({"op": "edit", "conv": conv, "seq": seq, "body": body});
        parse_change_ack(self.request_ok(frame).await?)
    }

    /// Recalls message `seq`, which this user sent: the server deletes its body and keeps
    /// the `seq` with a `recalled` marker. Returns the time of the recall; recalling again
    /// returns the time of the first recall.
    pub async fn recall(&self, conv: &str, seq: u64) -> Result<u64, ClientError> {
        let frame = json!({"op": "recall", "conv": conv, "seq": seq});
        parse_change_ack(self.request_ok(frame).await?)
    }

    /// Marks a conversation as read up to `seq`.
    pub async fn read(&self, conv: &str, seq: u64) -> Result<(), ClientError> {
        let frame = json!({"op": "read", "conv": conv, "seq": seq});
        self.request_plain_ok(frame).await
    }

    /// Tells the other members of a conversation that this user is typing.
    pub async fn typing(&self, conv: &str) -> Result<(), ClientError> {
        let frame = json!({"op": "typing", "conv": conv});
        self.request_plain_ok(frame).await
    }

    /// Sends an application-level `ping` and waits for its `pong`.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request_ok(json!({"op": "ping"})).await? {
            ServerFrame::Pong { .. } => Ok(()),
            other => Err(unexpected_response("pong", &other)),
        }
    }

    /// Sends `frame` (a JSON object) with a fresh `id` and returns the response as the server
    /// sent it. Error frames are returned as `Ok(ServerFrame::Error { .. })`.
    ///
    /// This serves tests that need a well-formed request with unusual fields, such as both
    /// `before` and `after` in a `history`.
    pub async fn request(&self, frame: Value) -> Result<ServerFrame, ClientError> {
        self.start_request(frame)?.await
    }

    /// Sends a text frame as is and returns the next response that no other request is
    /// waiting for. Error frames are returned as `Ok(ServerFrame::Error { .. })`.
    ///
    /// The text need not be valid JSON, so the response cannot be matched by `id`. Do not
    /// run it concurrently with other requests on this connection: their responses are
    /// matched first, but a response to another request that arrives after its caller gave
    /// up would be taken for this one. Events are not responses and still go to
    /// [`WsClient::next_event`].
    pub async fn send_raw_text(&self, text: impl Into<String>) -> Result<ServerFrame, ClientError> {
        self.send_raw(Message::text(text.into())).await
    }

    /// Sends a binary frame and returns the next response, like [`WsClient::send_raw_text`].
    pub async fn send_raw_binary(&self, data: Vec<u8>) -> Result<ServerFrame, ClientError> {
        self.send_raw(Message::binary(data)).await
    }

    /// Waits up to `timeout` for the next event (`message`, `edit`, `recall`, `receipt` or
    /// `typing`). Returns
    /// `None` on timeout, and at once when the connection is closed and no events are left.
    pub async fn next_event(&self, timeout: Duration) -> Option<ServerFrame> {
        let deadline = Instant::now() + timeout;
        let mut events = tokio::time::timeout_at(deadline, self.inner.events.lock())
            .await
            .ok()?;
        tokio::time::timeout_at(deadline, events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Returns the next queued event without waiting. Also returns `None` while another
    /// task is inside [`WsClient::next_event`].
    pub fn try_next_event(&self) -> Option<ServerFrame> {
        let mut events = self.inner.events.try_lock().ok()?;
        events.try_recv().ok()
    }

    /// Number of events dropped because the event queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped_events.load(Ordering::Relaxed)
    }

    /// Stops reading from the socket until [`WsClient::resume_reading`], so that tests can
    /// make the server see a slow consumer. Responses and events wait in the socket buffers
    /// meanwhile, so requests made while paused time out unless reading resumes.
    pub fn pause_reading(&self) {
        self.inner.reading.send_replace(false);
    }

    pub fn resume_reading(&self) {
        self.inner.reading.send_replace(true);
    }

    /// Starts a normal close (code 1000) and waits for the server to complete the close
    /// handshake. Returns at once if the connection is already closed.
    pub async fn close(&self) -> Result<(), ClientError> {
        if self.closed().is_some() {
            return Ok(());
        }

        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        // The writer is gone only when the connection already failed, which the reader
        // reports on its own.
        let _ = self.inner.outgoing.send(Message::Close(Some(frame)));

        match self.wait_closed(CLOSE_HANDSHAKE_TIMEOUT).await {
            Some(_) => Ok(()),
            None => Err(ClientError::Timeout),
        }
    }

    /// Returns the close code and reason once the connection is closed.
    ///
    /// They come from the server's close frame, including the reply to [`WsClient::close`].
    /// A close frame without a code reports 1005, and a connection that ended without a
    /// close frame reports 1006 with a description of the failure.
    pub fn closed(&self) -> Option<CloseInfo> {
        self.inner.closed.borrow().clone()
    }

    /// Waits up to `timeout` for the connection to close and returns what
    /// [`WsClient::closed`] would, or `None` if it is still open.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<CloseInfo> {
        let mut closed = self.inner.closed.clone();
        let waiting = async {
            let info = closed.wait_for(Option::is_some).await;
            info.map(|info| info.clone())
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(Ok(info)) => info,
            // The reader always sets the close before it ends, so a dropped sender means it
            // panicked. Report what is known instead of hanging.
            Ok(Err(_)) => self.closed(),
            Err(_) => None,
        }
    }

    /// Sends a request and returns its response, with error frames turned into
    /// [`ClientError::Server`].
    async fn request_ok(&self, frame: Value) -> Result<ServerFrame, ClientError> {
        server_error_to_err(self.start_request(frame)?.await?)
    }

    /// Sends a request whose success is a bare `ok`.
    async fn request_plain_ok(&self, frame: Value) -> Result<(), ClientError> {
        match self.request_ok(frame).await? {
            ServerFrame::Ok { .. } => Ok(()),
            other => Err(unexpected_response("ok", &other)),
        }
    }

    /// Assigns an id, registers the request and queues its frame. The returned future waits
    /// for the response until the request timeout, counted from now.
    fn start_request(
        &self,
        mut frame: Value,
    ) -> Result<impl Future<Output = Result<ServerFrame, ClientError>> + Send + 'static, ClientError>
    {
        let Some(fields) = frame.as_object_mut() else {
            return Err(ClientError::Protocol(format!(
                "request is not a JSON object: {frame}"
            )));
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        fields.insert("id".to_string(), id.into());

        let (reply_tx, reply_rx) = oneshot::channel();
        self.inner.routes.register(id, reply_tx)?;
        let guard = PendingGuard::new(self.inner.routes.clone(), id);
        self.queue(Message::text(frame.to_string()))?;

        let deadline = Instant::now() + self.inner.request_timeout;
        Ok(async move {
            let _guard = guard;
            wait_reply(reply_rx, deadline).await
        })
    }

    async fn send_raw(&self, message: Message) -> Result<ServerFrame, ClientError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.inner.routes.register_raw(reply_tx)?;

        let deadline = Instant::now() + self.inner.request_timeout;
        let result = match self.queue(message) {
            Ok(()) => wait_reply(reply_rx, deadline).await,
            Err(error) => Err(error),
        };

        // Leaves no stale waiter behind after a timeout or a failed queue.
        self.inner.routes.clear_raw();
        result
    }

    /// Frames queued by this client that have not been flushed to the socket yet. An
    /// open-loop sender checks it to feel TCP backpressure: when the server stops reading,
    /// the count grows instead of the frames going out.
    pub fn unwritten_frames(&self) -> usize {
        self.inner.unwritten.load(Ordering::Acquire)
    }

    fn queue(&self, message: Message) -> Result<(), ClientError> {
        self.inner.unwritten.fetch_add(1, Ordering::AcqRel);
        self.inner.outgoing.send(message).map_err(|_| {
            let info = self.closed().unwrap_or_else(|| {
                (
                    ABNORMAL_CLOSURE,
                    "the WebSocket writer has stopped".to_string(),
                )
            });
            closed_error(&info)
        })
    }
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("closed", &self.closed())
            .field("dropped_events", &self.dropped_events())
            .finish_non_exhaustive()
    }
}

async fn wait_reply(
    reply: oneshot::Receiver<Result<ServerFrame, ClientError>>,
    deadline: Instant,
) -> Result<ServerFrame, ClientError> {
    match tokio::time::timeout_at(deadline, reply).await {
        Ok(Ok(response)) => response,
        // The reader fails every waiting request before it ends, so a dropped sender means
        // the reader task panicked.
        Ok(Err(_)) => Err(ClientError::Closed {
            code: ABNORMAL_CLOSURE,
            reason: "the WebSocket reader stopped".to_string(),
        }),
        Err(_) => Err(ClientError::Timeout),
    }
}

/// Opens a TCP connection to the host and port of `uri` from `local_ip`, with
/// `TCP_NODELAY` set like the connections that the system binds.
async fn connect_from(
    local_ip: IpAddr,
    uri: &tungstenite::http::Uri,
) -> Result<TcpStream, ClientError> {
    let failed = |message: String| ClientError::Connect {
        status: None,
        message,
    };
    let host = uri
        .host()
        .ok_or_else(|| failed(format!("URL {uri} has no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let server = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(format!("failed to resolve {host}: {e}")))?
        .find(|addr| addr.is_ipv4() == local_ip.is_ipv4())
        .ok_or_else(|| failed(format!("{host} has no address of the family of {local_ip}")))?;

    let socket = match local_ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| failed(format!("failed to create a socket: {e}")))?;
    socket
        .bind(SocketAddr::new(local_ip, 0))
        .map_err(|e| failed(format!("failed to bind to {local_ip}: {e}")))?;
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| failed(format!("failed to connect from {local_ip} to {server}: {e}")))?;
    stream
        .set_nodelay(true)
        .map_err(|e| failed(format!("failed to set TCP_NODELAY: {e}")))?;
    Ok(stream)
}

fn build_upgrade_request(
    ws_base_url: &str,
    token: &str,
    token_in_query: bool,
) -> Result<tungstenite::handshake::client::Request, ClientError> {
    let mut url = format!("{}/v1/ws", ws_base_url.trim_end_matches('/'));
    if token_in_query && !token.is_empty() {
        // JWTs contain only base64url characters and dots, which need no escaping.
        url = format!("{url}?token={token}");
    }

    let mut request = url.as_str().into_client_request().map_err(connect_error)?;
    if !token_in_query && !token.is_empty() {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| {
            ClientError::Connect {
                status: None,
                message: format!("token is not a valid header value: {e}"),
            }
        })?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(request)
}

/// Keeps the HTTP status of a rejected upgrade, with the response body as the message.
fn connect_error(error: tungstenite::Error) -> ClientError {
    if let tungstenite::Error::Http(response) = &error {
        let body = response
            .body()
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        return ClientError::Connect {
            status: Some(response.status().as_u16()),
            message: format!("server rejected the upgrade: {body}"),
        };
    }
    ClientError::Connect {
        status: None,
        message: describe_error(&error),
    }
}

fn insert_some(frame: &mut Value, key: &str, value: Option<impl Into<Value>>) {
    if let (Some(fields), Some(value)) = (frame.as_object_mut(), value) {
        fields.insert(key.to_string(), value.into());
    }
}

fn server_error_to_err(frame: ServerFrame) -> Result<ServerFrame, ClientError> {
    match frame {
        ServerFrame::Error {
            code,
            message,
            retry_after_ms,
            resource,
            ..
        } => Err(ClientError::Server {
            code,
            message,
            retry_after_ms,
            resource,
        }),
        other => Ok(other),
    }
}

fn parse_send_ack(response: ServerFrame) -> Result<SendAck, ClientError> {
    match server_error_to_err(response)? {
        ServerFrame::Ok {
            seq: Some(seq),
            ts: Some(ts),
            duplicate,
            ..
        } => Ok(SendAck { seq, ts, duplicate }),
        other => Err(unexpected_response("ok with seq and ts", &other)),
    }
}

/// Reads the time of an edit or a recall from its `ok`.
fn parse_change_ack(response: ServerFrame) -> Result<u64, ClientError> {
    match response {
        ServerFrame::Ok { ts: Some(ts), .. } => Ok(ts),
        other => Err(unexpected_response("ok with ts", &other)),
    }
}

fn unexpected_response(expected: &str, frame: &ServerFrame) -> ClientError {
    ClientError::Protocol(format!("expected {expected} response, got {frame:?}"))
}
