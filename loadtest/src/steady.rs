//! The `steady` scenario. Each tenant has one group conversation with one user per
//! connection. Every connection sends up to `messages` messages into it as fast as the server
//! acks them, with at most `window` sends waiting for their ack, and records the `message`
//! events it receives from the other members. When sending ends, the run waits up to `drain`
//! for the outstanding deliveries and then checks them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_client::{
    ClientError, CloseInfo, RestClient, SendAck, ServerFrame, WsClient, WsOptions,
};
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use bulkhead_client::proto::QuotasPatch;

use crate::plot::{self, LatencySeries};
use crate::progress::Progress;
use crate::provision::{self, Plan, TenantSetup};
use crate::report::{new_latency_histogram, GroupStats, Report, RunSettings};
use crate::verify::{self, ConversationLog, Received, UNKNOWN_SENDER};

/// Bytes of a message body other than the padding and the digits of `t`.
const BODY_OVERHEAD: usize = r#"{"p":"","t":}"#.len();

/// Smallest body size: the overhead plus the 20 digits of the largest u64.
pub const MIN_BODY_BYTES: usize = BODY_OVERHEAD + 20;

/// Time a send waits for its ack, and a WebSocket handshake for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Token lifetime beyond the run's time limits, so that no token expires during a slow run.
pub const TOKEN_TTL_MARGIN_SECS: u64 = 3600;

/// How often progress is logged when no progress bar is drawn.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// How often the progress bar's counts are updated.
const BAR_INTERVAL: Duration = Duration::from_millis(200);

/// When sends failed, the delivered count also includes messages that the server stored
/// without acking, so reaching the expected count does not prove that every acked message
/// arrived. The drain then also waits until no event has arrived for this long.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

/// How often the drain compares the delivered count with the expected one.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct Settings {
    pub tenants: u32,
    pub connections: u32,
    pub messages: u64,
    pub body_bytes: usize,
    pub window: u32,
    /// Limit of the sending phase.
    pub duration: Duration,
    /// Time to wait for outstanding deliveries after the last ack.
    pub drain: Duration,
    /// `--url` of the server, or how the tool started it, for the report.
    pub target: String,
    /// Quotas set on every tenant in place of the server's defaults, by field name.
    pub quotas: BTreeMap<String, u64>,
    /// File to draw each tenant's delivery p99 per second to, as SVG.
    pub plot: Option<PathBuf>,
    /// Whether to draw a progress bar in place of the progress log lines.
    pub show_progress: bool,
}

/// Ctrl-C state. The first Ctrl-C sets `stop_sending`. The second sets `abort`, which also
/// ends the waits for acks and deliveries.
#[derive(Clone)]
pub struct StopSignals {
    pub stop_sending: watch::Receiver<bool>,
    pub abort: watch::Receiver<bool>,
}

/// Counters of one tenant that the tasks update as they go, for progress lines and the drain.
#[derive(Default)]
struct LiveCounters {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
}

/// A provisioned tenant with its open connections, one per member, in member order.
struct TenantRun {
    setup: TenantSetup,
    clients: Vec<WsClient>,
    live: Arc<LiveCounters>,
}

impl TenantRun {
    /// Deliveries expected from the acks so far.
    fn expected_deliveries(&self) -> u64 {
        let others = self.clients.len() as u64 - 1;
        self.live.acked.load(Ordering::Relaxed) * others
    }
}

