//! The traffic of one tenant in the noisy-neighbour scenario: one sender and one event
//! recorder per connection, all in the tenant's one group conversation.
//!
//! Senders are open loop. A send is due at fixed intervals and is queued without waiting for
//! earlier acks, so a slow server does not lower the offered rate. Every ack and every
//! received `message` event is kept with its times, and the figures are computed afterwards
//! for the time windows of the phases.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_client::{ClientError, CloseInfo, SendAck, ServerFrame, WsClient, WsOptions};
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::provision::TenantSetup;
use crate::steady::{error_label, message_body, record_events, wait_until_true, BodyStamp, StopSignals};
use crate::verify::UNKNOWN_SENDER;

/// How often the delivery wait compares the delivered count with the expected one.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// When sends failed, the server may have stored some of them without an ack reaching the
/// client, so the delivered count can reach the expected one early. The delivery wait then
/// also waits until no event has arrived for this long.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

/// Number of unwritten frames in a sender's client at which it stops queueing further sends.
/// Enough to keep the socket busy between two checks; small next to a flood's rate.
const MAX_UNWRITTEN_FRAMES: usize = 256;

/// How often a sender held back by TCP checks whether its socket drained.
const PUSHBACK_RECHECK: Duration = Duration::from_millis(1);

/// When the sends of one connection are due: slot `k` at `start + k / rate`, for the slots
/// before `end`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub end: Instant,
    pub messages_per_sec: f64,
}

impl Schedule {
    /// Number of slots due at `now`: those whose time is not after `now` and before `end`.
    pub fn slots_due(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        let until = now.min(self.end);
        let elapsed = (until - self.start).as_secs_f64();
        let due = (elapsed * self.messages_per_sec).floor() as u64 + 1;
        if until == self.end {
            // The slot exactly at `end` is not part of the schedule.
            due.min(self.total_slots())
        } else {
            due
        }
    }

    /// Number of slots in the schedule.
    pub fn total_slots(&self) -> u64 {
        let length = (self.end - self.start).as_secs_f64();
        (length * self.messages_per_sec).ceil() as u64
    }

    pub fn slot_time(&self, slot: u64) -> Instant {
        self.start + Duration::from_secs_f64(slot as f64 / self.messages_per_sec)
    }
}

/// Bytes of a `send` frame as the client serializes it, which is what the server charges to
/// the tenant's ingress bucket. `request_id` is the frame's `id`, which the client numbers
/// from 1 on each connection. The conversation and `client_msg_id` must need no JSON
/// escapes, which holds for the ids this tool creates.
pub fn send_frame_bytes(
    conversation: &str,
    client_msg_id: &str,
    body_bytes: usize,
    request_id: u64,
) -> u64 {
    const FIXED: usize = r#"{"body":,"client_msg_id":"","conv":"","id":,"op":"send"}"#.len();
    let id_digits = request_id
        .checked_ilog10()
        .map_or(1, |log| log as usize + 1);
    (FIXED + body_bytes + client_msg_id.len() + conversation.len() + id_digits) as u64
}

/// `client_msg_id` of the send in `slot` on the connection with index `connection`.
pub fn client_msg_id(connection: usize, slot: u64) -> String {
    format!("c{connection}-m{slot}")
}

/// A send that the server acked.
#[derive(Debug, Clone, Copy)]
pub struct AckRecord {
    pub seq: u64,
    /// Slot of the send in its connection's schedule, which gives its `client_msg_id`.
    pub slot: u64,
    /// Times in nanoseconds since the run's origin: when the slot was due, when the frame
    /// was queued and when the ack arrived.
    pub due_ns: u64,
    pub sent_ns: u64,
    pub acked_ns: u64,
    pub frame_bytes: u64,
}

/// The counts and acks of one sender.
#[derive(Debug, Default)]
pub struct SenderOutcome {
    /// Sends queued on the connection.
    pub sent: u64,
    /// Slots that were due while the window was full, and so never sent.
    pub skipped: u64,
    /// Slots of the schedule not sent because TCP pushed back until the schedule ended.
    pub held_back: u64,
    pub acked: Vec<AckRecord>,
    /// Failed sends by label: the server's error code, with the resource for
    /// `quota_exceeded`, or the kind of client-side failure.
    pub errors: BTreeMap<String, u64>,
}

