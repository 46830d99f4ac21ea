//! One WebSocket session: a task that reads client frames, runs each request as its own
//! task, and is the only writer of the socket (responses, events, pings, the close frame).
//!
//! The tenant's bandwidth quotas are applied here. When a received frame is handled, the
//! session takes its size from the tenant's ingress token bucket. When the bucket cannot
//! cover it, the session stops reading (but not writing) until it refills, so the client's
//! next frames wait in TCP buffers and TCP pushes back on the client.
//!
//! Before a frame is written, the session takes its size from the egress bucket. When that
//! is empty, deliveries wait in the session's queue, where they count against the tenant's
//! memory quota and the session's pending limit.
//!
//! The CPU the session and its requests use is charged to the tenant's CPU quota
//! ([`Charged`]). While the tenant is over that quota the session reads nothing, so a
//! capped tenant cannot make the gateway parse and admit its flood faster than its quota.

use std::{cell::Cell, rc::Rc, sync::Arc, time::Duration};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use bulkhead_engine::{quota::TenantQuota, CloseReason, Outbound, SessionGuard, TenantHandle};
use bulkhead_proto::ServerFrame;
use bulkhead_storage::UserId;
use futures_util::StreamExt;
use tokio::{sync::mpsc, time::Instant};
use tracing::Instrument;

use super::{cpu::Charged, frames, ops};
use crate::error::ApiError;

/// Maximum single pause for a bandwidth token; the session re-checks after it, so a quota
/// raised by `PATCH` takes effect within this time.
const MAX_THROTTLE_PAUSE: Duration = Duration::from_millis(250);

/// Number of frames a session reads or writes before it lets the other tasks of its worker
/// thread run, so that a quiet session waits behind at most two frames of a busy one. It was
/// lowered from 8 together with the scheduler changes measured in the CPU-bound
/// noisy-neighbour benchmark; its own share of that gain was not measured.
const ITEMS_PER_YIELD: u32 = 2;

/// How long a closing session waits to queue its close frame when the client is not reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub max_consecutive_invalid_frames: u32,
}

/// The reason the session loop ended, which decides the close frame to send.
enum Ending {
    /// The client closed or vanished; nothing more to send.
    ClientGone,
    Close(actix_ws::CloseReason),
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

    let quota = tenant.quota().clone();
    let session = SessionLoop {
        quota: quota.clone(),
        tenant,
        user,
        guard,
        settings,
        socket,
        in_flight: Rc::new(Cell::new(0)),
        invalid_in_a_row: 0,
        ingress_debt: 0,
        read_resume_at: Instant::now(),
        rejected_until: Rc::new(Cell::new(None)),
    };
    Charged::new(quota, session.run(stream, outbound)).instrument(span).await;
}

struct SessionLoop {
    tenant: TenantHandle,
    quota: Arc<TenantQuota>,
    user: UserId,
    guard: SessionGuard,
    settings: SessionSettings,
    socket: Session,
    /// Requests whose response has not been queued yet. A closing session waits for them, so
    /// that every accepted send gets its `ok` before the close frame.
    in_flight: Rc<Cell<usize>>,
    invalid_in_a_row: u32,
    /// Bytes already read that the ingress bucket has not covered yet. While it is above
    /// zero the session reads nothing, but it keeps writing acks and events.
    ingress_debt: u64,
    /// When to try to pay `ingress_debt` again.
    read_resume_at: Instant,
    /// Set by a send that got `quota_exceeded` for memory: the session reads nothing until
    /// then, so a client that keeps flooding a full backlog costs no CPU for rejections.
    rejected_until: Rc<Cell<Option<Instant>>>,
}

