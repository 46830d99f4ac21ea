//! Session routing: which WebSocket sessions of a tenant belong to which user.
//!
//! A session is a task in the gateway. It registers here and receives everything the engine
//! pushes to it (events, close requests) through an unbounded channel. That channel is
//! bounded by the session's count of undelivered bytes instead. When a push would take it past
//! `max_session_pending_bytes`, the session is marked a slow consumer: it gets no more
//! frames and is asked to close with code 4008 at once, without waiting behind its queue.
//! The client reconnects and catches up with `sync`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use bulkhead_storage::UserId;
use parking_lot::RwLock;
use tokio::sync::{mpsc, Notify};

use crate::{metrics::RejectReason, quota::TenantQuota};

pub type SessionId = u64;

/// The reason the server closes a session; the gateway turns it into a WebSocket close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down (close code 1001).
    ServerShutdown,
    /// The tenant was deleted (close code 4004).
    TenantDeleted,
    /// The tenant was suspended (close code 4003).
    TenantSuspended,
    /// The user was deleted (close code 4004).
    UserDeleted,
    /// The session's undelivered frames passed `max_session_pending_bytes` (close code 4008).
    SlowConsumer,
}

/// A message the engine pushes to a session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A complete JSON text frame, shared by every session it is fanned out to.
    /// `accepted_at` is set for `message` events, for the delivery latency histogram.
    Frame { text: Arc<str>, accepted_at: Option<Instant> },
    Close(CloseReason),
}

struct SessionEntry {
    id: SessionId,
    tx: mpsc::UnboundedSender<Outbound>,
    shared: Arc<SessionShared>,
}

/// State shared between a session's registry entry and its task.
struct SessionShared {
    pending_bytes: AtomicU64,
    slow: AtomicBool,
    slow_notify: Notify,
}

/// The sessions of one tenant, by user.
pub(crate) struct SessionRegistry {
    quota: Arc<TenantQuota>,
    max_pending_bytes: u64,
    by_user: RwLock<HashMap<UserId, Vec<SessionEntry>>>,
    count: AtomicUsize,
}

// Session ids are unique in the process, so a session can be named in logs without its tenant.
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl SessionRegistry {
    pub(crate) fn new(quota: Arc<TenantQuota>, max_pending_bytes: u64) -> Arc<Self> {
        Arc::new(SessionRegistry {
            quota,
            max_pending_bytes,
            by_user: RwLock::new(HashMap::new()),
            count: AtomicUsize::new(0),
        })
    }

    pub(crate) fn register(self: &Arc<Self>, user: UserId) -> (SessionGuard, mpsc::UnboundedReceiver<Outbound>) {
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(SessionShared {
            pending_bytes: AtomicU64::new(0),
            slow: AtomicBool::new(false),
            slow_notify: Notify::new(),
        });
        self.by_user.write().entry(user.clone()).or_default().push(SessionEntry {
            id,
            tx,
            shared: shared.clone(),
        });
        self.count.fetch_add(1, Ordering::Relaxed);

        let guard = SessionGuard {
            registry: self.clone(),
            user,
            id,
            shared,
        };
        (guard, rx)
    }

    fn unregister(&self, user: &UserId, id: SessionId) {
        let mut by_user = self.by_user.write();
        if let Some(entries) = by_user.get_mut(user) {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                by_user.remove(user);
            }
        }
        drop(by_user);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Pushes `frame` to every session of `user` except `skip`. Returns how many sessions it
    /// was queued for. A session that would pass its pending limit is closed as a slow
    /// consumer instead.
    pub(crate) fn push_to_user(
        &self,
        user: &UserId,
        frame: &Arc<str>,
        skip: Option<SessionId>,
        accepted_at: Option<Instant>,
    ) -> usize {
        let by_user = self.by_user.read();
        let Some(entries) = by_user.get(user) else {
            return 0;
        };
        let bytes = frame.len() as u64;
        let mut queued = 0;
        for entry in entries.iter().filter(|e| Some(e.id) != skip) {
            if entry.shared.slow.load(Ordering::Acquire) {
                continue;
            }
            let pending = entry.shared.pending_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
            if pending > self.max_pending_bytes {
                entry.shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.mark_slow(entry);
                continue;
            }
            self.quota.reserve_outbound(bytes);
            let outbound = Outbound::Frame {
                text: frame.clone(),
                accepted_at,
            };
            if entry.tx.send(outbound).is_ok() {
                queued += 1;
            } else {
                entry.shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                self.quota.release_outbound(bytes);
            }
        }
        queued
    }

    fn mark_slow(&self, entry: &SessionEntry) {
        if !entry.shared.slow.swap(true, Ordering::AcqRel) {
            tracing::info!(session = entry.id, limit = self.max_pending_bytes, "closing a slow consumer");
            self.quota.metrics.reject(RejectReason::SlowConsumer);
            entry.shared.slow_notify.notify_one();
        }
    }

    pub(crate) fn close_user(&self, user: &UserId, reason: CloseReason) {
        if let Some(entries) = self.by_user.read().get(user) {
            for entry in entries {
                let _ = entry.tx.send(Outbound::Close(reason));
            }
        }
    }

    pub(crate) fn close_all(&self, reason: CloseReason) {
        for entries in self.by_user.read().values() {
            for entry in entries {
                let _ = entry.tx.send(Outbound::Close(reason));
            }
        }
    }
}

