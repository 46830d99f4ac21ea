//! One connection of the soak scenario: a loop that does one operation per tick, records
//! every message it receives, and reconnects with `sync` now and then.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_client::{ClientError, MessageItem, SendAck, ServerFrame, WsClient, WsOptions};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Settings, TenantProgress};
use crate::plot::LatencySeries;
use crate::report::new_latency_histogram;
use crate::stamp::{read_tagged, tagged_body};
use crate::steady::{error_label, wait_until_true, StopSignals, REQUEST_TIMEOUT};
use crate::verify::{body_digest, Received, UNKNOWN_SENDER};

/// Messages per history read.
const HISTORY_LIMIT: u32 = 20;

/// Messages per `sync` page.
const SYNC_LIMIT: u32 = 100;

/// Most `sync` pages one reconnect reads, so that a server that always reports `more`
/// cannot keep a connection in its catch-up forever.
const MAX_SYNC_PAGES: u32 = 10_000;

/// Attempts to reconnect before the connection gives up for the rest of the run.
const RECONNECT_ATTEMPTS: u32 = 5;

const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// How long one wait for an event lasts before the loop checks the drain again.
const EVENT_POLL: Duration = Duration::from_millis(100);

/// One soak connection and what it needs to run.
pub struct Member {
    pub ws_url: String,
    pub tenant: String,
    pub user: String,
    pub token: String,
    /// Index of the member in its tenant, which makes its `client_msg_id`s unique.
    pub index: usize,
    pub conversation: Arc<str>,
    pub member_index: Arc<BTreeMap<String, u32>>,
    /// Tag of this member's tenant, written into every body it sends.
    pub tag: u64,
    pub settings: Settings,
    /// The run-wide clock: bodies carry their send time in nanoseconds since `origin`.
    pub origin: Instant,
    /// End of the operations.
    pub deadline: Instant,
    pub signals: StopSignals,
    pub progress: Arc<TenantProgress>,
}

/// Counts, latencies and received messages of one connection.
#[derive(Debug, Default)]
pub struct MemberOutcome {
    pub sent: u64,
    pub acked: Vec<u64>,
    /// Failed operations by label: the server's error code or the kind of client failure,
    /// prefixed with the operation.
    pub errors: BTreeMap<String, u64>,
    /// Every message received, live or by `sync`, in arrival order.
    pub received: Vec<Received>,
    /// Messages received as live events.
    pub live_deliveries: u64,
    /// Messages received in `sync` responses.
    pub synced: u64,
    pub reconnects: u64,
    /// Connections the server closed, by close code.
    pub server_closes: BTreeMap<u16, u64>,
    pub history_reads: u64,
    /// Descriptions of history pages that were not a run of consecutive seqs.
    pub history_violations: Vec<String>,
    pub typing_sent: u64,
    pub typing_received: u64,
    /// `message` events of another conversation.
    pub foreign_messages: u64,
    /// Bodies without a readable send time and tenant tag.
    pub unreadable_bodies: u64,
    pub dropped_events: u64,
    /// Set when the connection could not be reopened and stopped early.
    pub gave_up: Option<String>,
    pub ack_latency: Option<Histogram<u64>>,
    pub delivery_latency: Option<Histogram<u64>>,
    /// Delivery latency of live events by send time, for `--plot`.
    pub latency_series: LatencySeries,
}

/// A finished operation.
enum Done {
    Send {
        sent_at: Instant,
        result: Result<SendAck, ClientError>,
    },
    History(Result<(Vec<MessageItem>, bool), ClientError>),
    Typing(Result<(), ClientError>),
}

/// The next step of the connection's loop.
enum Step {
    Operate,
    Reconnect,
    Finished(Done),
    Event(Option<ServerFrame>),
    StopOperating,
    Abort,
}

/// Seqs a member has seen, its own included, and the highest one below which none is missing.
#[derive(Default)]
struct SeenSeqs {
    through: u64,
    above: HashSet<u64>,
}

