//! The phases of a comparison run, in order, each measured into one row of the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_client::{RestClient, WsClient, DEFAULT_EVENT_CAPACITY};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::bulkhead::{self, WsPublisher, RECEIVER_EVENT_CAPACITY};
use super::ceilings::{self, CeilingWs};
use super::cpu::ThreadCpu;
use super::drive::{self, DeliveryCounter, DeliveryGate, Phase, Publisher, ReceiverTally, SendOutcome};
use super::nats::{self, CorePublisher, JetStreamPublisher};
use super::report::{Measurement, Report, ReportSettings};
use crate::report::new_latency_histogram;

/// Acks a fan-out sender may wait for. The delivery gate is what limits a fan-out run, so
/// this only has to stay out of its way.
const FANOUT_ACK_WINDOW: usize = 100_000;

/// Lifetime of the user tokens; the provisioning adds a margin beyond it.
const TOKEN_TTL_SECS: u64 = 3600;

/// Subject of the core NATS fan-out.
const FANOUT_SUBJECT: &str = "compare.fanout";

pub struct Settings {
    pub connections: u32,
    pub window: usize,
    pub receivers: u32,
    pub message_bytes: usize,
    pub warmup: Duration,
    pub measured: Duration,
    pub drain: Duration,
    pub max_sends: u64,
    pub rate_fraction: f64,
}

impl Settings {
    fn phase(&self) -> Phase {
        Phase::new(self.warmup, self.measured, self.drain, self.max_sends)
    }
}

/// Addresses, process ids and report labels of the systems under test.
pub struct Systems {
    pub bulkhead_ws: String,
    pub bulkhead_pid: Option<u32>,
    pub bulkhead_label: String,
    pub nats: String,
    pub nats_pid: Option<u32>,
    pub nats_label: String,
    pub nats_synced: Option<String>,
    pub nats_synced_pid: Option<u32>,
    pub ceiling_ws: Option<PathBuf>,
    pub ceiling_rocksdb: Option<PathBuf>,
}

/// Send pattern of a phase.
#[derive(Clone, Copy)]
enum Mode {
    Max,
    Fixed { rate_per_sec: f64 },
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Max => "max".to_string(),
            Mode::Fixed { rate_per_sec } => format!("fixed {rate_per_sec:.0}/s"),
        }
    }
}

/// Returns a suffix for tenant names that differs between runs.
pub fn run_suffix() -> String {
    format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// Runs every phase and returns the report. Tenants it creates are pushed to `created`.
pub async fn run_all(
    rest: &RestClient,
    systems: &Systems,
    settings: &Settings,
    created: &mut Vec<String>,
) -> Result<Report, String> {
    let suffix = run_suffix();
    let mut report = Report::new(ReportSettings {
        connections: settings.connections,
        window: settings.window,
        receivers: settings.receivers,
        message_bytes: settings.message_bytes,
        warmup_secs: settings.warmup.as_secs_f64(),
        measured_secs: settings.measured.as_secs_f64(),
        rate_fraction: settings.rate_fraction,
    });

    let target = BulkheadTarget {
        rest,
        ws_url: &systems.bulkhead_ws,
        pid: systems.bulkhead_pid,
        label: &systems.bulkhead_label,
    };
    let (rows, threads) = bulkhead_persisted(&target, settings, &suffix, created).await?;
    report.measurements.extend(rows);
    report.bulkhead_persisted_threads = threads;

    let (rows, threads) = jetstream_persisted(&systems.nats, systems.nats_pid, &systems.nats_label, settings).await?;
    report.measurements.extend(rows);
    report.nats_persisted_threads = threads;
    if let Some(addr) = &systems.nats_synced {
        let label = "JetStream file (sync_interval: always)";
        let (rows, _) = jetstream_persisted(addr, systems.nats_synced_pid, label, settings).await?;
        report.measurements.extend(rows);
    }

    report.measurements.extend(bulkhead_fanout(rest, systems, settings, &suffix, created).await?);
    report.measurements.extend(nats_fanout(systems, settings).await?);

    if let Some(binary) = &systems.ceiling_ws {
        report.measurements.extend(ws_ceiling(binary, settings).await?);
    }
    if let Some(binary) = &systems.ceiling_rocksdb {
        for batch_values in [1, settings.window as u32] {
            tracing::info!(threads = settings.connections, batch_values, "phase: RocksDB ceiling");
            let outcome = ceilings::run_rocksdb(binary, settings.connections, batch_values, settings.message_bytes, settings.measured).await?;
            report.rocksdb.push(outcome);
        }
    }
    Ok(report)
}

/// A bulkhead server to run the persisted workload against.
pub struct BulkheadTarget<'a> {
    pub rest: &'a RestClient,
    pub ws_url: &'a str,
    pub pid: Option<u32>,
    pub label: &'a str,
}

