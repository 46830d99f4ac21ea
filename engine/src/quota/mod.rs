//! Per-tenant resource quotas: CPU, memory, bandwidth, REST requests.
//!
//! Each tenant has one [`TenantQuota`], shared by its sessions (bandwidth), its send path
//! (memory), the worker schedulers (CPU) and the gateway's REST handlers (REST requests).
//! The primitives are plain structs driven by a [`Clock`], so their tests run on a manual
//! clock.

pub mod clock;
pub mod cpu_budget;
pub mod fair_queue;
mod tenant_quota;
pub mod token_bucket;

pub use clock::{thread_cpu_time, Clock, ManualClock, MonotonicClock};
pub use tenant_quota::{QuotaExceeded, Resource, TenantQuota};