impl SeenSeqs {
    fn insert(&mut self, seq: u64) {
        if seq <= self.through {
            return;
        }
        self.above.insert(seq);
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

impl Member {
    /// Runs until the deadline, then waits for the tenant's outstanding acks and deliveries
    /// up to the drain time, and closes the connection.
    pub async fn run(self) -> MemberOutcome {
        let mut outcome = MemberOutcome {
            ack_latency: Some(new_latency_histogram()),
            delivery_latency: Some(new_latency_histogram()),
            ..MemberOutcome::default()
        };
        let mut seen = SeenSeqs::default();
        let mut ws = match self.connect().await {
            Ok(ws) => ws,
            Err(error) => {
                outcome.gave_up = Some(format!("failed to connect: {error}"));
                return outcome;
            }
        };

        let tick = Duration::from_secs_f64(1.0 / self.settings.ops_per_sec);
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_reconnect = Instant::now() + self.reconnect_interval();
        let drain_deadline = self.deadline + self.settings.drain;
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
        let mut operating = true;
        let mut stop = self.signals.stop_sending.clone();
        let mut abort = self.signals.abort.clone();

        loop {
            if !operating && in_flight.is_empty() {
                if self.progress.all_seen() || Instant::now() >= drain_deadline {
                    break;
                }
            }
            let step = tokio::select! {
                _ = ticks.tick(), if operating => Step::Operate,
                _ = tokio::time::sleep_until(next_reconnect), if operating => Step::Reconnect,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => Step::Finished(done),
                event = ws.next_event(EVENT_POLL) => Step::Event(event),
                _ = tokio::time::sleep_until(self.deadline), if operating => Step::StopOperating,
                _ = wait_until_true(&mut stop), if operating => Step::StopOperating,
                _ = wait_until_true(&mut abort) => Step::Abort,
            };

            match step {
                Step::Operate => {
                    if let Some(operation) = self.operate(&ws, &mut outcome) {
                        in_flight.push(operation);
                    }
                }
                Step::Reconnect => {
                    next_reconnect = Instant::now() + self.reconnect_interval();
                    match self
                        .reconnect(&ws, &mut in_flight, &mut outcome, &mut seen)
                        .await
                    {
                        Ok(new_ws) => ws = new_ws,
                        Err(reason) => {
                            outcome.gave_up = Some(reason);
                            break;
                        }
                    }
                }
                Step::Finished(done) => self.record_done(done, &mut outcome, &mut seen),
                Step::Event(Some(frame)) => self.record_event(frame, &mut outcome, &mut seen),
                Step::Event(None) => {
                    let Some((code, reason)) = ws.closed() else {
                        continue;
                    };
                    *outcome.server_closes.entry(code).or_default() += 1;
                    tracing::info!(tenant = %self.tenant, user = %self.user, code, %reason, "server closed the connection; reconnecting");
                    match self
                        .reconnect(&ws, &mut in_flight, &mut outcome, &mut seen)
                        .await
                    {
                        Ok(new_ws) => ws = new_ws,
                        Err(reason) => {
                            outcome.gave_up = Some(reason);
                            break;
                        }
                    }
                }
                Step::StopOperating => operating = false,
                Step::Abort => {
                    for _ in 0..in_flight.len() {
                        *outcome.errors.entry("abandoned".to_string()).or_default() += 1;
                    }
                    break;
                }
            }
        }

        while let Some(frame) = ws.try_next_event() {
            self.record_event(frame, &mut outcome, &mut seen);
        }
        outcome.dropped_events += ws.dropped_events();
        if let Err(error) = ws.close().await {
            tracing::warn!(tenant = %self.tenant, user = %self.user, %error, "failed to close the connection");
        }
        if let Some(reason) = &outcome.gave_up {
            tracing::warn!(tenant = %self.tenant, user = %self.user, %reason, "connection stopped early");
        }
        outcome
    }

    async fn connect(&self) -> Result<WsClient, ClientError> {
        let options = WsOptions {
            request_timeout: REQUEST_TIMEOUT,
            ..WsOptions::default()
        };
        WsClient::connect_with(&self.ws_url, &self.token, options).await
    }

    /// Draws the time to the next reconnect evenly from half to one and a half times the
    /// mean.
    fn reconnect_interval(&self) -> Duration {
        self.settings
            .reconnect_interval
            .mul_f64(0.5 + rand::random::<f64>())
    }

    /// Starts one operation chosen at random by the mix. Returns `None` when it could not
    /// be queued, which is counted.
    fn operate(
        &self,
        ws: &WsClient,
        outcome: &mut MemberOutcome,
    ) -> Option<BoxFuture<'static, Done>> {
        let draw: f64 = rand::random();
        let ws = ws.clone();
        let conversation = self.conversation.clone();

        if draw < self.settings.history_share {
            outcome.history_reads += 1;
            return Some(
                async move {
                    let page = ws
                        .history(&conversation, None, None, Some(HISTORY_LIMIT))
                        .await;
                    Done::History(page)
                }
                .boxed(),
            );
        }
        if draw < self.settings.history_share + self.settings.typing_share {
            outcome.typing_sent += 1;
            return Some(async move { Done::Typing(ws.typing(&conversation).await) }.boxed());
        }

        let sent_at = Instant::now();
        let sent_ns = nanos_since(self.origin, sent_at);
        let client_msg_id = format!("c{}-m{}", self.index, outcome.sent);
        let body = tagged_body(self.tag, self.settings.body_bytes, sent_ns);
        match ws.send_nowait(&conversation, &client_msg_id, body) {
            Ok(ack) => {
                outcome.sent += 1;
                Some(
                    ack.map(move |result| Done::Send { sent_at, result })
                        .boxed(),
                )
            }
            Err(error) => {
                count_error(outcome, "send", &error);
                None
            }
        }
    }

    /// Waits for the operations in flight, closes the connection, opens a new one and
    /// reads with `sync` every message after the last seq up to which this member has seen
    /// all of them.
    async fn reconnect(
        &self,
        ws: &WsClient,
        in_flight: &mut FuturesUnordered<BoxFuture<'static, Done>>,
        outcome: &mut MemberOutcome,
        seen: &mut SeenSeqs,
    ) -> Result<WsClient, String> {
        while let Some(done) = in_flight.next().await {
            self.record_done(done, outcome, seen);
        }
        while let Some(frame) = ws.try_next_event() {
            self.record_event(frame, outcome, seen);
        }
        outcome.dropped_events += ws.dropped_events();
        // A failed close handshake leaves nothing to clean up: the sockets close when the
        // last clone is dropped.
        let _ = ws.close().await;

        let mut attempt = 0;
        let new_ws = loop {
            attempt += 1;
            match self.connect().await {
                Ok(new_ws) => break new_ws,
                Err(error) if attempt < RECONNECT_ATTEMPTS => {
                    count_error(outcome, "reconnect", &error);
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
                Err(error) => {
                    count_error(outcome, "reconnect", &error);
                    return Err(format!("failed to reconnect {attempt} times: {error}"));
                }
            }
        };
        outcome.reconnects += 1;
        self.catch_up(&new_ws, outcome, seen).await;
        Ok(new_ws)
    }

    /// Reads every message after `seen.through` with `sync`, page by page. Live events that
    /// arrive meanwhile wait in the client's queue and are recorded after the pages.
    async fn catch_up(&self, ws: &WsClient, outcome: &mut MemberOutcome, seen: &mut SeenSeqs) {
        let mut since = seen.through;
        for _ in 0..MAX_SYNC_PAGES {
            let request = BTreeMap::from([(self.conversation.to_string(), since)]);
            let pages = match ws.sync(&request, Some(SYNC_LIMIT)).await {
                Ok(pages) => pages,
                Err(error) => {
                    count_error(outcome, "sync", &error);
                    return;
                }
            };
            let mut more = false;
            for page in pages {
                if *page.conv != *self.conversation {
                    outcome.foreign_messages += page.items.len() as u64;
                    continue;
                }
                more |= page.more;
                for item in &page.items {
                    since = since.max(item.seq);
                    outcome.synced += 1;
                    self.record_message(item, None, outcome, seen);
                }
            }
            if !more {
                return;
            }
        }
        tracing::warn!(tenant = %self.tenant, user = %self.user, pages = MAX_SYNC_PAGES, "sync still reported more messages; stopped reading pages");
    }

    fn record_done(&self, done: Done, outcome: &mut MemberOutcome, seen: &mut SeenSeqs) {
        match done {
            Done::Send {
                sent_at,
                result: Ok(ack),
            } if !ack.duplicate => {
                let latency = outcome.ack_latency.as_mut().expect("set in run");
                latency.saturating_record(micros(sent_at.elapsed()));
                outcome.acked.push(ack.seq);
                seen.insert(ack.seq);
                self.publish_progress(seen);
                self.progress
                    .max_acked
                    .fetch_max(ack.seq, Ordering::Relaxed);
            }
            Done::Send {
                result: Ok(ack), ..
            } => {
                // Every client_msg_id is new, so the server must not report a duplicate.
                tracing::warn!(tenant = %self.tenant, user = %self.user, seq = ack.seq, "server acked a new message as a duplicate");
                *outcome
                    .errors
                    .entry("send:duplicate_ack".to_string())
                    .or_default() += 1;
            }
            Done::Send {
                result: Err(error), ..
            } => count_error(outcome, "send", &error),
            Done::History(Ok((items, _more))) => self.check_history_page(&items, outcome),
            Done::History(Err(error)) => count_error(outcome, "history", &error),
            Done::Typing(Ok(())) => {}
            Done::Typing(Err(error)) => count_error(outcome, "typing", &error),
        }
    }

    /// Checks that a history page is a run of consecutive seqs, because seqs are gap-free.
    fn check_history_page(&self, items: &[MessageItem], outcome: &mut MemberOutcome) {
        for pair in items.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                outcome.history_violations.push(format!(
                    "{} read a history page with seq {} followed by seq {}",
                    self.user, pair[0].seq, pair[1].seq
                ));
            }
        }
    }

