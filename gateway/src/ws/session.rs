//! One WebSocket session: a task that reads client frames, runs each request as its own
//! task, and is the only writer of the socket (responses, events, pings, the close frame).

use std::{cell::Cell, rc::Rc, time::Duration};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use bulkhead_engine::{CloseReason, Outbound, TenantHandle};
use bulkhead_proto::ServerFrame;
use bulkhead_storage::UserId;
use futures_util::StreamExt;
use tokio::{sync::mpsc, time::Instant};
use tracing::Instrument;

use super::{frames, ops};
use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub max_consecutive_invalid_frames: u32,
}

/// Why the session loop ended, and so which close frame to send.
enum Ending {
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    Close(actix_ws::CloseReason),
}

struct Counters {
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

pub async fn run(
    tenant: TenantHandle,
    user: UserId,
    settings: SessionSettings,
    socket: Session,
    stream: AggregatedMessageStream,
) {
    let tenant_id = tenant.store().tenant().to_string();
    let (guard, outbound) = tenant.register_session(user.clone());
    let span = tracing::info_span!("session", tenant = %tenant_id, user = %user, session = guard.id());

    let counters = Counters {
        bytes_in: metrics::counter!("bulkhead_tenant_bytes_total", "tenant" => tenant_id.clone(), "direction" => "in"),
        bytes_out: metrics::counter!("bulkhead_tenant_bytes_total", "tenant" => tenant_id, "direction" => "out"),
    };
    let loop_state = SessionLoop {
        tenant,
        user,
        session_id: guard.id(),
        settings,
        socket,
        counters,
        in_flight: Rc::new(Cell::new(0)),
        invalid_in_a_row: 0,
    };
    loop_state.run(stream, outbound).instrument(span).await;
    drop(guard);
}

struct SessionLoop {
    tenant: TenantHandle,
    user: UserId,
    session_id: u64,
    settings: SessionSettings,
    socket: Session,
    counters: Counters,
    /// Requests whose response has not been queued yet. A closing session waits for them, so
    /// that every accepted send gets its `ok` before the close frame.
    in_flight: Rc<Cell<usize>>,
    invalid_in_a_row: u32,
}

impl SessionLoop {
    async fn run(mut self, mut stream: AggregatedMessageStream, mut outbound: mpsc::UnboundedReceiver<Outbound>) {
        tracing::debug!("session opened");
        let (responses_tx, mut responses) = mpsc::unbounded_channel::<String>();
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        let mut last_heard = Instant::now();
        let mut closing: Option<CloseReason> = None;

        let ending = loop {
            if let Some(reason) = closing {
                if self.in_flight.get() == 0 {
                    while let Ok(text) = responses.try_recv() {
                        let _ = self.write(text).await;
                    }
                    break Ending::Close(close_frame(reason));
                }
            }

            tokio::select! {
                message = stream.next(), if closing.is_none() => {
                    last_heard = Instant::now();
                    match self.on_client_message(message, &responses_tx).await {
                        Ok(()) => {}
                        Err(ending) => break ending,
                    }
                }
                Some(out) = outbound.recv() => match out {
                    Outbound::Frame(frame) => {
                        if self.write(frame.to_string()).await.is_err() {
                            break Ending::ClientGone;
                        }
                    }
                    Outbound::Close(reason) => closing = Some(reason),
                },
                Some(text) = responses.recv() => {
                    if self.write(text).await.is_err() {
                        break Ending::ClientGone;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.settings.idle_timeout {
                        break Ending::Close(actix_ws::CloseReason {
                            code: CloseCode::Normal,
                            description: Some("idle timeout".into()),
                        });
                    }
                    if self.socket.ping(b"").await.is_err() {
                        break Ending::ClientGone;
                    }
                }
            }
        };

        if let Ending::Close(reason) = ending {
            tracing::debug!(code = ?reason.code, "closing session");
            let _ = self.socket.close(Some(reason)).await;
        } else {
            tracing::debug!("session ended by the client");
        }
    }

    /// Handles one item from the client. `Err` ends the session.
    async fn on_client_message(
        &mut self,
        message: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
        responses: &mpsc::UnboundedSender<String>,
    ) -> Result<(), Ending> {
        match message {
            None | Some(Ok(AggregatedMessage::Close(_))) => Err(Ending::ClientGone),
            Some(Ok(AggregatedMessage::Text(text))) => {
                self.counters.bytes_in.increment(text.len() as u64);
                self.on_text(&text, responses).await
            }
            Some(Ok(AggregatedMessage::Binary(bytes))) => {
                self.counters.bytes_in.increment(bytes.len() as u64);
                self.reject(None, ApiError::invalid("binary frames are not supported; send JSON text frames"))
                    .await
            }
            Some(Ok(AggregatedMessage::Ping(payload))) => {
                self.socket.pong(&payload).await.map_err(|_| Ending::ClientGone)
            }
            Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
            Some(Err(err)) => {
                tracing::info!(error = %err, "closing session after a protocol error");
                let code = match err {
                    actix_ws::ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                Err(Ending::Close(actix_ws::CloseReason {
                    code,
                    description: Some(err.to_string()),
                }))
            }
        }
    }

    async fn on_text(&mut self, text: &str, responses: &mpsc::UnboundedSender<String>) -> Result<(), Ending> {
        let frame = match frames::parse(text) {
            Ok(frame) => frame,
            Err(rejected) => return self.reject(rejected.id, rejected.error).await,
        };
        self.invalid_in_a_row = 0;

        // Each request runs as its own task, so a client can pipeline sends: their acks come
        // back as the commits finish, in any order, matched by `id`.
        let in_flight = self.in_flight.clone();
        in_flight.set(in_flight.get() + 1);
        let responses = responses.clone();
        let task = ops::execute(self.tenant.clone(), self.user.clone(), self.session_id, frame.id, frame.request);
        actix_web::rt::spawn(
            async move {
                let response = task.await;
                let _ = responses.send(to_text(&response));
                in_flight.set(in_flight.get() - 1);
            }
            .in_current_span(),
        );
        Ok(())
    }

    /// Replies to an invalid frame with an error; too many in a row close the session.
    async fn reject(&mut self, id: Option<Box<serde_json::value::RawValue>>, error: ApiError) -> Result<(), Ending> {
        self.invalid_in_a_row += 1;
        let text = to_text(&ops::error_frame(id, error));
        self.write(text).await.map_err(|_| Ending::ClientGone)?;

        if self.invalid_in_a_row >= self.settings.max_consecutive_invalid_frames {
            tracing::info!(frames = self.invalid_in_a_row, "closing session after repeated invalid frames");
            return Err(Ending::Close(actix_ws::CloseReason {
                code: CloseCode::Policy,
                description: Some("too many invalid frames".into()),
            }));
        }
        Ok(())
    }

    async fn write(&mut self, text: String) -> Result<(), actix_ws::Closed> {
        self.counters.bytes_out.increment(text.len() as u64);
        self.socket.text(text).await
    }
}

fn to_text(frame: &ServerFrame) -> String {
    serde_json::to_string(frame).expect("server frames serialize to JSON")
}

fn close_frame(reason: CloseReason) -> actix_ws::CloseReason {
    let (code, description) = match reason {
        CloseReason::ServerShutdown => (CloseCode::Away, "server shutting down"),
        CloseReason::TenantSuspended => (CloseCode::Other(4003), "tenant suspended"),
        CloseReason::TenantDeleted => (CloseCode::Other(4004), "tenant deleted"),
        CloseReason::UserDeleted => (CloseCode::Other(4004), "user deleted"),
    };
    actix_ws::CloseReason {
        code,
        description: Some(description.into()),
    }
}
