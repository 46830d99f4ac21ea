//! The quiet tenant's traffic on a thread of its own with a single-threaded Tokio runtime.
//!
//! The flood's sends and acks keep this process's main runtime busy. Tasks of the quiet
//! tenant in the same runtime would wait behind them, which would show up as the quiet
//! tenant's latency although the server caused none of it. The operating system still
//! shares the cores between this thread, the flood and the server.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::traffic::{self, Schedule, TrafficOutcome, TrafficPlan};
use crate::provision::TenantSetup;
use crate::steady::StopSignals;

/// The quiet tenant's traffic, timed from the origin that [`QuietThread::start`] gives.
pub struct QuietSpec {
    pub setup: TenantSetup,
    pub ws_url: String,
    pub request_timeout: Duration,
    /// Messages per second of all connections together.
    pub messages_per_sec: f64,
    pub body_bytes: usize,
    /// Time from the origin to the end of sending.
    pub sending: Duration,
    pub drain: Duration,
    pub signals: StopSignals,
}

/// The running thread and the channels to it.
pub struct QuietThread {
    ready: oneshot::Receiver<Result<(), String>>,
    origin: oneshot::Sender<Instant>,
    done: oneshot::Receiver<Result<TrafficOutcome, String>>,
}

impl QuietThread {
    /// Starts the thread, which connects the quiet tenant's members and then waits for
    /// [`QuietThread::start`].
    pub fn spawn(spec: QuietSpec) -> Result<QuietThread, String> {
        let (ready_tx, ready) = oneshot::channel();
        let (origin, origin_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("failed to build the quiet tenant's runtime: {e}"))?;
        std::thread::Builder::new()
            .name("quiet-tenant".to_string())
            .spawn(move || {
                let outcome = runtime.block_on(run(spec, ready_tx, origin_rx));
                // The receiver is gone only when the run already failed elsewhere.
                let _ = done_tx.send(outcome);
            })
            .map_err(|e| format!("failed to start the quiet tenant's thread: {e}"))?;

        Ok(QuietThread {
            ready,
            origin,
            done,
        })
    }

    /// Waits until every connection of the quiet tenant is open.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        (&mut self.ready)
            .await
            .map_err(|_| "the quiet tenant's thread stopped before it connected".to_string())?
    }

    /// Starts sending at once, with `origin` as the run-wide clock.
    pub fn start(self, origin: Instant) -> Result<QuietRunning, String> {
        if self.origin.send(origin).is_err() {
            return Err("the quiet tenant's thread stopped before the start".to_string());
        }
        Ok(QuietRunning { done: self.done })
    }
}

/// The quiet tenant's thread after [`QuietThread::start`].
pub struct QuietRunning {
    done: oneshot::Receiver<Result<TrafficOutcome, String>>,
}

impl QuietRunning {
    /// Waits for the thread to finish sending, draining and closing its connections.
    pub async fn finish(self) -> Result<TrafficOutcome, String> {
        self.done
            .await
            .map_err(|_| "the quiet tenant's thread stopped without a result".to_string())?
    }
}

async fn run(
    spec: QuietSpec,
    ready: oneshot::Sender<Result<(), String>>,
    origin: oneshot::Receiver<Instant>,
) -> Result<TrafficOutcome, String> {
    let clients =
        match traffic::connect_members(&spec.ws_url, &spec.setup, spec.request_timeout).await {
            Ok(clients) => clients,
            Err(message) => {
                let _ = ready.send(Err(message.clone()));
                return Err(message);
            }
        };
    let _ = ready.send(Ok(()));

    let Ok(origin) = origin.await else {
        for client in &clients {
            let _ = client.close().await;
        }
        return Err("the run ended before the quiet tenant started".to_string());
    };
    let per_connection = spec.messages_per_sec / clients.len() as f64;
    let schedule = Schedule {
        start: origin,
        end: origin + spec.sending,
        messages_per_sec: per_connection,
    };
    let plan = TrafficPlan {
        schedules: vec![schedule; clients.len()],
        setup: spec.setup,
        clients,
        origin,
        body_bytes: spec.body_bytes,
        // The quiet rate is low and its run short, so every due send is sent.
        window: None,
        ack_wait: spec.drain,
        delivery_wait: spec.drain,
        signals: spec.signals,
    };
    traffic::drive(plan).await
}
