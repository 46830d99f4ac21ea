//! Turns a panic inside an actor handler into an actor restart.
//!
//! actix does not catch panics: a panicking handler unwinds out of the actor's future, which
//! tokio then drops, so the actix `Supervisor` never sees the actor stop and cannot restart it.
//! Handlers therefore run their body through [`run_guarded`], which catches the panic, counts
//! it and stops the actor; the `Supervisor` then restarts it with the same mailbox.

use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::ActorContext;

/// Runs `body`; on panic, logs it, counts it in `bulkhead_actor_panics_total` and stops the
/// actor so that its supervisor restarts it. Returns `None` after a panic.
pub(crate) fn run_guarded<C, R>(kind: &'static str, ctx: &mut C, body: impl FnOnce(&mut C) -> R) -> Option<R>
where
    C: ActorContext,
{
    match catch_unwind(AssertUnwindSafe(|| body(ctx))) {
        Ok(value) => Some(value),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            tracing::error!(actor = kind, panic = %message, "actor panicked; restarting it");
            metrics::counter!("bulkhead_actor_panics_total", "actor" => kind).increment(1);
            ctx.stop();
            None
        }
    }
}
