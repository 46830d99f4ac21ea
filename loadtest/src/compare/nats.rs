//! The NATS side of the comparison, through the `async-nats` client.
//!
//! - Persisted: JetStream publish to a stream with file storage, each connection on its own
//!   subject, awaiting the publish ack. With the server's default settings that ack means
//!   the message is in the stream's file in the page cache, synced to disk later on the
//!   server's sync interval, not before the ack.
//! - Fan-out: core NATS publish to one subject with K subscribers, each on its own
//!   connection. Core NATS stores nothing.
//!
//! A payload is the send stamp (8 bytes, little endian) padded with `x` to the message size.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::drive::{AckFuture, DeliveryCounter, DeliveryGate, Phase, Publisher, ReceiverTally};

/// Name of the comparison's JetStream stream, and the prefix of its subjects.
const STREAM: &str = "BULKHEAD_COMPARE";
const PERSIST_SUBJECT_PREFIX: &str = "compare.persist";

/// Messages a connection queues for the server, and a subscription for its reader, before the
/// client waits (publish) or drops (subscription). Far above what a gated run leaves
/// undelivered.
const CLIENT_CAPACITY: usize = 1 << 16;
const SUBSCRIPTION_CAPACITY: usize = 1 << 20;

/// Messages the stream keeps before it drops the oldest, which bounds its disk use.
const STREAM_MAX_MESSAGES: i64 = 2_000_000;

pub async fn connect(addr: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .client_capacity(CLIENT_CAPACITY)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connection_timeout(Duration::from_secs(10))
        .connect(addr)
        .await
        .map_err(|e| format!("failed to connect to NATS at {addr}: {e}"))
}

/// Deletes the comparison stream if it exists and creates it anew with file storage and one
/// replica, so every run starts empty.
pub async fn reset_stream(client: &async_nats::Client) -> Result<(), String> {
    let context = jetstream::new(client.clone());
    // A missing stream is the normal case on a fresh server.
    let _ = context.delete_stream(STREAM).await;
    let config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![format!("{PERSIST_SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: 1,
        max_messages: STREAM_MAX_MESSAGES,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    context
        .create_stream(config)
        .await
        .map_err(|e| format!("failed to create JetStream stream {STREAM}: {e}"))?;
    Ok(())
}

/// Builds a payload of `bytes` bytes (at least 8) that starts with the stamp.
pub fn payload(bytes: usize, t_ns: u64) -> Bytes {
    let mut buffer = BytesMut::with_capacity(bytes.max(8));
    buffer.put_u64_le(t_ns);
    buffer.resize(bytes.max(8), b'x');
    buffer.freeze()
}

fn read_stamp(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// One connection that publishes to JetStream on its own subject and awaits each ack.
pub struct JetStreamPublisher {
    pub context: jetstream::Context,
    pub subject: String,
    pub message_bytes: usize,
}

impl JetStreamPublisher {
    pub fn new(client: async_nats::Client, connection: usize, message_bytes: usize) -> JetStreamPublisher {
        JetStreamPublisher {
            context: jetstream::new(client),
            subject: format!("{PERSIST_SUBJECT_PREFIX}.{connection}"),
            message_bytes,
        }
    }
}

impl Publisher for JetStreamPublisher {
    fn publish(&self, _index: u64, t_ns: u64) -> AckFuture {
        let context = self.context.clone();
        let subject = self.subject.clone();
        let payload = payload(self.message_bytes, t_ns);
        Box::pin(async move {
            let ack = context
                .publish(subject, payload)
                .await
                .map_err(|e| format!("publish: {e}"))?;
            ack.await.map_err(|e| format!("publish ack: {e}"))?;
            Ok(())
        })
    }
}

/// One connection that publishes to a core NATS subject. Its "ack" completes once the
/// client has queued the message for the server: core NATS has no acknowledgement.
pub struct CorePublisher {
    pub client: async_nats::Client,
    pub subject: String,
    pub message_bytes: usize,
}

impl Publisher for CorePublisher {
    fn publish(&self, _index: u64, t_ns: u64) -> AckFuture {
        let client = self.client.clone();
        let subject = self.subject.clone();
        let payload = payload(self.message_bytes, t_ns);
        Box::pin(async move {
            client
                .publish(subject, payload)
                .await
                .map_err(|e| format!("publish: {e}"))
        })
    }
}

/// Subscribes to `subject` and waits until the server has registered the subscription, so
/// that no message published afterwards can miss it.
pub async fn subscribe(client: &async_nats::Client, subject: &str) -> Result<async_nats::Subscriber, String> {
    let subscriber = client
        .subscribe(subject.to_string())
        .await
        .map_err(|e| format!("failed to subscribe to {subject}: {e}"))?;
    client
        .flush()
        .await
        .map_err(|e| format!("failed to flush the subscription to {subject}: {e}"))?;
    Ok(subscriber)
}

/// Starts a task that records every message of `subscriber` until `stop` is set, returning
/// one gate permit per message. The task hands the subscriber back for the next phase.
pub fn spawn_subscriber(
    mut subscriber: async_nats::Subscriber,
    phase: Phase,
    gate: Option<DeliveryGate>,
    counter: Arc<DeliveryCounter>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<(ReceiverTally, async_nats::Subscriber)> {
    tokio::spawn(async move {
        let mut tally = ReceiverTally::new();
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                _ = stop.wait_for(|&stopped| stopped) => break,
            };
            let Some(message) = message else {
                tracing::warn!("a NATS subscription ended");
                break;
            };
            if let Some(gate) = &gate {
                gate.permits.add_permits(1);
            }
            counter.add();
            match read_stamp(&message.payload) {
                Some(t_ns) => tally.record(&phase, t_ns),
                None => tracing::warn!("a NATS payload has no send stamp"),
            }
        }
        (tally, subscriber)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_size_and_stamp() {
        let payload = payload(256, 123_456_789);

        assert_eq!(payload.len(), 256);
        assert_eq!(read_stamp(&payload), Some(123_456_789));
        assert!(payload[8..].iter().all(|&b| b == b'x'));
    }

    #[test]
    fn short_payload_has_no_stamp() {
        assert_eq!(read_stamp(b"1234567"), None);
    }
}
