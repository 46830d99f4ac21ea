//! The bulkhead side of the comparison: a tenant with quotas high enough that none of them
//! limits the run, and the connections of the persisted and fan-out workloads.
//!
//! - Persisted: each sending connection has its own group conversation with itself as the
//!   only member, so an `ok` means the message was synced to the WAL and nothing else: no
//!   delivery work, like a JetStream publish without a consumer.
//! - Fan-out: one sender and K receivers in one group conversation of K + 1 members. Every
//!   accepted message is pushed to the K receivers' sessions.

use std::sync::Arc;

use bulkhead_client::proto::{
    ConversationKind, CreateConversationRequest, QuotasPatch, ServerFrame,
};
use bulkhead_client::{RestClient, WsClient, WsOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::drive::{AckFuture, DeliveryCounter, DeliveryGate, Phase, Publisher, ReceiverTally};
use crate::provision::{self, Member, TenantSpec};
use crate::steady::{error_label, message_body, BodyStamp, REQUEST_TIMEOUT, TOKEN_TTL_MARGIN_SECS};

/// Quotas of the comparison tenant: far above what one machine can push (the CPU quota is
/// 100 cores), so that the run measures the server's work and not a limit.
fn unlimited_quotas() -> QuotasPatch {
    QuotasPatch {
        cpu_millicores: Some(100_000),
        memory_bytes: Some(4 << 30),
        ingress_bytes_per_sec: Some(1 << 40),
        egress_bytes_per_sec: Some(1 << 40),
        max_connections: Some(100_000),
        max_message_bytes: Some(1 << 20),
        max_storage_bytes: Some(1 << 50),
        weight: None,
        rest_requests_per_sec: Some(1_000_000),
    }
}

/// Events a receiver keeps before the client drops new ones; far above what a gated run
/// leaves undelivered.
pub const RECEIVER_EVENT_CAPACITY: usize = 1 << 20;

/// A provisioned tenant for one workload.
pub struct Tenant {
    pub id: String,
    pub conversation: String,
    pub members: Vec<Member>,
}

/// Creates a tenant `cmp-<label>-<suffix>` with `members` users in one group conversation.
pub async fn provision(
    rest: &RestClient,
    label: &str,
    suffix: &str,
    members: u32,
    token_ttl_secs: u64,
    created: &mut Vec<String>,
) -> Result<Tenant, String> {
    let spec = TenantSpec {
        id: format!("cmp-{label}-{suffix}"),
        name: format!("peer comparison {label} {suffix}"),
        members,
        conversation: "fanout".to_string(),
        token_ttl_secs: token_ttl_secs + TOKEN_TTL_MARGIN_SECS,
        quotas: Some(unlimited_quotas()),
    };
    let setup = provision::provision_tenant(rest, &spec, created).await?;
    Ok(Tenant {
        id: setup.tenant,
        conversation: setup.conversation,
        members: setup.members,
    })
}

/// Creates a conversation `solo-<n>` for each member, with that member alone.
pub async fn solo_conversations(rest: &RestClient, tenant: &Tenant) -> Result<Vec<String>, String> {
    let mut conversations = Vec::with_capacity(tenant.members.len());
    for (index, member) in tenant.members.iter().enumerate() {
        let request = CreateConversationRequest {
            id: Some(format!("solo-{index}")),
            kind: ConversationKind::Group,
            members: vec![member.user.clone()],
            name: None,
        };
        let conversation = rest
            .create_conversation(&tenant.id, &request)
            .await
            .map_err(|e| format!("failed to create conversation solo-{index} in tenant {}: {e}", tenant.id))?;
        conversations.push(conversation.id);
    }
    Ok(conversations)
}

pub async fn connect(ws_url: &str, member: &Member, event_capacity: usize) -> Result<WsClient, String> {
    let options = WsOptions {
        request_timeout: REQUEST_TIMEOUT,
        event_capacity,
        ..WsOptions::default()
    };
    WsClient::connect_with(ws_url, &member.token, options)
        .await
        .map_err(|e| format!("failed to connect {}: {e}", member.user))
}

/// One WebSocket connection that sends into one conversation.
pub struct WsPublisher {
    pub client: WsClient,
    pub conversation: String,
    pub body_bytes: usize,
    /// Prefix of the `client_msg_id`s, unique per connection and phase.
    pub id_prefix: String,
}

impl Publisher for WsPublisher {
    fn publish(&self, index: u64, t_ns: u64) -> AckFuture {
        let body = message_body(self.body_bytes, t_ns);
        let client_msg_id = format!("{}-{index}", self.id_prefix);
        match self.client.send_nowait(&self.conversation, &client_msg_id, body) {
            Ok(ack) => Box::pin(async move { ack.await.map(|_| ()).map_err(|e| error_label(&e)) }),
            Err(error) => {
                let label = error_label(&error);
                Box::pin(async move { Err(label) })
            }
        }
    }
}

/// Starts a task that reads `message` events from `client` until `stop` is set, records their
/// latency and returns one gate permit per event.
pub fn spawn_receiver(
    client: WsClient,
    phase: Phase,
    gate: Option<DeliveryGate>,
    counter: Arc<DeliveryCounter>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<ReceiverTally> {
    tokio::spawn(async move {
        let mut tally = ReceiverTally::new();
        loop {
            let event = tokio::select! {
                event = client.next_event(std::time::Duration::from_secs(1)) => event,
                _ = stop.wait_for(|&stopped| stopped) => break,
            };
            let Some(ServerFrame::Message(item)) = event else {
                if client.closed().is_some() {
                    tracing::warn!(close = ?client.closed(), "a receiver's connection closed");
                    break;
                }
                continue;
            };
            if let Some(gate) = &gate {
                gate.permits.add_permits(1);
            }
            counter.add();
            match serde_json::from_str::<BodyStamp>(item.body.get()) {
                Ok(stamp) => tally.record(&phase, stamp.t),
                Err(error) => tracing::warn!(%error, "a delivered body has no send time"),
            }
        }
        tally
    })
}