/// Provisions the tenants, runs the scenario and checks the deliveries. Tenant ids are pushed
/// to `created` as they are created, for the caller to delete.
pub async fn run(
    rest: &RestClient,
    ws_url: &str,
    settings: &Settings,
    signals: &StopSignals,
    created: &mut Vec<String>,
) -> Result<Report, String> {
    let run_suffix = format!("{:08x}", rand::random::<u32>());
    let plan = Plan {
        tenants: settings.tenants,
        members_per_tenant: settings.connections,
        token_ttl_secs: settings.duration.as_secs()
            + settings.drain.as_secs()
            + TOKEN_TTL_MARGIN_SECS,
        quotas: quotas_patch(&settings.quotas)?,
    };
    let setups = provision::provision_tenants(rest, &plan, &run_suffix, created).await?;
    let tenants = connect_tenants(ws_url, setups).await?;
    tracing::info!(
        tenants = tenants.len(),
        connections = tenants.iter().map(|t| t.clients.len()).sum::<usize>(),
        "connections open; sending"
    );

    // The run-wide clock: bodies carry their send time in nanoseconds since `origin`.
    let origin = Instant::now();
    let deadline = origin + settings.duration;
    let (stop_receiving_tx, stop_receiving) = watch::channel(false);

    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for tenant in &tenants {
        let conversation: Arc<str> = tenant.setup.conversation.as_str().into();
        let member_index: Arc<HashMap<String, u32>> = Arc::new(
            (tenant.setup.members.iter().enumerate())
                .map(|(index, member)| (member.user.clone(), index as u32))
                .collect(),
        );

        let mut tenant_receivers = Vec::new();
        let mut tenant_senders = Vec::new();
        for (index, (client, member)) in
            tenant.clients.iter().zip(&tenant.setup.members).enumerate()
        {
            let label = format!("{}/{}", tenant.setup.tenant, member.user);
            let receiver = Receiver {
                ws: client.clone(),
                conversation: conversation.clone(),
                member_index: member_index.clone(),
                origin,
                stop: stop_receiving.clone(),
                live: tenant.live.clone(),
                label: label.clone(),
                record_series: settings.plot.is_some(),
            };
            tenant_receivers.push(tokio::spawn(receiver.run()));

            let sender = Sender {
                ws: client.clone(),
                conversation: conversation.clone(),
                connection: index,
                messages: settings.messages,
                window: settings.window as usize,
                body_bytes: settings.body_bytes,
                origin,
                deadline,
                stop_sending: signals.stop_sending.clone(),
                abort: signals.abort.clone(),
                live: tenant.live.clone(),
                label,
            };
            tenant_senders.push(tokio::spawn(sender.run()));
        }
        receivers.push(tenant_receivers);
        senders.push(tenant_senders);
    }
    let total_messages = u64::from(settings.tenants) * u64::from(settings.connections) * settings.messages;
    let bar = Progress::counter(settings.show_progress, total_messages, "messages sent");
    let progress = tokio::spawn(log_progress(
        tenants.iter().map(|t| t.live.clone()).collect(),
        stop_receiving.clone(),
        bar,
    ));

    let mut sender_results = Vec::new();
    for tenant_senders in senders {
        let results = join_all(tenant_senders).await;
        let results: Result<Vec<SenderResult>, _> = results.into_iter().collect();
        sender_results.push(results.map_err(|e| format!("a sender task failed: {e}"))?);
    }
    tracing::info!(
        elapsed_secs = format!("{:.2}", origin.elapsed().as_secs_f64()),
        drain_secs = settings.drain.as_secs(),
        "sending finished; waiting for the outstanding deliveries"
    );

    let mut abort = signals.abort.clone();
    wait_for_deliveries(&tenants, settings.drain, &mut abort).await;
    stop_receiving_tx.send_replace(true);
    let _ = progress.await;

    let mut receiver_results = Vec::new();
    for tenant_receivers in receivers {
        let results = join_all(tenant_receivers).await;
        let results: Result<Vec<ReceiverResult>, _> = results.into_iter().collect();
        receiver_results.push(results.map_err(|e| format!("a receiver task failed: {e}"))?);
    }
    close_connections(&tenants).await;

    if let Some(path) = &settings.plot {
        write_plot(path, settings, &tenants, &mut receiver_results)?;
    }
    let interrupted = *signals.stop_sending.borrow();
    Ok(build_report(
        settings,
        &tenants,
        origin,
        sender_results,
        receiver_results,
        interrupted,
    ))
}

