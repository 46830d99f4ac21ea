//! The actor engine: where a tenant's live state is kept and its messages are sequenced.
//!
//! Problems it solves, and the invariants it keeps:
//!
//! - **Who may touch a tenant's state.** Each tenant has its own supervisor tree: a
//!   [`TenantActor`](tenant::TenantActor) that owns the tenant's conversation actors and its
//!   session registry. Code outside this crate reaches a tenant only through a [`TenantHandle`],
//!   which carries a [`bulkhead_storage::TenantStore`] bound to that tenant; no type here can
//!   name another tenant's data.
//! - **Gap-free sequence numbers.** A conversation actor is the single writer of its
//!   conversation. It assigns `seq`s in order, commits them in groups (one storage write per
//!   group, and at most one group in flight), and acknowledges and delivers a message only
//!   after its group is durable. If a commit fails or the actor panics, the actor is stopped and
//!   restarted by its actix `Supervisor`, and it rebuilds its state from RocksDB, so a `seq` that
//!   was never stored is handed out again and no acknowledged message is lost.
//! - **Spreading work.** Conversations run on a fixed pool of worker arbiters (one per core),
//!   chosen by a hash of tenant and conversation.
//!
//! - **Fairness between tenants** is decided per tenant, not per actor. A send is admitted
//!   against the tenant's memory quota, then queued in the fair scheduler of the worker
//!   thread that runs its conversation ([`scheduler`]). The scheduler releases work by deficit
//!   round robin over tenants, charged with the thread CPU time each handler run used, and
//!   holds back tenants over their hard CPU cap. Bandwidth quotas are token buckets applied
//!   by the sessions ([`quota::TenantQuota`]).

mod conversation;
mod engine;
mod error;
pub mod events;
mod features;
pub mod metrics;
mod panic_guard;
pub mod quota;
mod scheduler;
mod sessions;
mod tenant;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, Result};
pub use features::Feature;
pub use sessions::{CloseReason, Outbound, SessionGuard, SessionId};
pub use tenant::{AmendOutcome, Amendment, SendOutcome, SendRequest, TenantHandle};