/// Keeps a session registered; dropping it (when the session task ends) unregisters it and
/// returns its undelivered bytes to the tenant's memory quota.
pub struct SessionGuard {
    registry: Arc<SessionRegistry>,
    user: UserId,
    id: SessionId,
    shared: Arc<SessionShared>,
}

impl SessionGuard {
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Marks a frame of `bytes` as written to the socket (or dropped by the session).
    pub fn frame_done(&self, bytes: u64) {
        self.shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.registry.quota.release_outbound(bytes);
    }

    /// Completes when the session has been marked a slow consumer.
    pub async fn slow_consumer(&self) {
        if self.shared.slow.load(Ordering::Acquire) {
            return;
        }
        self.shared.slow_notify.notified().await;
    }

    pub fn is_slow_consumer(&self) -> bool {
        self.shared.slow.load(Ordering::Acquire)
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.unregister(&self.user, self.id);
        let left = self.shared.pending_bytes.swap(0, Ordering::AcqRel);
        self.registry.quota.release_outbound(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::ManualClock;
    use bulkhead_storage::QuotaLimits;

    fn quota() -> Arc<TenantQuota> {
        let limits = QuotaLimits {
            cpu_millicores: 1000,
            memory_bytes: 1 << 20,
            ingress_bytes_per_sec: 1 << 20,
            egress_bytes_per_sec: 1 << 20,
            max_connections: 10,
            max_message_bytes: 1 << 16,
            max_storage_bytes: 1 << 30,
            weight: 1,
            rest_requests_per_sec: 1000,
        };
        Arc::new(TenantQuota::new(limits, Arc::new(ManualClock::new())))
    }

    #[test]
    fn slow_consumer_is_cut_at_the_limit() {
        let quota = quota();
        let registry = SessionRegistry::new(quota.clone(), 1000);
        let bob = UserId::parse("bob").unwrap();
        let (guard, mut rx) = registry.register(bob.clone());
        let frame: Arc<str> = "x".repeat(300).into();

        // Three frames (900 bytes) fit under 1,000; the fourth marks the session slow and
        // nothing more is queued for it.
        let queued: usize = (0..10).map(|_| registry.push_to_user(&bob, &frame, None, None)).sum();
        assert_eq!(queued, 3);
        assert!(guard.is_slow_consumer());
        assert_eq!(quota.metrics.rejections(RejectReason::SlowConsumer), 1);
        assert_eq!(quota.memory_used(), 900);

        let mut received = 0;
        while rx.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, 3);

        guard.frame_done(300);
        assert_eq!(quota.memory_used(), 600);
        drop(guard);
        assert_eq!(quota.memory_used(), 0, "a closed session returns its pending bytes");
        assert_eq!(registry.connection_count(), 0);
    }

    #[test]
    fn push_skips_the_origin_session() {
        let registry = SessionRegistry::new(quota(), 1 << 20);
        let alice = UserId::parse("alice").unwrap();
        let (first, mut first_rx) = registry.register(alice.clone());
        let (_second, mut second_rx) = registry.register(alice.clone());
        let frame: Arc<str> = "{}".into();

        assert_eq!(registry.push_to_user(&alice, &frame, Some(first.id()), None), 1);
        assert!(first_rx.try_recv().is_err());
        assert!(second_rx.try_recv().is_ok());
    }
}