/// Converts `--quota` values to the request body field, or `None` when there are none.
/// Fails on a name that is not a quota.
pub fn quotas_patch(quotas: &BTreeMap<String, u64>) -> Result<Option<QuotasPatch>, String> {
    if quotas.is_empty() {
        return Ok(None);
    }
    let fields: serde_json::Map<String, Value> = quotas
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(*value)))
        .collect();
    serde_json::from_value(Value::Object(fields))
        .map(Some)
        .map_err(|e| format!("invalid --quota: {e}"))
}

/// Opens one WebSocket connection per member, all tenants at once.
async fn connect_tenants(ws_url: &str, setups: Vec<TenantSetup>) -> Result<Vec<TenantRun>, String> {
    let options = WsOptions {
        request_timeout: REQUEST_TIMEOUT,
        ..WsOptions::default()
    };
    let mut tenants = Vec::with_capacity(setups.len());
    for setup in setups {
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
        tenants.push(TenantRun {
            setup,
            clients,
            live: Arc::new(LiveCounters::default()),
        });
    }
    Ok(tenants)
}

async fn close_connections(tenants: &[TenantRun]) {
    for tenant in tenants {
        let closing = tenant.clients.iter().map(|client| client.close());
        for (result, member) in join_all(closing)
            .await
            .into_iter()
            .zip(&tenant.setup.members)
        {
            if let Err(error) = result {
                tracing::warn!(tenant = %tenant.setup.tenant, user = %member.user, %error, "failed to close the connection");
            }
        }
    }
}

/// Waits until every tenant has received the deliveries its acks promise, `drain` has passed,
/// or the second Ctrl-C.
async fn wait_for_deliveries(
    tenants: &[TenantRun],
    drain: Duration,
    abort: &mut watch::Receiver<bool>,
) {
    let deadline = Instant::now() + drain;
    let any_failed = tenants
        .iter()
        .any(|t| t.live.failed.load(Ordering::Relaxed) > 0);
    let total_delivered = || -> u64 {
        tenants
            .iter()
            .map(|t| t.live.delivered.load(Ordering::Relaxed))
            .sum()
    };
    let mut last_delivered = total_delivered();
    let mut last_change = Instant::now();

    loop {
        let delivered = total_delivered();
        if delivered != last_delivered {
            last_delivered = delivered;
            last_change = Instant::now();
        }
        let all_arrived = tenants
            .iter()
            .all(|t| t.live.delivered.load(Ordering::Relaxed) >= t.expected_deliveries());
        if all_arrived && (!any_failed || last_change.elapsed() >= QUIET_PERIOD) {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                drain_secs = drain.as_secs(),
                "deliveries still outstanding after the drain time"
            );
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL_INTERVAL) => {}
            _ = wait_until_true(abort) => {
                tracing::warn!("stopped waiting for deliveries after the second Ctrl-C");
                return;
            }
        }
    }
}

/// Draws each tenant's delivery p99 per second of send time to `path`.
fn write_plot(
    path: &std::path::Path,
    settings: &Settings,
    tenants: &[TenantRun],
    receivers: &mut [Vec<ReceiverResult>],
) -> Result<(), String> {
    let mut series = Vec::new();
    for (tenant, results) in tenants.iter().zip(receivers.iter_mut()) {
        let mut merged = LatencySeries::default();
        for result in results.iter_mut() {
            merged.merge(result.series.take().unwrap_or_default());
        }
        series.push((tenant.setup.tenant.clone(), merged));
    }
    let named: Vec<(String, &LatencySeries)> =
        series.iter().map(|(name, s)| (name.clone(), s)).collect();
    let title = format!(
        "steady: delivery p99 per second, {} tenant(s) x {} connections",
        settings.tenants, settings.connections
    );
    plot::write_latency_plot(path, &title, &named)
}

