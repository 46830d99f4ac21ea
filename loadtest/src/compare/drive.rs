//! Load drivers shared by every system in the comparison, so bulkhead, NATS and the ceilings
//! are driven by the same loop and measured the same way.
//!
//! A system is reached through one [`Publisher`] per connection. Two loops drive them:
//!
//! - [`max_rate`]: each connection keeps up to `window` sends waiting for their ack. With a
//!   delivery gate it also waits until the receivers have taken earlier messages, so a
//!   fan-out run is limited by delivery, not by how fast a client can write.
//! - [`fixed_rate`]: the connections together send at a fixed rate. Latency is counted from
//!   the time a send was due, not from when it went out, so a stalled server shows up in the
//!   percentiles instead of hiding behind a slower send rate.
//!
//! Every loop ends at its deadline, and at a maximum count of sends per connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::report::new_latency_histogram;

/// The future of one send's acknowledgement; the error is a short label for the report.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One connection of a system under test.
pub trait Publisher: Send + Sync + 'static {
    /// Starts sending message `index` of this connection, stamped with `t_ns` (nanoseconds
    /// since [`origin`]), and returns the future of its acknowledgement.
    fn publish(&self, index: u64, t_ns: u64) -> AckFuture;
}

/// Sends that a fixed-rate connection may have waiting for their ack. Past it, a due send is
/// skipped and counted, which bounds the client's memory when the server falls behind.
const MAX_FIXED_RATE_IN_FLIGHT: usize = 100_000;

/// Lowest rate of a fixed-rate phase, in sends per second across all connections.
const MIN_FIXED_RATE: f64 = 1.0;

/// Time a gated sender waits for a delivery permit before it checks the deadline again.
const GATE_POLL: Duration = Duration::from_millis(50);

/// Returns the process-wide time origin of message stamps, so that a receiver can compute a
/// delivery latency from the stamp alone.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Returns the stamp of `at`: nanoseconds since [`origin`].
pub fn stamp(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin()).as_nanos()).unwrap_or(u64::MAX)
}

/// Converts a stamp back to the time it stands for.
pub fn stamp_time(t_ns: u64) -> Instant {
    origin() + Duration::from_nanos(t_ns)
}

/// The time limits of one measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Sends start at `start`; the ones due before `measured_from` are warm-up and left out
    /// of every figure.
    pub start: Instant,
    pub measured_from: Instant,
    /// No send starts at or after this time.
    pub deadline: Instant,
    /// Time after the deadline to wait for outstanding acks.
    pub drain: Duration,
    /// Sends per connection after which it stops early.
    pub max_sends_per_connection: u64,
}

impl Phase {
    pub fn new(warmup: Duration, measured: Duration, drain: Duration, max_sends_per_connection: u64) -> Phase {
        let start = Instant::now();
        Phase {
            start,
            measured_from: start + warmup,
            deadline: start + warmup + measured,
            drain,
            max_sends_per_connection,
        }
    }
}

/// Flow control of a fan-out run: a sender takes `cost` permits per message (one per
/// receiver) and every delivery returns one, so at most `permits / cost` messages are on
/// their way to the receivers at any time.
#[derive(Clone)]
pub struct DeliveryGate {
    pub permits: Arc<Semaphore>,
    pub cost: u32,
}

/// Counts and ack latencies of the senders of one phase.
pub struct SendOutcome {
    /// Sends started in the whole phase, warm-up included.
    pub started: u64,
    /// Sends started within the measured part of the phase.
    pub sent: u64,
    /// Acks of those sends.
    pub acked: u64,
    /// Failed sends, measured part only, and the label of the first failure.
    pub failed: u64,
    pub first_error: Option<String>,
    /// Fixed-rate sends skipped because [`MAX_FIXED_RATE_IN_FLIGHT`] were waiting.
    pub skipped: u64,
    /// Ack latency of the measured sends, in microseconds.
    pub ack_latency: Histogram<u64>,
    /// Time of the last measured ack, or the deadline when there was none.
    pub last_ack: Instant,
}

/// Counters of one connection, merged into a [`SendOutcome`] at the end.
struct ConnectionTally {
    started: u64,
    sent: u64,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
    skipped: u64,
    ack_latency: Histogram<u64>,
    last_ack: Option<Instant>,
}