/// A `message` event of the tenant's conversation that a member received.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub seq: u64,
    /// Index of the sending member, or [`UNKNOWN_SENDER`].
    pub sender: u32,
    /// Send time from the body, in nanoseconds since the origin; `None` when unreadable.
    pub sent_ns: Option<u64>,
    pub received_ns: u64,
}

/// The events that one connection's recorder received.
#[derive(Debug, Default)]
pub struct RecorderOutcome {
    /// Deliveries in arrival order.
    pub deliveries: Vec<Delivery>,
    /// `message` events of another conversation.
    pub foreign_messages: u64,
    /// Receipts and typing events, which no one in this scenario triggers.
    pub other_events: u64,
    /// Events the client dropped because its event queue was full.
    pub dropped_events: u64,
    /// Set when the server closed the connection before the end of the run.
    pub closed_early: Option<CloseInfo>,
}

/// Results of one tenant, in member order.
#[derive(Debug, Default)]
pub struct TrafficOutcome {
    pub senders: Vec<SenderOutcome>,
    pub recorders: Vec<RecorderOutcome>,
}

/// Everything [`drive`] needs for one tenant.
pub struct TrafficPlan {
    pub setup: TenantSetup,
    pub clients: Vec<WsClient>,
    /// The run-wide clock: bodies carry their send time in nanoseconds since `origin`.
    pub origin: Instant,
    /// Schedule of each connection, in member order.
    pub schedules: Vec<Schedule>,
    pub body_bytes: usize,
    /// Maximum sends per connection waiting for their ack; `None` for no limit.
    pub window: Option<usize>,
    /// Time after the end of the schedules to wait for acks.
    pub ack_wait: Duration,
    /// Time after the last sender finished to wait for deliveries.
    pub delivery_wait: Duration,
    pub signals: StopSignals,
}

/// Opens one WebSocket connection per member of `setup`, in member order.
pub async fn connect_members(
    ws_url: &str,
    setup: &TenantSetup,
    request_timeout: Duration,
) -> Result<Vec<WsClient>, String> {
    let options = WsOptions {
        request_timeout,
        ..WsOptions::default()
    };
    let connecting = setup
        .members
        .iter()
        .map(|member| WsClient::connect_with(ws_url, &member.token, options.clone()));
    let mut clients = Vec::with_capacity(setup.members.len());
    for (result, member) in join_all(connecting).await.into_iter().zip(&setup.members) {
        let client = result.map_err(|e| {
            format!(
                "failed to connect {} of tenant {}: {e}",
                member.user, setup.tenant
            )
        })?;
        clients.push(client);
    }
    Ok(clients)
}

/// Runs the senders and event recorders of one tenant until the schedules end, waits for the
/// outstanding acks and then for the deliveries, as long as the plan allows, and closes the
/// connections.
pub async fn drive(plan: TrafficPlan) -> Result<TrafficOutcome, String> {
    let tenant = plan.setup.tenant.clone();
    let conversation: Arc<str> = plan.setup.conversation.as_str().into();
    let member_index: Arc<HashMap<String, u32>> = Arc::new(
        (plan.setup.members.iter().enumerate())
            .map(|(index, member)| (member.user.clone(), index as u32))
            .collect(),
    );
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_recording_tx, stop_recording) = watch::channel(false);
    let ack_deadline = plan
        .schedules
        .iter()
        .map(|s| s.end)
        .max()
        .unwrap_or(plan.origin)
        + plan.ack_wait;

    let mut recorders = Vec::new();
    let mut senders = Vec::new();
    for (index, ((client, member), schedule)) in plan
        .clients
        .iter()
        .zip(&plan.setup.members)
        .zip(&plan.schedules)
        .enumerate()
    {
        let label = format!("{tenant}/{}", member.user);
        let recorder = EventRecorder {
            ws: client.clone(),
            conversation: conversation.clone(),
            member_index: member_index.clone(),
            origin: plan.origin,
            stop: stop_recording.clone(),
            delivered: delivered.clone(),
            label: label.clone(),
        };
        recorders.push(tokio::spawn(recorder.run()));

        let sender = PacedSender {
            ws: client.clone(),
            conversation: conversation.clone(),
            connection: index,
            schedule: *schedule,
            body_bytes: plan.body_bytes,
            window: plan.window,
            origin: plan.origin,
            ack_deadline,
            signals: plan.signals.clone(),
            acked: acked.clone(),
            failed: failed.clone(),
            label,
        };
        senders.push(tokio::spawn(sender.run()));
    }

    let mut outcome = TrafficOutcome::default();
    for result in join_all(senders).await {
        outcome
            .senders
            .push(result.map_err(|e| format!("a sender task of {tenant} failed: {e}"))?);
    }

    let others = plan.clients.len() as u64 - 1;
    let expected = || acked.load(Ordering::Relaxed) * others;
    let any_failed = failed.load(Ordering::Relaxed) > 0;
    let mut abort = plan.signals.abort.clone();
    wait_for_deliveries(
        &tenant,
        &delivered,
        expected,
        any_failed,
        plan.delivery_wait,
        &mut abort,
    )
    .await;
    stop_recording_tx.send_replace(true);

    for result in join_all(recorders).await {
        outcome
            .recorders
            .push(result.map_err(|e| format!("an event recorder of {tenant} failed: {e}"))?);
    }
    close_connections(&tenant, &plan.clients, &plan.setup).await;
    Ok(outcome)
}