/// Shows the counts on the progress bar when it is drawn, and logs them every
/// [`PROGRESS_INTERVAL`] otherwise.
async fn log_progress(
    tenants: Vec<Arc<LiveCounters>>,
    mut stop: watch::Receiver<bool>,
    mut bar: Progress,
) {
    let interval = if bar.is_shown() {
        BAR_INTERVAL
    } else {
        PROGRESS_INTERVAL
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = wait_until_true(&mut stop) => {
                bar.finish();
                return;
            }
        }
        let total = |counter: fn(&LiveCounters) -> &AtomicU64| -> u64 {
            tenants
                .iter()
                .map(|t| counter(t).load(Ordering::Relaxed))
                .sum()
        };
        if bar.is_shown() {
            bar.set_position(total(|c| &c.sent));
            bar.set_message(format!(
                "acked {} failed {} delivered {}",
                total(|c| &c.acked),
                total(|c| &c.failed),
                total(|c| &c.delivered)
            ));
            continue;
        }
        tracing::info!(
            sent = total(|c| &c.sent),
            acked = total(|c| &c.acked),
            failed = total(|c| &c.failed),
            delivered = total(|c| &c.delivered),
            "progress"
        );
    }
}

/// Waits until the flag is true. When its sender is gone the flag can no longer change, and
/// this never returns.
pub async fn wait_until_true(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|&set| set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Passes every event of `ws` to `record` until `stop` is set or the server closes the
/// connection, then the events already received. Returns the server's close code and reason
/// when it closed the connection first.
pub async fn record_events(
    ws: &WsClient,
    stop: &mut watch::Receiver<bool>,
    label: &str,
    mut record: impl FnMut(ServerFrame),
) -> Option<CloseInfo> {
    let mut closed_early = None;
    loop {
        tokio::select! {
            event = ws.next_event(Duration::from_secs(1)) => match event {
                Some(frame) => record(frame),
                None => {
                    if let Some(info) = ws.closed() {
                        tracing::warn!(connection = %label, code = info.0, reason = %info.1, "server closed the connection during the run");
                        closed_early = Some(info);
                        break;
                    }
                }
            },
            _ = wait_until_true(stop) => break,
        }
    }
    while let Some(frame) = ws.try_next_event() {
        record(frame);
    }
    closed_early
}

/// Builds a body of exactly `body_bytes` bytes as compact JSON: `{"p":"xx…","t":t_ns}`.
/// Bodies shorter than [`MIN_BODY_BYTES`] can come out longer.
pub fn message_body(body_bytes: usize, t_ns: u64) -> Value {
    let digits = t_ns.checked_ilog10().map_or(1, |log| log as usize + 1);
    let padding = body_bytes.saturating_sub(BODY_OVERHEAD + digits);
    json!({"p": "x".repeat(padding), "t": t_ns})
}

/// The part of a message body that the receivers read.
#[derive(Deserialize)]
pub struct BodyStamp {
    /// Send time in nanoseconds since the run-wide origin.
    pub t: u64,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Returns the label under which a failed send is counted: the server's error code, or the
/// kind of client-side failure.
pub fn error_label(error: &ClientError) -> String {
    match error {
        ClientError::Server { code, .. } | ClientError::Api { code, .. } => {
            code.as_str().to_string()
        }
        ClientError::Timeout => "timeout".to_string(),
        ClientError::Closed { code, .. } => format!("closed_{code}"),
        ClientError::Protocol(_) => "protocol".to_string(),
        ClientError::Transport(_) => "transport".to_string(),
        ClientError::Connect { .. } => "connect".to_string(),
        ClientError::Http { status, .. } => format!("http_{status}"),
    }
}

/// The sending half of one connection.
struct Sender {
    ws: WsClient,
    conversation: Arc<str>,
    /// Index of the connection in its tenant, which makes its `client_msg_id`s unique.
    connection: usize,
    messages: u64,
    window: usize,
    body_bytes: usize,
    origin: Instant,
    deadline: Instant,
    stop_sending: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    live: Arc<LiveCounters>,
    /// `tenant/user`, for log lines.
    label: String,
}

struct SenderResult {
    sent: u64,
    acked_seqs: Vec<u64>,
    errors: BTreeMap<String, u64>,
    ack_latency: Histogram<u64>,
    last_ack: Option<Instant>,
}

impl SenderResult {
    fn record(
        &mut self,
        live: &LiveCounters,
        label: &str,
        sent_at: Instant,
        outcome: Result<SendAck, ClientError>,
    ) {
        match outcome {
            Ok(ack) if ack.duplicate => {
                // Every client_msg_id is new, so the server must not report a duplicate.
                tracing::warn!(
                    connection = label,
                    seq = ack.seq,
                    "server acked a new message as a duplicate"
                );
                self.count_error("duplicate_ack", live);
            }
            Ok(ack) => {
                let now = Instant::now();
                self.ack_latency.saturating_record(micros(now - sent_at));
                self.acked_seqs.push(ack.seq);
                self.last_ack = Some(now);
                live.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                let code = error_label(&error);
                if !self.errors.contains_key(&code) {
                    tracing::warn!(
                        connection = label,
                        %code,
                        %error,
                        "send failed; further failures with this code on this connection are only counted"
                    );
                }
                self.count_error(&code, live);
            }
        }
    }

    fn count_error(&mut self, code: &str, live: &LiveCounters) {
        *self.errors.entry(code.to_string()).or_default() += 1;
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Sender {
    /// Sends until `messages` are sent, the deadline passes or Ctrl-C, keeping at most
    /// `window` sends without an ack, then waits for the remaining acks.
    async fn run(self) -> SenderResult {
        let Sender {
            ws,
            conversation,
            connection,
            messages,
            window,
            body_bytes,
            origin,
            deadline,
            mut stop_sending,
            mut abort,
            live,
            label,
        } = self;
        let mut result = SenderResult {
            sent: 0,
            acked_seqs: Vec::with_capacity(messages.min(1 << 20) as usize),
            errors: BTreeMap::new(),
            ack_latency: new_latency_histogram(),
            last_ack: None,
        };
        let mut in_flight = FuturesUnordered::new();
        let mut next: u64 = 0;
        let mut sending = true;

        loop {
            if sending && (next >= messages || *stop_sending.borrow() || Instant::now() >= deadline)
            {
                sending = false;
            }

            if sending && in_flight.len() < window {
                let sent_at = Instant::now();
                let t_ns = u64::try_from((sent_at - origin).as_nanos()).unwrap_or(u64::MAX);
                let client_msg_id = format!("c{connection}-m{next}");
                next += 1;
                match ws.send_nowait(
                    &conversation,
                    &client_msg_id,
                    message_body(body_bytes, t_ns),
                ) {
                    Ok(ack) => {
                        result.sent += 1;
                        live.sent.fetch_add(1, Ordering::Relaxed);
                        in_flight.push(ack.map(move |outcome| (sent_at, outcome)));
                    }
                    Err(error) => {
                        // The connection is closed, so later sends would fail the same way.
                        result.record(&live, &label, sent_at, Err(error));
                        sending = false;
                    }
                }
                // Records the acks that have already arrived, so that their latency does not
                // include the time spent filling the window.
                while let Some(Some((sent_at, outcome))) = in_flight.next().now_or_never() {
                    result.record(&live, &label, sent_at, outcome);
                }
                continue;
            }

            if !sending && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some((sent_at, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    result.record(&live, &label, sent_at, outcome);
                }
                _ = wait_until_true(&mut stop_sending), if sending => {}
                _ = tokio::time::sleep_until(deadline), if sending => {}
                _ = wait_until_true(&mut abort) => {
                    for _ in 0..in_flight.len() {
                        result.count_error("abandoned", &live);
                    }
                    break;
                }
            }
        }
        result
    }
}

/// The receiving half of one connection.
struct Receiver {
    ws: WsClient,
    conversation: Arc<str>,
    member_index: Arc<HashMap<String, u32>>,
    origin: Instant,
    stop: watch::Receiver<bool>,
    live: Arc<LiveCounters>,
    /// `tenant/user`, for log lines.
    label: String,
    /// Whether to keep every delivery latency by send time, for `--plot`.
    record_series: bool,
}

#[derive(Default)]
struct ReceiverResult {
    /// Each `message` event of the tenant's conversation, in arrival order.
    delivered: Vec<Received>,
    delivery_latency: Option<Histogram<u64>>,
    /// `message` events of another conversation.
    foreign_messages: u64,
    /// Bodies without a readable send time.
    unreadable_bodies: u64,
    /// Receipts and typing events, which no one in this scenario triggers.
    other_events: u64,
    dropped_events: u64,
    /// Set when the server closed the connection before the end of the run.
    closed_early: Option<CloseInfo>,
    /// Delivery latencies by send time, kept only for `--plot`.
    series: Option<LatencySeries>,
}

impl Receiver {
    /// Records events until the stop flag is set or the connection closes.
    async fn run(self) -> ReceiverResult {
        let mut result = ReceiverResult {
            delivery_latency: Some(new_latency_histogram()),
            series: self.record_series.then(LatencySeries::default),
            ..ReceiverResult::default()
        };
        let mut stop = self.stop.clone();
        let closed_early = record_events(&self.ws, &mut stop, &self.label, |frame| self.record(&mut result, frame)).await;
        result.closed_early = closed_early;
        result.dropped_events = self.ws.dropped_events();
        result
    }

    fn record(&self, result: &mut ReceiverResult, frame: ServerFrame) {
        let ServerFrame::Message(item) = frame else {
            result.other_events += 1;
            return;
        };
        let now_ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if *item.conv != *self.conversation {
            result.foreign_messages += 1;
            return;
        }

        match serde_json::from_str::<BodyStamp>(item.body.get()) {
            Ok(stamp) => {
                let latency_us = now_ns.saturating_sub(stamp.t) / 1000;
                let latency = result.delivery_latency.as_mut().expect("set in run");
                latency.saturating_record(latency_us);
                if let Some(series) = result.series.as_mut() {
                    series.record(stamp.t, latency_us);
                }
            }
            Err(_) => result.unreadable_bodies += 1,
        }
        let sender = self
            .member_index
            .get(&item.from)
            .copied()
            .unwrap_or(UNKNOWN_SENDER);
        result.delivered.push(Received::new(item.seq, sender));
        self.live.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

fn build_report(
    settings: &Settings,
    tenants: &[TenantRun],
    origin: Instant,
    sender_results: Vec<Vec<SenderResult>>,
    receiver_results: Vec<Vec<ReceiverResult>>,
    interrupted: bool,
) -> Report {
    let mut total = GroupStats::default();
    let mut tenant_reports = Vec::new();
    let mut failures = Vec::new();

    for ((tenant, senders), receivers) in tenants.iter().zip(sender_results).zip(receiver_results) {
        let name = &tenant.setup.tenant;
        let members = tenant.clients.len() as u64;
        let mut stats = GroupStats {
            connections: members,
            ..GroupStats::default()
        };
        let mut log = ConversationLog::default();
        let mut last_ack = None;

        for sender in senders {
            stats.sent += sender.sent;
            stats.acked += sender.acked_seqs.len() as u64;
            for (code, count) in sender.errors {
                *stats.errors.entry(code).or_default() += count;
            }
            stats
                .ack_latency
                .add(&sender.ack_latency)
                .expect("histograms with the same bounds merge");
            last_ack = last_ack.max(sender.last_ack);
            log.acked.push(sender.acked_seqs);
        }
        stats.sending = last_ack.map_or(Duration::ZERO, |at| at - origin);
        stats.expected_deliveries = stats.acked * (members - 1);

        let mut foreign_messages = 0;
        let mut unreadable_bodies = 0;
        let mut other_events = 0;
        for receiver in receivers {
            stats.delivered += receiver.delivered.len() as u64;
            stats.dropped_events += receiver.dropped_events;
            if let Some(latency) = &receiver.delivery_latency {
                stats
                    .delivery_latency
                    .add(latency)
                    .expect("histograms with the same bounds merge");
            }
            foreign_messages += receiver.foreign_messages;
            unreadable_bodies += receiver.unreadable_bodies;
            other_events += receiver.other_events;
            log.delivered.push(receiver.delivered);
        }

        let member_names: Vec<String> = tenant
            .setup
            .members
            .iter()
            .map(|m| m.user.clone())
            .collect();
        let findings = verify::check_conversation(&log, &member_names);
        stats.undelivered = findings.undelivered;
        stats.order_violations = findings.order_violations;
        stats.gaps = findings.gaps;

        failures.extend(findings.failure_lines(name, settings.drain));
        if foreign_messages > 0 {
            failures.push(format!(
                "{name}: {foreign_messages} message events of another conversation"
            ));
        }
        if unreadable_bodies > 0 {
            failures.push(format!(
                "{name}: {unreadable_bodies} message bodies without a readable send time"
            ));
        }
        if other_events > 0 {
            tracing::warn!(tenant = %name, events = other_events, "received receipt or typing events, which this scenario never triggers");
        }

        total.merge(&stats);
        tenant_reports.push(stats.to_report(name));
    }

    Report {
        scenario: "steady",
        settings: RunSettings {
            tenants: settings.tenants,
            connections_per_tenant: settings.connections,
            messages_per_connection: settings.messages,
            body_bytes: settings.body_bytes,
            window: settings.window,
            duration_secs: settings.duration.as_secs(),
            drain_secs: settings.drain.as_secs(),
            target: settings.target.clone(),
            quotas: settings.quotas.clone(),
        },
        interrupted,
        tenants: tenant_reports,
        total: total.to_report("total"),
        failures,
        server_log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_requested_size() {
        for t_ns in [0, 7, 10, 999_999, 1_234_567_890_123, u64::MAX] {
            for size in [MIN_BODY_BYTES, 256, 4096] {
                let body = message_body(size, t_ns);

                assert_eq!(body.to_string().len(), size, "t_ns {t_ns}");
            }
        }
    }

    #[test]
    fn body_stamp_reads_send_time() {
        let body = message_body(256, 42_000).to_string();

        let stamp: BodyStamp = serde_json::from_str(&body).unwrap();

        assert_eq!(stamp.t, 42_000);
    }

    #[test]
    fn quotas_patch_sets_named_fields() {
        let quotas = BTreeMap::from([("ingress_bytes_per_sec".to_string(), 1 << 30)]);

        let patch = quotas_patch(&quotas).unwrap().unwrap();

        assert_eq!(patch.ingress_bytes_per_sec, Some(1 << 30));
        assert_eq!(patch.egress_bytes_per_sec, None);
    }

    #[test]
    fn quotas_patch_rejects_unknown_name() {
        let quotas = BTreeMap::from([("ingres_bytes_per_sec".to_string(), 1)]);

        let error = quotas_patch(&quotas).unwrap_err();

        assert!(error.contains("ingres_bytes_per_sec"), "{error}");
    }

    #[test]
    fn quotas_patch_without_quotas_is_none() {
        assert!(quotas_patch(&BTreeMap::new()).unwrap().is_none());
    }

    #[test]
    fn error_labels_use_server_codes() {
        let server = ClientError::Server {
            code: bulkhead_client::ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(10),
            resource: None,
        };
        let closed = ClientError::Closed {
            code: 1001,
            reason: "server shutting down".into(),
        };

        assert_eq!(error_label(&server), "rate_limited");
        assert_eq!(error_label(&closed), "closed_1001");
        assert_eq!(error_label(&ClientError::Timeout), "timeout");
    }
}