impl ConnectionTally {
    fn new() -> ConnectionTally {
        ConnectionTally {
            started: 0,
            sent: 0,
            acked: 0,
            failed: 0,
            first_error: None,
            skipped: 0,
            ack_latency: new_latency_histogram(),
            last_ack: None,
        }
    }

    /// Records the ack of a send that was due at `due`, if it falls in the measured part.
    fn record(&mut self, phase: &Phase, due: Instant, outcome: Result<(), String>) {
        if due < phase.measured_from {
            return;
        }
        let now = Instant::now();
        match outcome {
            Ok(()) => {
                self.acked += 1;
                self.ack_latency.saturating_record(micros(now - due));
                self.last_ack = Some(now);
            }
            Err(label) => {
                self.failed += 1;
                self.first_error.get_or_insert(label);
            }
        }
    }
}

/// Drives every connection as fast as its window (and the gate, when given) allows.
pub async fn max_rate(
    publishers: &[Arc<dyn Publisher>],
    window: usize,
    gate: Option<DeliveryGate>,
    phase: Phase,
) -> SendOutcome {
    let tasks: Vec<_> = publishers
        .iter()
        .map(|publisher| tokio::spawn(closed_loop(publisher.clone(), window, gate.clone(), phase)))
        .collect();
    merge(tasks, &phase).await
}

/// Drives the connections together at `rate_per_sec` sends per second, spread evenly. A
/// rate below [`MIN_FIXED_RATE`] (a maximum phase that got nothing through) is raised to it.
pub async fn fixed_rate(publishers: &[Arc<dyn Publisher>], rate_per_sec: f64, phase: Phase) -> SendOutcome {
    if !(rate_per_sec >= MIN_FIXED_RATE) {
        tracing::warn!(rate_per_sec, "fixed rate too low; sending {MIN_FIXED_RATE} per second instead");
    }
    let rate_per_sec = if rate_per_sec >= MIN_FIXED_RATE { rate_per_sec } else { MIN_FIXED_RATE };
    let per_connection = rate_per_sec / publishers.len() as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection);
    let tasks: Vec<_> = publishers
        .iter()
        .enumerate()
        .map(|(index, publisher)| {
            // Connections start a fraction of the interval apart, so their sends interleave.
            let offset = interval.mul_f64(index as f64 / publishers.len() as f64);
            tokio::spawn(open_loop(publisher.clone(), interval, offset, phase))
        })
        .collect();
    merge(tasks, &phase).await
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<ConnectionTally>>, phase: &Phase) -> SendOutcome {
    let mut outcome = SendOutcome {
        started: 0,
        sent: 0,
        acked: 0,
        failed: 0,
        first_error: None,
        skipped: 0,
        ack_latency: new_latency_histogram(),
        last_ack: phase.deadline,
    };
    let mut last_ack = None;
    for task in tasks {
        let tally = match task.await {
            Ok(tally) => tally,
            Err(error) => {
                tracing::error!(%error, "a sender task failed");
                continue;
            }
        };
        outcome.started += tally.started;
        outcome.sent += tally.sent;
        outcome.acked += tally.acked;
        outcome.failed += tally.failed;
        outcome.skipped += tally.skipped;
        if outcome.first_error.is_none() {
            outcome.first_error = tally.first_error;
        }
        outcome
            .ack_latency
            .add(&tally.ack_latency)
            .expect("histograms with the same bounds");
        last_ack = last_ack.max(tally.last_ack);
    }
    if let Some(last_ack) = last_ack {
        outcome.last_ack = last_ack;
    }
    outcome
}

async fn closed_loop(
    publisher: Arc<dyn Publisher>,
    window: usize,
    gate: Option<DeliveryGate>,
    phase: Phase,
) -> ConnectionTally {
    let mut tally = ConnectionTally::new();
    let mut in_flight = FuturesUnordered::new();
    let mut index = 0;

    loop {
        let now = Instant::now();
        let may_send = now < phase.deadline && index < phase.max_sends_per_connection;
        if !may_send {
            break;
        }
        if in_flight.len() >= window {
            match tokio::time::timeout_at(phase.deadline, in_flight.next()).await {
                Ok(Some((due, outcome))) => tally.record(&phase, due, outcome),
                _ => break,
            }
            continue;
        }
        if let Some(gate) = &gate {
            if !take_permits(gate, &mut in_flight, &mut tally, &phase).await {
                continue;
            }
        }

        let due = Instant::now();
        tally.started += 1;
        if due >= phase.measured_from {
            tally.sent += 1;
        }
        let ack = publisher.publish(index, stamp(due));
        in_flight.push(async move { (due, ack.await) });
        index += 1;

        // Collect the acks that are already in without waiting.
        while let Some(Some((due, outcome))) = futures_util::FutureExt::now_or_never(in_flight.next()) {
            tally.record(&phase, due, outcome);
        }
    }

    drain(&mut in_flight, &mut tally, &phase).await;
    tally
}