    fn record_event(&self, frame: ServerFrame, outcome: &mut MemberOutcome, seen: &mut SeenSeqs) {
        let ServerFrame::Message(item) = frame else {
            outcome.typing_received += 1;
            return;
        };
        if *item.conv != *self.conversation {
            outcome.foreign_messages += 1;
            return;
        }
        outcome.live_deliveries += 1;
        let received_at = Instant::now();
        self.record_message(&item, Some(received_at), outcome, seen);
    }

    /// Records a message of this member's conversation, received live at `received_at` or
    /// by `sync` when that is `None`.
    fn record_message(
        &self,
        item: &MessageItem,
        received_at: Option<Instant>,
        outcome: &mut MemberOutcome,
        seen: &mut SeenSeqs,
    ) {
        let body = item.body.get();
        let stamp = read_tagged(body);
        if stamp.is_none() {
            outcome.unreadable_bodies += 1;
        }
        if let (Some(stamp), Some(at)) = (stamp, received_at) {
            let latency_us = nanos_since(self.origin, at).saturating_sub(stamp.sent_ns) / 1000;
            let histogram = outcome.delivery_latency.as_mut().expect("set in run");
            histogram.saturating_record(latency_us);
            outcome.latency_series.record(stamp.sent_ns, latency_us);
        }
        let sender = self
            .member_index
            .get(&item.from)
            .copied()
            .unwrap_or(UNKNOWN_SENDER);
        outcome.received.push(Received {
            seq: item.seq,
            sender,
            body_digest: Some(canonical_digest(body)),
            tenant_tag: stamp.map(|s| s.tenant_tag),
        });
        seen.insert(item.seq);
        self.publish_progress(seen);
    }

