//! Charges the gateway's work for a tenant to that tenant's CPU quota.
//!
//! A session spends CPU outside the engine: decoding frames, parsing JSON, admitting sends,
//! serializing responses and writing to the socket. For a tenant that floods small messages
//! this is most of its cost, so leaving it out would let a tenant capped at 0.1 cores make
//! the server spend far more. Every poll of a session task or request task is timed with the
//! thread CPU clock and charged to the tenant's quota.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bulkhead_engine::quota::{thread_cpu_time, TenantQuota};

/// A future whose every poll is charged to `quota`.
pub struct Charged<F> {
    inner: Pin<Box<F>>,
    quota: Arc<TenantQuota>,
}

impl<F: Future> Charged<F> {
    pub fn new(quota: Arc<TenantQuota>, inner: F) -> Self {
        Charged {
            inner: Box::pin(inner),
            quota,
        }
    }
}

impl<F: Future> Future for Charged<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_time();
        let result = self.inner.as_mut().poll(cx);
        self.quota.charge_cpu(thread_cpu_time().saturating_sub(start));
        result
    }
}