/// Measures bulkhead's persisted sends at maximum throughput and at the fixed fraction of it.
/// Also returns the server's CPU seconds per thread during the maximum.
pub async fn bulkhead_persisted(
    target: &BulkheadTarget<'_>,
    settings: &Settings,
    suffix: &str,
    created: &mut Vec<String>,
) -> Result<(Vec<Measurement>, ThreadCpu), String> {
    let rest = target.rest;
    let tenant = bulkhead::provision(rest, "persist", suffix, settings.connections, TOKEN_TTL_SECS, created).await?;
    let conversations = bulkhead::solo_conversations(rest, &tenant).await?;
    let mut clients = Vec::with_capacity(tenant.members.len());
    for member in &tenant.members {
        clients.push(bulkhead::connect(target.ws_url, member, DEFAULT_EVENT_CAPACITY).await?);
    }

    let publishers = |phase_name: &str| -> Vec<Arc<dyn Publisher>> {
        clients
            .iter()
            .zip(&conversations)
            .enumerate()
            .map(|(index, (client, conversation))| {
                Arc::new(WsPublisher {
                    client: client.clone(),
                    conversation: conversation.clone(),
                    body_bytes: settings.message_bytes,
                    id_prefix: format!("{phase_name}-{index}"),
                }) as Arc<dyn Publisher>
            })
            .collect()
    };

    let (max, threads) = persisted_phase(target.label, &publishers("max"), Mode::Max, settings, target.pid).await;
    let fixed = Mode::Fixed {
        rate_per_sec: max.per_sec * settings.rate_fraction,
    };
    let (half, _) = persisted_phase(target.label, &publishers("fixed"), fixed, settings, target.pid).await;

    close_all(&clients).await;
    Ok((vec![max, half], threads))
}

async fn jetstream_persisted(
    addr: &str,
    pid: Option<u32>,
    label: &str,
    settings: &Settings,
) -> Result<(Vec<Measurement>, ThreadCpu), String> {
    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    for connection in 0..settings.connections as usize {
        let client = nats::connect(addr).await?;
        if connection == 0 {
            nats::reset_stream(&client).await?;
        }
        publishers.push(Arc::new(JetStreamPublisher::new(client, connection, settings.message_bytes)));
    }

    let (max, threads) = persisted_phase(label, &publishers, Mode::Max, settings, pid).await;
    let fixed = Mode::Fixed {
        rate_per_sec: max.per_sec * settings.rate_fraction,
    };
    let (half, _) = persisted_phase(label, &publishers, fixed, settings, pid).await;
    Ok((vec![max, half], threads))
}

/// Measures acked sends: throughput and send → ack latency.
async fn persisted_phase(
    system: &str,
    publishers: &[Arc<dyn Publisher>],
    mode: Mode,
    settings: &Settings,
    server_pid: Option<u32>,
) -> (Measurement, ThreadCpu) {
    tracing::info!(system, mode = %mode.label(), "phase: persisted publish");
    let cpu_before = server_pid.map(ThreadCpu::sample);
    let phase = settings.phase();

    let outcome = match mode {
        Mode::Max => drive::max_rate(publishers, settings.window, None, phase).await,
        Mode::Fixed { rate_per_sec } => drive::fixed_rate(publishers, rate_per_sec, phase).await,
    };

    let (cpu_cores, threads) = cpu_since(server_pid, cpu_before, phase.start);
    let measured_secs = seconds_between(phase.measured_from, outcome.last_ack);
    let row = Measurement {
        workload: "persisted".to_string(),
        system: system.to_string(),
        mode: mode.label(),
        connections: publishers.len() as u32,
        sent: outcome.sent,
        completed: outcome.acked,
        failed: outcome.failed,
        missing: outcome.sent.saturating_sub(outcome.acked + outcome.failed),
        skipped: outcome.skipped,
        first_error: outcome.first_error.clone(),
        per_sec: outcome.acked as f64 / measured_secs,
        latency: (&outcome.ack_latency).into(),
        server_cpu_cores: cpu_cores,
    };
    (row, threads)
}