/// Waits for the gate's permits while still collecting acks. Returns false when the wait
/// timed out, so that the caller can check its deadline.
async fn take_permits<F>(
    gate: &DeliveryGate,
    in_flight: &mut FuturesUnordered<F>,
    tally: &mut ConnectionTally,
    phase: &Phase,
) -> bool
where
    F: Future<Output = (Instant, Result<(), String>)>,
{
    let acquire = gate.permits.acquire_many(gate.cost);
    tokio::pin!(acquire);
    let timeout = tokio::time::sleep(GATE_POLL);
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            permits = &mut acquire => {
                // The permits come back through the receivers' add_permits, not through drop.
                permits.expect("the gate is never closed").forget();
                return true;
            }
            Some((due, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                tally.record(phase, due, outcome);
            }
            _ = &mut timeout => return false,
        }
    }
}

async fn open_loop(publisher: Arc<dyn Publisher>, interval: Duration, offset: Duration, phase: Phase) -> ConnectionTally {
    let mut tally = ConnectionTally::new();
    let mut in_flight = FuturesUnordered::new();
    let mut index: u64 = 0;

    loop {
        let due = phase.start + offset + interval.mul_f64(index as f64);
        if due >= phase.deadline || index >= phase.max_sends_per_connection {
            break;
        }
        // Collect acks while waiting for the next send to fall due.
        let sleep = tokio::time::sleep_until(due);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                Some((due, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    tally.record(&phase, due, outcome);
                }
            }
        }

        if in_flight.len() >= MAX_FIXED_RATE_IN_FLIGHT {
            tally.skipped += 1;
        } else {
            tally.started += 1;
            if due >= phase.measured_from {
                tally.sent += 1;
            }
            let ack = publisher.publish(index, stamp(due));
            in_flight.push(async move { (due, ack.await) });
        }
        index += 1;
    }

    drain(&mut in_flight, &mut tally, &phase).await;
    tally
}

/// Waits up to the phase's drain time after the deadline for the remaining acks.
async fn drain<F>(in_flight: &mut FuturesUnordered<F>, tally: &mut ConnectionTally, phase: &Phase)
where
    F: Future<Output = (Instant, Result<(), String>)>,
{
    let drain_deadline = phase.deadline.max(Instant::now()) + phase.drain;
    while !in_flight.is_empty() {
        match tokio::time::timeout_at(drain_deadline, in_flight.next()).await {
            Ok(Some((due, outcome))) => tally.record(phase, due, outcome),
            Ok(None) => break,
            Err(_) => {
                let abandoned = in_flight.len();
                tracing::warn!(abandoned, "acks still missing after the drain time");
                break;
            }
        }
    }
}

/// Delivery counts and latencies of one receiver.
pub struct ReceiverTally {
    pub delivered: u64,
    pub latency: Histogram<u64>,
    pub last_delivery: Option<Instant>,
}

impl ReceiverTally {
    pub fn new() -> ReceiverTally {
        ReceiverTally {
            delivered: 0,
            latency: new_latency_histogram(),
            last_delivery: None,
        }
    }

    /// Records a delivery of a message stamped `t_ns`, if it was sent in the measured part.
    pub fn record(&mut self, phase: &Phase, t_ns: u64) {
        let sent = stamp_time(t_ns);
        if sent < phase.measured_from {
            return;
        }
        let now = Instant::now();
        self.delivered += 1;
        self.latency.saturating_record(micros(now.saturating_duration_since(sent)));
        self.last_delivery = Some(now);
    }
}

/// Count of every delivery of a phase, which the drain compares with the expected count.
#[derive(Default)]
pub struct DeliveryCounter(AtomicU64);

impl DeliveryCounter {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