/// Waits until `delivered` reaches `expected()`, `drain` has passed, or the second Ctrl-C.
async fn wait_for_deliveries(
    tenant: &str,
    delivered: &AtomicU64,
    expected: impl Fn() -> u64,
    any_failed: bool,
    drain: Duration,
    abort: &mut watch::Receiver<bool>,
) {
    let deadline = Instant::now() + drain;
    let mut last_delivered = delivered.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let now_delivered = delivered.load(Ordering::Relaxed);
        if now_delivered != last_delivered {
            last_delivered = now_delivered;
            last_change = Instant::now();
        }
        if now_delivered >= expected() && (!any_failed || last_change.elapsed() >= QUIET_PERIOD) {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                %tenant,
                delivered = now_delivered,
                expected = expected(),
                drain_secs = drain.as_secs(),
                "deliveries still outstanding after the drain time"
            );
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL_INTERVAL) => {}
            _ = wait_until_true(abort) => {
                tracing::warn!(%tenant, "stopped waiting for deliveries after the second Ctrl-C");
                return;
            }
        }
    }
}

async fn close_connections(tenant: &str, clients: &[WsClient], setup: &TenantSetup) {
    let closing = clients.iter().map(|client| client.close());
    for (result, member) in join_all(closing).await.into_iter().zip(&setup.members) {
        if let Err(error) = result {
            tracing::warn!(%tenant, user = %member.user, %error, "failed to close the connection");
        }
    }
}

/// Returns the label under which a failed send is counted, with the resource of a
/// `quota_exceeded` error, such as `quota_exceeded:memory`.
fn failure_label(error: &ClientError) -> String {
    match error {
        ClientError::Server {
            resource: Some(resource),
            ..
        } => format!("{}:{resource}", error_label(error)),
        _ => error_label(error),
    }
}

fn nanos_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// The sending half of one connection.
struct PacedSender {
    ws: WsClient,
    conversation: Arc<str>,
    /// Index of the connection in its tenant, which makes its `client_msg_id`s unique.
    connection: usize,
    schedule: Schedule,
    body_bytes: usize,
    window: Option<usize>,
    origin: Instant,
    /// Time after which acks still missing are counted as `abandoned`.
    ack_deadline: Instant,
    signals: StopSignals,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// `tenant/user`, for log lines.
    label: String,
}

/// A send waiting for its ack: slot, due time, queue time and frame bytes.
type PendingSend = (u64, Instant, Instant, u64);