async fn bulkhead_fanout(
    rest: &RestClient,
    systems: &Systems,
    settings: &Settings,
    suffix: &str,
    created: &mut Vec<String>,
) -> Result<Vec<Measurement>, String> {
    let tenant = bulkhead::provision(rest, "fanout", suffix, settings.receivers + 1, TOKEN_TTL_SECS, created).await?;
    let sender = bulkhead::connect(&systems.bulkhead_ws, &tenant.members[0], DEFAULT_EVENT_CAPACITY).await?;
    let mut receivers = Vec::with_capacity(settings.receivers as usize);
    for member in &tenant.members[1..] {
        receivers.push(bulkhead::connect(&systems.bulkhead_ws, member, RECEIVER_EVENT_CAPACITY).await?);
    }
    let publisher = |phase_name: &str| -> Vec<Arc<dyn Publisher>> {
        vec![Arc::new(WsPublisher {
            client: sender.clone(),
            conversation: tenant.conversation.clone(),
            body_bytes: settings.message_bytes,
            id_prefix: format!("fanout-{phase_name}"),
        })]
    };

    let mut rows = Vec::new();
    let mut mode = Mode::Max;
    for phase_name in ["max", "fixed"] {
        tracing::info!(system = %systems.bulkhead_label, mode = %mode.label(), "phase: fan-out");
        let spawn = |phase: Phase, gate: Option<DeliveryGate>, counter: Arc<DeliveryCounter>, stop: watch::Receiver<bool>| {
            receivers
                .iter()
                .map(|client| {
                    let task = bulkhead::spawn_receiver(client.clone(), phase, gate.clone(), counter.clone(), stop.clone());
                    async move { task.await.unwrap_or_else(|_| ReceiverTally::new()) }
                })
                .collect::<Vec<_>>()
        };
        let row = fanout_phase(&systems.bulkhead_label, &publisher(phase_name), spawn, mode, settings, systems.bulkhead_pid).await;
        // The fixed rate is counted in messages sent, each delivered to every receiver.
        mode = Mode::Fixed {
            rate_per_sec: row.per_sec / settings.receivers as f64 * settings.rate_fraction,
        };
        rows.push(row);
    }

    close_all(&receivers).await;
    close_all(&[sender]).await;
    Ok(rows)
}

async fn nats_fanout(systems: &Systems, settings: &Settings) -> Result<Vec<Measurement>, String> {
    let sender = nats::connect(&systems.nats).await?;
    let mut subscribers = Vec::with_capacity(settings.receivers as usize);
    for _ in 0..settings.receivers {
        let client = nats::connect(&systems.nats).await?;
        let subscriber = nats::subscribe(&client, FANOUT_SUBJECT).await?;
        subscribers.push(Some((client, subscriber)));
    }
    let publishers: Vec<Arc<dyn Publisher>> = vec![Arc::new(CorePublisher {
        client: sender.clone(),
        subject: FANOUT_SUBJECT.to_string(),
        message_bytes: settings.message_bytes,
    })];
    let label = "NATS core";

    let mut rows = Vec::new();
    let mut mode = Mode::Max;
    for _ in 0..2 {
        tracing::info!(system = label, mode = %mode.label(), "phase: fan-out");
        // Each subscriber is lent to its task for the phase and comes back with its tally.
        let (returned_tx, mut returned_rx) = tokio::sync::mpsc::unbounded_channel();
        let lent: Vec<_> = subscribers.iter_mut().map(|slot| slot.take().expect("the subscriber came back")).collect();
        let spawn = |phase: Phase, gate: Option<DeliveryGate>, counter: Arc<DeliveryCounter>, stop: watch::Receiver<bool>| {
            lent.into_iter()
                .map(|(client, subscriber)| {
                    let task = nats::spawn_subscriber(subscriber, phase, gate.clone(), counter.clone(), stop.clone());
                    let returned_tx = returned_tx.clone();
                    async move {
                        match task.await {
                            Ok((tally, subscriber)) => {
                                let _ = returned_tx.send((client, subscriber));
                                tally
                            }
                            Err(_) => ReceiverTally::new(),
                        }
                    }
                })
                .collect::<Vec<_>>()
        };
        let row = fanout_phase(label, &publishers, spawn, mode, settings, systems.nats_pid).await;
        drop(returned_tx);
        for slot in subscribers.iter_mut() {
            match returned_rx.recv().await {
                Some(pair) => *slot = Some(pair),
                None => return Err("a NATS subscriber task failed".to_string()),
            }
        }
        mode = Mode::Fixed {
            rate_per_sec: row.per_sec / settings.receivers as f64 * settings.rate_fraction,
        };
        rows.push(row);
    }
    Ok(rows)
}