    fn publish_progress(&self, seen: &SeenSeqs) {
        self.progress.seen_through[self.index].store(seen.through, Ordering::Relaxed);
    }
}

/// Digest of a body in a canonical form (keys sorted, no spaces), so that the same body
/// compares equal whether it came as an event or in a `sync` response.
fn canonical_digest(body_json: &str) -> u64 {
    match serde_json::from_str::<serde_json::Value>(body_json) {
        Ok(value) => body_digest(&value.to_string()),
        Err(_) => body_digest(body_json),
    }
}

fn count_error(outcome: &mut MemberOutcome, operation: &str, error: &ClientError) {
    let label = format!("{operation}:{}", error_label(error));
    *outcome.errors.entry(label).or_default() += 1;
}

fn nanos_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_seqs_advance_over_contiguous_runs() {
        let mut seen = SeenSeqs::default();

        seen.insert(2);
        assert_eq!(seen.through, 0);
        seen.insert(1);
        assert_eq!(seen.through, 2);
        seen.insert(4);
        seen.insert(2);
        assert_eq!(seen.through, 2);
        seen.insert(3);
        assert_eq!(seen.through, 4);
        assert!(seen.above.is_empty());
    }

    #[test]
    fn canonical_digest_ignores_key_order_and_spaces() {
        assert_eq!(
            canonical_digest(r#"{"t": 1, "o": "a"}"#),
            canonical_digest(r#"{"o":"a","t":1}"#)
        );
        assert_ne!(
            canonical_digest(r#"{"o":"a","t":1}"#),
            canonical_digest(r#"{"o":"a","t":2}"#)
        );
    }
}