impl PacedSender {
    /// Queues each slot's send when it is due, until the schedule ends or Ctrl-C, and then
    /// waits for the remaining acks until the ack deadline.
    async fn run(mut self) -> SenderOutcome {
        let mut outcome = SenderOutcome::default();
        let mut in_flight = FuturesUnordered::new();
        let mut next_slot: u64 = 0;
        let mut sending = true;
        let mut pushed_back = false;

        loop {
            if sending
                && (*self.signals.stop_sending.borrow() || Instant::now() >= self.schedule.end)
            {
                sending = false;
                outcome.held_back = self.schedule.slots_due(Instant::now()).saturating_sub(next_slot);
            }
            if sending {
                let due = self.schedule.slots_due(Instant::now());
                pushed_back = false;
                while sending && next_slot < due {
                    // A real client cannot write faster than the server reads: once TCP
                    // pushes back, due slots wait here (their latency still counts from the
                    // due time) instead of piling up as frames in the client's memory.
                    if self.ws.unwritten_frames() >= MAX_UNWRITTEN_FRAMES {
                        pushed_back = true;
                        break;
                    }
                    let slot = next_slot;
                    next_slot += 1;
                    if self.window.is_some_and(|window| in_flight.len() >= window) {
                        outcome.skipped += 1;
                        continue;
                    }
                    match self.send(slot, outcome.sent) {
                        Ok(pending) => {
                            outcome.sent += 1;
                            in_flight.push(pending);
                        }
                        Err(error) => {
                            // The connection is closed, so later sends would fail the same way.
                            self.record_failure(&mut outcome, &error);
                            sending = false;
                        }
                    }
                }
                // Records the acks that have already arrived, so that their time is not
                // taken after a long run of sends.
                while let Some(Some(((slot, due, sent, bytes), result))) =
                    in_flight.next().now_or_never()
                {
                    self.record(&mut outcome, slot, due, sent, bytes, result);
                }
            }

            if !sending && in_flight.is_empty() {
                break;
            }
            let next_due = if pushed_back {
                Instant::now() + PUSHBACK_RECHECK
            } else {
                self.schedule.slot_time(next_slot).min(self.schedule.end)
            };
            tokio::select! {
                Some(((slot, due, sent, bytes), result)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.record(&mut outcome, slot, due, sent, bytes, result);
                }
                _ = tokio::time::sleep_until(next_due), if sending => {}
                _ = wait_until_true(&mut self.signals.stop_sending), if sending => {}
                _ = tokio::time::sleep_until(self.ack_deadline), if !sending => {
                    tracing::warn!(
                        connection = %self.label,
                        sends = in_flight.len(),
                        "acks still missing at the end of the drain time; counted as abandoned"
                    );
                    self.abandon(&mut outcome, in_flight.len());
                    break;
                }
                _ = wait_until_true(&mut self.signals.abort) => {
                    self.abandon(&mut outcome, in_flight.len());
                    break;
                }
            }
        }
        outcome
    }