/// Measures deliveries: every receiver's throughput added up and the send → delivery latency.
/// In a maximum-throughput phase the sender is gated by deliveries (at most `window`
/// messages on their way), so the same limit applies to both systems.
async fn fanout_phase<S, F>(
    system: &str,
    publishers: &[Arc<dyn Publisher>],
    spawn_receivers: S,
    mode: Mode,
    settings: &Settings,
    server_pid: Option<u32>,
) -> Measurement
where
    S: FnOnce(Phase, Option<DeliveryGate>, Arc<DeliveryCounter>, watch::Receiver<bool>) -> Vec<F>,
    F: std::future::Future<Output = ReceiverTally> + Send + 'static,
{
    let receivers = settings.receivers;
    let cpu_before = server_pid.map(ThreadCpu::sample);
    let counter = Arc::new(DeliveryCounter::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let phase = settings.phase();
    let gate = match mode {
        Mode::Max => Some(DeliveryGate {
            permits: Arc::new(Semaphore::new(settings.window * receivers as usize)),
            cost: receivers,
        }),
        Mode::Fixed { .. } => None,
    };
    let tasks: Vec<_> = spawn_receivers(phase, gate.clone(), counter.clone(), stop_rx)
        .into_iter()
        .map(tokio::spawn)
        .collect();

    let started_before = counter.get();
    let outcome: SendOutcome = match mode {
        Mode::Max => drive::max_rate(publishers, FANOUT_ACK_WINDOW, gate, phase).await,
        Mode::Fixed { rate_per_sec } => drive::fixed_rate(publishers, rate_per_sec, phase).await,
    };
    let expected = started_before + outcome.started * receivers as u64;
    wait_for_deliveries(&counter, expected, settings.drain).await;
    stop_tx.send_replace(true);

    let mut latency = new_latency_histogram();
    let mut delivered = 0;
    let mut last_delivery = None;
    for task in tasks {
        let Ok(tally) = task.await else { continue };
        delivered += tally.delivered;
        latency.add(&tally.latency).expect("histograms with the same bounds");
        last_delivery = last_delivery.max(tally.last_delivery);
    }
    let (cpu_cores, _) = cpu_since(server_pid, cpu_before, phase.start);
    let measured_secs = seconds_between(phase.measured_from, last_delivery.unwrap_or(phase.deadline));

    Measurement {
        workload: format!("fan-out to {receivers}"),
        system: system.to_string(),
        mode: mode.label(),
        connections: publishers.len() as u32 + receivers,
        sent: outcome.sent,
        completed: delivered,
        failed: outcome.failed,
        missing: (outcome.sent * receivers as u64).saturating_sub(delivered),
        skipped: outcome.skipped,
        first_error: outcome.first_error.clone(),
        per_sec: delivered as f64 / measured_secs,
        latency: (&latency).into(),
        server_cpu_cores: cpu_cores,
    }
}

async fn ws_ceiling(binary: &std::path::Path, settings: &Settings) -> Result<Vec<Measurement>, String> {
    let server = CeilingWs::start(binary).await?;
    let url = format!("ws://{}", server.addr);
    let member = crate::provision::Member {
        user: "ceiling".to_string(),
        token: String::new(),
    };
    let mut clients = Vec::new();
    for _ in 0..settings.connections {
        clients.push(bulkhead::connect(&url, &member, DEFAULT_EVENT_CAPACITY).await?);
    }
    let publishers: Vec<Arc<dyn Publisher>> = clients
        .iter()
        .enumerate()
        .map(|(index, client)| {
            Arc::new(WsPublisher {
                client: client.clone(),
                conversation: "ceiling".to_string(),
                body_bytes: settings.message_bytes,
                id_prefix: format!("ceiling-{index}"),
            }) as Arc<dyn Publisher>
        })
        .collect();

    let (row, _) = persisted_phase("WebSocket ceiling (ceiling-ws)", &publishers, Mode::Max, settings, server.pid()).await;
    let mut row = row;
    row.workload = "ceiling".to_string();
    close_all(&clients).await;
    server.stop().await;
    Ok(vec![row])
}

/// Waits until `counter` reaches `expected` or `limit` has passed.
async fn wait_for_deliveries(counter: &DeliveryCounter, expected: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while counter.get() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if counter.get() < expected {
        tracing::warn!(expected, delivered = counter.get(), "deliveries still missing after the drain time");
    }
}

/// Returns the server's CPU use since `before` in cores, and its CPU seconds per thread.
fn cpu_since(pid: Option<u32>, before: Option<ThreadCpu>, since: Instant) -> (Option<f64>, ThreadCpu) {
    let (Some(pid), Some(before)) = (pid, before) else {
        return (None, ThreadCpu::default());
    };
    let delta = ThreadCpu::sample(pid).since(&before);
    let wall = since.elapsed().as_secs_f64().max(1e-3);
    (Some(delta.total_seconds() / wall), delta)
}

/// Seconds from `from` to `to`, at least one millisecond so that a rate stays finite.
fn seconds_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64().max(1e-3)
}

async fn close_all(clients: &[WsClient]) {
    for client in clients {
        if let Err(error) = client.close().await {
            tracing::debug!(%error, "failed to close a connection cleanly");
        }
    }
}
