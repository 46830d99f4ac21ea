//! The background tasks that own the socket: one reads and routes frames, one writes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bulkhead_proto::ServerFrame;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::routes::Routes;
use super::{CloseInfo, Socket};
use crate::error::{describe_error, ClientError, ABNORMAL_CLOSURE};
use crate::frame::{decode_server_frame, is_response, numeric_response_id, salvage_id};

/// Close code RFC 6455 reserves for a close frame that carries no code.
const NO_STATUS_RECEIVED: u16 = 1005;

/// The half of the connection that reads frames and routes them.
pub(super) struct Reader {
    pub(super) routes: Arc<Routes>,
    pub(super) events: mpsc::Sender<ServerFrame>,
    pub(super) dropped_events: Arc<AtomicU64>,
    pub(super) closed: watch::Sender<Option<CloseInfo>>,
    pub(super) reading: watch::Receiver<bool>,
}

impl Reader {
    pub(super) async fn run(mut self, mut stream: SplitStream<Socket>) {
        let end = loop {
            // An error means every client handle is gone, and then reading goes on so that
            // the close handshake started by the writer can finish.
            let _ = self.reading.wait_for(|reading| *reading).await;

            match stream.next().await {
                Some(Ok(Message::Text(text))) => self.route(text.as_str()),
                Some(Ok(Message::Close(frame))) => self.on_close_frame(frame),
                Some(Ok(Message::Binary(data))) => {
                    tracing::warn!(bytes = data.len(), "ignoring binary WebSocket frame");
                }
                // tungstenite queues the pong for a ping itself, and sends it on the next
                // read or write.
                Some(Ok(_)) => {}
                Some(Err(error)) => break describe_error(&error),
                None => break "connection ended without a close frame".to_string(),
            }
        };

        // Keeps the code from the server's close frame if one arrived before the end.
        let info = self.routes.close((ABNORMAL_CLOSURE, end));
        tracing::debug!(code = info.0, reason = %info.1, "WebSocket connection ended");
        self.closed.send_replace(Some(info));
    }

    /// Fails the waiting requests as soon as the server's close frame arrives. The loop goes
    /// on reading until the socket ends, which lets tungstenite send the close reply.
    fn on_close_frame(&self, frame: Option<CloseFrame>) {
        let info = match frame {
            Some(frame) => (u16::from(frame.code), frame.reason.to_string()),
            None => (NO_STATUS_RECEIVED, String::new()),
        };
        let info = self.routes.close(info);
        self.closed.send_replace(Some(info));
    }

    fn route(&self, text: &str) {
        let frame = match decode_server_frame(text) {
            Ok(frame) => frame,
            Err(error) => return self.route_undecodable(text, error),
        };

        if !is_response(&frame) {
            return self.queue_event(frame);
        }

        let id = numeric_response_id(&frame);
        if let Some(Ok(frame)) = self.routes.deliver(id, Ok(frame)) {
            tracing::warn!(?frame, "dropping response that no request is waiting for");
        }
    }

    /// Fails the request that an undecodable response belongs to, found by its `id` or else
    /// the raw frame waiting for a response. Undecodable events are logged and dropped.
    fn route_undecodable(&self, text: &str, error: ClientError) {
        if let Some(id) = salvage_id(text) {
            if self.routes.deliver(id, Err(error.clone())).is_none() {
                return;
            }
        }
        tracing::warn!(%error, frame = %truncate(text, 200), "dropping undecodable server frame");
    }

    fn queue_event(&self, frame: ServerFrame) {
        match self.events.try_send(frame) {
            Ok(()) => {}
            // Every client handle was dropped, so no caller can read the event.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.dropped_events.fetch_add(1, Ordering::Relaxed) + 1;
                // Logs the 1st, 2nd, 4th, 8th... drop, so a flood of drops stays readable.
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "event queue is full, dropping events");
                }
            }
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Sends queued frames, flushing once per batch so a pipelining caller does not pay one
/// flush per frame.
pub(super) async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    unwritten: Arc<AtomicUsize>,
) {
    while let Some(first) = outgoing.recv().await {
        let mut message = first;
        let mut batch = 0;
        let closing = loop {
            let closing = message.is_close();
            batch += 1;
            if let Err(error) = sink.feed(message).await {
                // The reader sees the same failure and reports it with the close code.
                tracing::debug!(error = %describe_error(&error), "WebSocket write failed");
                return;
            }
            if closing {
                break true;
            }
            match outgoing.try_recv() {
                Ok(next) => message = next,
                Err(_) => break false,
            }
        };

        if let Err(error) = sink.flush().await {
            tracing::debug!(error = %describe_error(&error), "WebSocket flush failed");
            return;
        }
        unwritten.fetch_sub(batch, Ordering::AcqRel);
        if closing {
            return;
        }
    }

    // Every client handle is gone, so the session is over. Closing lets the server free it
    // at once instead of waiting for a timeout.
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
