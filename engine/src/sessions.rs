//! Session routing: which WebSocket sessions of a tenant belong to which user.
//!
//! A session is a task in the gateway. It registers here and receives everything the engine
//! wants to push to it (events, close requests) through an unbounded channel; the registry
//! only holds the sending ends.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use bulkhead_storage::{TenantId, UserId};
use parking_lot::RwLock;
use tokio::sync::mpsc;

pub type SessionId = u64;

/// Why the server closes a session; the gateway turns it into a WebSocket close frame.
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
}

/// What the engine pushes to a session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A complete JSON text frame, shared by every session it is fanned out to.
    Frame(Arc<str>),
    Close(CloseReason),
}

struct SessionEntry {
    id: SessionId,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// The sessions of one tenant, by user.
pub(crate) struct SessionRegistry {
    tenant: TenantId,
    by_user: RwLock<HashMap<UserId, Vec<SessionEntry>>>,
    count: AtomicUsize,
}

// Session ids are unique in the process, so a session can be named in logs without its tenant.
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl SessionRegistry {
    pub(crate) fn new(tenant: TenantId) -> Arc<Self> {
        Arc::new(SessionRegistry {
            tenant,
            by_user: RwLock::new(HashMap::new()),
            count: AtomicUsize::new(0),
        })
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        user: UserId,
    ) -> (SessionGuard, mpsc::UnboundedReceiver<Outbound>) {
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.by_user
            .write()
            .entry(user.clone())
            .or_default()
            .push(SessionEntry { id, tx });
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        self.record_connections(count);

        let guard = SessionGuard {
            registry: self.clone(),
            user,
            id,
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
        let count = self.count.fetch_sub(1, Ordering::Relaxed) - 1;
        self.record_connections(count);
    }

    fn record_connections(&self, count: usize) {
        metrics::gauge!("bulkhead_tenant_connections", "tenant" => self.tenant.to_string()).set(count as f64);
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Pushes `frame` to every session of `user` except `skip`. Returns how many sessions it
    /// reached. A session whose task has ended is skipped; it unregisters itself.
    pub(crate) fn push_to_user(&self, user: &UserId, frame: &Arc<str>, skip: Option<SessionId>) -> usize {
        let by_user = self.by_user.read();
        let Some(entries) = by_user.get(user) else {
            return 0;
        };
        let mut reached = 0;
        for entry in entries.iter().filter(|e| Some(e.id) != skip) {
            if entry.tx.send(Outbound::Frame(frame.clone())).is_ok() {
                reached += 1;
            }
        }
        reached
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

/// Keeps a session registered; dropping it (when the session task ends) unregisters it.
pub struct SessionGuard {
    registry: Arc<SessionRegistry>,
    user: UserId,
    id: SessionId,
}

impl SessionGuard {
    pub fn id(&self) -> SessionId {
        self.id
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.unregister(&self.user, self.id);
    }
}