    /// Queues the send of `slot` and returns a future of its ack with the send's details.
    /// `sent_before` is the number of sends already queued on this connection.
    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        slot: u64,
        sent_before: u64,
    ) -> Result<
        impl std::future::Future<Output = (PendingSend, Result<SendAck, ClientError>)>,
        ClientError,
    > {
        let due = self.schedule.slot_time(slot);
        let sent = Instant::now();
        let client_msg_id = client_msg_id(self.connection, slot);
        // Senders are the only requests on their connection, so the client gives this
        // frame the id `sent_before + 1`.
        let bytes = send_frame_bytes(
            &self.conversation,
            &client_msg_id,
            self.body_bytes,
            sent_before + 1,
        );
        let body = message_body(self.body_bytes, nanos_since(self.origin, sent));
        let ack = self
            .ws
            .send_nowait(&self.conversation, &client_msg_id, body)?;
        Ok(ack.map(move |result| ((slot, due, sent, bytes), result)))
    }

    fn record(
        &self,
        outcome: &mut SenderOutcome,
        slot: u64,
        due: Instant,
        sent: Instant,
        frame_bytes: u64,
        result: Result<SendAck, ClientError>,
    ) {
        match result {
            Ok(ack) if ack.duplicate => {
                // Every client_msg_id is new, so the server must not report a duplicate.
                tracing::warn!(
                    connection = %self.label,
                    seq = ack.seq,
                    "server acked a new message as a duplicate"
                );
                self.count_failure(outcome, "duplicate_ack".to_string());
            }
            Ok(ack) => {
                outcome.acked.push(AckRecord {
                    seq: ack.seq,
                    slot,
                    due_ns: nanos_since(self.origin, due),
                    sent_ns: nanos_since(self.origin, sent),
                    acked_ns: nanos_since(self.origin, Instant::now()),
                    frame_bytes,
                });
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.record_failure(outcome, &error),
        }
    }

    fn record_failure(&self, outcome: &mut SenderOutcome, error: &ClientError) {
        let label = failure_label(error);
        if !outcome.errors.contains_key(&label) {
            tracing::info!(
                connection = %self.label,
                code = %label,
                %error,
                "send failed; further failures with this code on this connection are only counted"
            );
        }
        self.count_failure(outcome, label);
    }

    fn count_failure(&self, outcome: &mut SenderOutcome, label: String) {
        *outcome.errors.entry(label).or_default() += 1;
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn abandon(&self, outcome: &mut SenderOutcome, count: usize) {
        for _ in 0..count {
            self.count_failure(outcome, "abandoned".to_string());
        }
    }
}

/// The receiving half of one connection.
struct EventRecorder {
    ws: WsClient,
    conversation: Arc<str>,
    member_index: Arc<HashMap<String, u32>>,
    origin: Instant,
    stop: watch::Receiver<bool>,
    delivered: Arc<AtomicU64>,
    /// `tenant/user`, for log lines.
    label: String,
}

impl EventRecorder {
    /// Records events until the stop flag is set or the connection closes.
    async fn run(self) -> RecorderOutcome {
        let mut outcome = RecorderOutcome::default();
        let mut stop = self.stop.clone();
        let closed_early = record_events(&self.ws, &mut stop, &self.label, |frame| self.record(&mut outcome, frame)).await;
        outcome.closed_early = closed_early;
        outcome.dropped_events = self.ws.dropped_events();
        outcome
    }

    fn record(&self, outcome: &mut RecorderOutcome, frame: ServerFrame) {
        let ServerFrame::Message(item) = frame else {
            outcome.other_events += 1;
            return;
        };
        let received_ns = nanos_since(self.origin, Instant::now());
        if *item.conv != *self.conversation {
            outcome.foreign_messages += 1;
            return;
        }
        let sent_ns = serde_json::from_str::<BodyStamp>(item.body.get())
            .ok()
            .map(|stamp| stamp.t);
        let sender = self
            .member_index
            .get(&item.from)
            .copied()
            .unwrap_or(UNKNOWN_SENDER);
        outcome.deliveries.push(Delivery {
            seq: item.seq,
            sender,
            sent_ns,
            received_ns,
        });
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(messages_per_sec: f64) -> Schedule {
        let start = Instant::now();
        Schedule {
            start,
            end: start + Duration::from_secs(2),
            messages_per_sec,
        }
    }

    #[test]
    fn first_slot_is_due_at_start() {
        let schedule = schedule(100.0);

        assert_eq!(schedule.slots_due(schedule.start), 1);
        assert_eq!(
            schedule.slots_due(schedule.start - Duration::from_millis(1)),
            0
        );
    }

    #[test]
    fn slots_follow_rate() {
        let schedule = schedule(100.0);

        let due = schedule.slots_due(schedule.start + Duration::from_millis(995));

        assert_eq!(due, 100);
    }

    #[test]
    fn slots_stop_at_end() {
        let schedule = schedule(100.0);

        assert_eq!(schedule.total_slots(), 200);
        assert_eq!(schedule.slots_due(schedule.end), 200);
        assert_eq!(
            schedule.slots_due(schedule.end + Duration::from_secs(5)),
            200
        );
    }

    #[test]
    fn slot_time_inverts_rate() {
        let schedule = schedule(250.0);

        assert_eq!(
            schedule.slot_time(5) - schedule.start,
            Duration::from_millis(20)
        );
    }

    #[test]
    fn frame_bytes_match_serialized_frame() {
        for (slot, request_id) in [(0, 1), (9, 10), (12_345, 99_999), (7, 1_000_000)] {
            let id = client_msg_id(1, slot);
            let body = message_body(256, 1_234_567_890);
            let frame = json!({
                "op": "send",
                "conv": "noisy",
                "client_msg_id": id,
                "body": body,
                "id": request_id,
            });

            let bytes = send_frame_bytes("noisy", &id, 256, request_id);

            assert_eq!(bytes, frame.to_string().len() as u64, "slot {slot}");
        }
    }

    #[test]
    fn quota_failure_label_names_resource() {
        let error = ClientError::Server {
            code: bulkhead_client::ErrorCode::QuotaExceeded,
            message: "memory quota exhausted".into(),
            retry_after_ms: Some(100),
            resource: Some("memory".into()),
        };

        assert_eq!(failure_label(&error), "quota_exceeded:memory");
        assert_eq!(failure_label(&ClientError::Timeout), "timeout");
    }
}
