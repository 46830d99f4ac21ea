//! Matching of responses to the requests waiting for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bulkhead_proto::ServerFrame;
use tokio::sync::oneshot;

use super::CloseInfo;
use crate::error::ClientError;

pub(super) type Reply = oneshot::Sender<Result<ServerFrame, ClientError>>;

/// Requests waiting for a response, shared by callers and the reader task.
///
/// `closed` is set under the same lock that guards `pending`, so a request registered after
/// the connection closed fails at once instead of waiting for a response that cannot come.
pub(super) struct Routes {
    state: Mutex<RouteState>,
}

#[derive(Default)]
struct RouteState {
    pending: HashMap<u64, Reply>,
    raw_waiter: Option<Reply>,
    closed: Option<CloseInfo>,
}

impl Routes {
    pub(super) fn new() -> Self {
        Routes {
            state: Mutex::new(RouteState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouteState> {
        // Nothing panics while holding the lock, and the map stays consistent even if it did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn register(&self, id: u64, reply: Reply) -> Result<(), ClientError> {
        let mut state = self.lock();
        if let Some(info) = &state.closed {
            return Err(closed_error(info));
        }
        state.pending.insert(id, reply);
        Ok(())
    }

    pub(super) fn register_raw(&self, reply: Reply) -> Result<(), ClientError> {
        let mut state = self.lock();
        if let Some(info) = &state.closed {
            return Err(closed_error(info));
        }
        if state.raw_waiter.is_some() {
            return Err(ClientError::Protocol(
                "another raw frame is still waiting for its response".to_string(),
            ));
        }
        state.raw_waiter = Some(reply);
        Ok(())
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().pending.remove(&id);
    }

    pub(super) fn clear_raw(&self) {
        self.lock().raw_waiter = None;
    }

    /// Hands a response to the request with its id, or else to the raw frame waiting for
    /// one. Returns the response back when no caller is waiting for it.
    pub(super) fn deliver(
        &self,
        id: Option<u64>,
        response: Result<ServerFrame, ClientError>,
    ) -> Option<Result<ServerFrame, ClientError>> {
        let mut state = self.lock();
        let reply = id
            .and_then(|id| state.pending.remove(&id))
            .or_else(|| state.raw_waiter.take());

        match reply {
            // A caller that gave up has dropped its receiver, so a failed send is expected.
            Some(reply) => {
                let _ = reply.send(response);
                None
            }
            None => Some(response),
        }
    }

    /// Records the close and fails every waiting request with it. The first close wins, so
    /// a later transport error cannot replace the code from the server's close frame.
    pub(super) fn close(&self, info: CloseInfo) -> CloseInfo {
        let mut state = self.lock();
        let info = state.closed.get_or_insert(info).clone();

        for (_, reply) in state.pending.drain() {
            let _ = reply.send(Err(closed_error(&info)));
        }
        if let Some(reply) = state.raw_waiter.take() {
            let _ = reply.send(Err(closed_error(&info)));
        }
        info
    }
}

pub(super) fn closed_error(info: &CloseInfo) -> ClientError {
    ClientError::Closed {
        code: info.0,
        reason: info.1.clone(),
    }
}

/// Removes a request from the pending map when its caller stops waiting, whether it got a
/// response, timed out or dropped the future.
pub(super) struct PendingGuard {
    routes: Arc<Routes>,
    id: u64,
}

impl PendingGuard {
    pub(super) fn new(routes: Arc<Routes>, id: u64) -> Self {
        PendingGuard { routes, id }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.routes.remove(self.id);
    }
}