impl SessionLoop {
    async fn run(mut self, mut stream: AggregatedMessageStream, mut outbound: mpsc::UnboundedReceiver<Outbound>) {
        tracing::debug!("session opened");
        let (responses_tx, mut responses) = mpsc::unbounded_channel::<String>();
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        let mut last_heard = Instant::now();
        let mut closing: Option<CloseReason> = None;

        let mut handled: u32 = 0;
        let ending = loop {
            // The loop keeps going inside one poll while frames are ready, so a busy session
            // would hold its worker thread, and every session on it, until it runs dry.
            handled += 1;
            if handled % ITEMS_PER_YIELD == 0 {
                tokio::task::yield_now().await;
            }
            let read_paused_until = self.read_paused_until();
            if let Some(reason) = closing {
                if self.in_flight.get() == 0 {
                    while let Ok(text) = responses.try_recv() {
                        let _ = self.write(text).await;
                    }
                    break Ending::Close(close_frame(reason));
                }
            }

            tokio::select! {
                _ = self.guard.slow_consumer() => break Ending::Close(close_frame(CloseReason::SlowConsumer)),
                message = stream.next(), if closing.is_none() && self.ingress_debt == 0 && read_paused_until.is_none() => {
                    last_heard = Instant::now();
                    if let Err(ending) = self.on_client_message(message, &responses_tx).await {
                        break ending;
                    }
                }
                Some(out) = outbound.recv() => match out {
                    Outbound::Frame { text, accepted_at } => {
                        if let Err(ending) = self.deliver(&text, accepted_at).await {
                            break ending;
                        }
                    }
                    Outbound::Close(reason) => closing = Some(reason),
                },
                _ = tokio::time::sleep_until(self.read_resume_at), if self.ingress_debt > 0 => {
                    self.pay_ingress_debt();
                }
                _ = tokio::time::sleep_until(read_paused_until.unwrap_or_else(Instant::now)), if read_paused_until.is_some() => {}
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

        match ending {
            Ending::Close(reason) => {
                tracing::debug!(code = ?reason.code, "closing session");
                // A client that does not read cannot take the close frame; give up after a while.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.close(Some(reason))).await;
            }
            Ending::ClientGone => tracing::debug!("session ended by the client"),
        }
    }

    /// Writes one pushed frame after taking its size from the egress bucket. The wait and the
    /// write both give way when the session is marked a slow consumer.
    async fn deliver(&mut self, text: &Arc<str>, accepted_at: Option<std::time::Instant>) -> Result<(), Ending> {
        let bytes = text.len() as u64;
        let (socket, quota, guard) = (&mut self.socket, &self.quota, &self.guard);
        let result = tokio::select! {
            written = async {
                wait_for_tokens(|| quota.take_egress(bytes)).await;
                write_text(socket, quota, text.to_string()).await
            } => written.map_err(|_| Ending::ClientGone),
            _ = guard.slow_consumer() => Err(Ending::Close(close_frame(CloseReason::SlowConsumer))),
        };
        self.guard.frame_done(bytes);
        if result.is_ok() {
            if let Some(accepted_at) = accepted_at {
                self.quota.metrics.messages_out(1);
                self.quota.metrics.delivered(accepted_at.elapsed());
            }
        }
        result
    }

    /// Handles one item from the client. `Err` ends the session.
    async fn on_client_message(
        &mut self,
        message: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
        responses: &mpsc::UnboundedSender<String>,
    ) -> Result<(), Ending> {
        match message {
            None => Err(Ending::ClientGone),
            // Reply to the client's close frame with one of our own, as RFC 6455 requires.
            Some(Ok(AggregatedMessage::Close(reason))) => Err(Ending::Close(reason.unwrap_or(actix_ws::CloseReason {
                code: CloseCode::Normal,
                description: None,
            }))),
            Some(Ok(AggregatedMessage::Text(text))) => {
                self.receive(text.len() as u64);
                self.on_text(&text, responses).await
            }
            Some(Ok(AggregatedMessage::Binary(bytes))) => {
                self.receive(bytes.len() as u64);
                self.reject(None, ApiError::invalid("binary frames are not supported; send JSON text frames"))
                    .await
            }
            Some(Ok(AggregatedMessage::Ping(payload))) => {
                self.socket.pong(&payload).await.map_err(|_| Ending::ClientGone)
            }
            Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
            // A client that drops the connection without a close frame is gone, not in error.
            Some(Err(actix_ws::ProtocolError::Io(err))) => {
                tracing::debug!(error = %err, "connection lost");
                Err(Ending::ClientGone)
            }
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

    /// When reading is paused: after a memory rejection until its `retry_after_ms`, and while
    /// the tenant is over its CPU quota until it may run again (at most `MAX_THROTTLE_PAUSE`,
    /// so that a raised quota applies quickly).
    fn read_paused_until(&self) -> Option<Instant> {
        let now = Instant::now();
        let rejected = self.rejected_until.get().filter(|until| *until > now);
        let over_cpu = self.quota.check_cpu().err().map(|wait| now + wait.min(MAX_THROTTLE_PAUSE));
        rejected.max(over_cpu)
    }

    /// Counts a received frame and takes its size from the ingress bucket. When the bucket
    /// cannot cover it, the frame is still handled, but the session reads nothing more until
    /// the bucket has refilled by the frame's size.
    fn receive(&mut self, bytes: u64) {
        self.quota.metrics.bytes_in(bytes, self.quota.now());
        self.ingress_debt = bytes;
        self.pay_ingress_debt();
    }

    fn pay_ingress_debt(&mut self) {
        match self.quota.take_ingress(self.ingress_debt) {
            Ok(()) => self.ingress_debt = 0,
            Err(wait) => self.read_resume_at = Instant::now() + wait.min(MAX_THROTTLE_PAUSE),
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
        let rejected_until = self.rejected_until.clone();
        let task = ops::execute(self.tenant.clone(), self.user.clone(), self.guard.id(), frame.id, frame.request);
        actix_web::rt::spawn(Charged::new(
            self.quota.clone(),
            async move {
                let response = task.await;
                if let Some(retry_after) = memory_rejection(&response) {
                    rejected_until.set(Some(Instant::now() + retry_after));
                }
                let _ = responses.send(to_text(&response));
                in_flight.set(in_flight.get() - 1);
            }
            .in_current_span(),
        ));
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
        write_text(&mut self.socket, &self.quota, text).await
    }
}

async fn write_text(socket: &mut Session, quota: &TenantQuota, text: String) -> Result<(), actix_ws::Closed> {
    quota.metrics.bytes_out(text.len() as u64, quota.now());
    socket.text(text).await
}

/// Calls `take` until it succeeds, sleeping for the wait it returns (at most
/// `MAX_THROTTLE_PAUSE` at a time, so that a raised quota applies quickly).
async fn wait_for_tokens(mut take: impl FnMut() -> Result<(), Duration>) {
    while let Err(wait) = take() {
        tokio::time::sleep(wait.min(MAX_THROTTLE_PAUSE)).await;
    }
}

/// Returns the retry delay when `frame` rejects a send because the tenant's backlog is full.
fn memory_rejection(frame: &ServerFrame) -> Option<Duration> {
    match frame {
        ServerFrame::Error {
            code: bulkhead_proto::ErrorCode::QuotaExceeded,
            resource: Some(resource),
            retry_after_ms: Some(ms),
            ..
        } if resource == "memory" => Some(Duration::from_millis(*ms)),
        _ => None,
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
        CloseReason::SlowConsumer => (CloseCode::Other(4008), "slow consumer"),
    };
    actix_ws::CloseReason {
        code,
        description: Some(description.into()),
    }
}
