//! The fair scheduler of a worker thread.
//!
//! actix gives no fairness between tenants: an actor drains its whole mailbox before it
//! yields, and `do_send` ignores mailbox capacity. So work for a conversation does not go to
//! its actor directly. It is submitted to the scheduler of the actor's worker thread, which
//! keeps one queue per tenant and releases jobs by deficit round robin ([`FairQueue`]),
//! tenants that just got work first, skipping tenants that are over their hard CPU cap. The actor measures the thread CPU time
//! of each handler run and charges it back to the tenant here, so a tenant that spends more
//! CPU per message gets fewer messages through.

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use actix_rt::ArbiterHandle;
use bulkhead_storage::TenantId;
use tokio::sync::mpsc;

use crate::quota::{fair_queue::FairQueue, TenantQuota};

/// CPU time a tenant of weight 1 may use per turn. Small enough that a quiet tenant waits at
/// most a few turns behind a busy one; large enough to run several sends per turn. 500 µs
/// is an estimate from one send's cost and may be tuned with the noisy-neighbour benchmark.
const QUANTUM: Duration = Duration::from_micros(500);

/// Jobs released before the scheduler yields to let actors handle them. Actors charge their
/// CPU time only when they run, so the queue cannot stop a tenant within one batch. A quiet
/// tenant's job released after a batch of a busy tenant's waits for all of them.
const JOBS_PER_YIELD: usize = 4;

/// Maximum sleep while every tenant with work is over its CPU cap; new work wakes it sooner.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(100);

/// A piece of a tenant's work: usually delivering one message to a conversation actor.
pub(crate) struct Job {
    pub tenant: TenantId,
    pub quota: Arc<TenantQuota>,
    pub run: Box<dyn FnOnce() + Send>,
}

#[derive(Clone)]
pub(crate) struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Job>,
}

impl SchedulerHandle {
    /// Starts the scheduler task on `worker`.
    pub(crate) fn start(worker: &ArbiterHandle) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        // The scheduler keeps thread-local state, so it is spawned from inside the worker
        // thread as a local task.
        worker.spawn_fn(move || {
            actix_rt::spawn(run(rx));
        });
        SchedulerHandle { tx }
    }

    /// Queues a job; returns false when the worker has stopped.
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<FairQueue<TenantId, Job>>>>> = const { RefCell::new(None) };
}

/// Charges `cpu` to `tenant` in the scheduler of the calling worker thread, if it has one.
pub(crate) fn charge(tenant: &TenantId, cpu: Duration) {
    CURRENT.with(|current| {
        if let Some(queue) = current.borrow().as_ref() {
            queue.borrow_mut().charge(tenant, cpu);
        }
    });
}

async fn run(mut rx: mpsc::UnboundedReceiver<Job>) {
    let queue = Rc::new(RefCell::new(FairQueue::new(QUANTUM)));
    CURRENT.with(|current| *current.borrow_mut() = Some(queue.clone()));
    let mut quotas: HashMap<TenantId, Arc<TenantQuota>> = HashMap::new();

    loop {
        let mut ran = 0;
        while ran < JOBS_PER_YIELD {
            // Jobs that arrived meanwhile are queued before every pick, so that a tenant that
            // just got work goes ahead of the busy ones without waiting for the batch to end.
            while let Ok(job) = rx.try_recv() {
                enqueue(&queue, &mut quotas, job);
            }
            let next = queue.borrow_mut().pop(|tenant| quotas.get(tenant).is_none_or(|q| q.check_cpu().is_ok()));
            let Some((_, job)) = next else { break };
            (job.run)();
            ran += 1;
        }
        if ran > 0 {
            // Let the actors handle what was released before picking more.
            tokio::task::yield_now().await;
            continue;
        }

        if queue.borrow().is_empty() {
            quotas.clear();
            match rx.recv().await {
                Some(job) => enqueue(&queue, &mut quotas, job),
                None => return,
            }
            continue;
        }

        // Every tenant with work is over its CPU cap: sleep until the first may run again.
        let wait = quotas
            .iter()
            .filter(|(tenant, _)| queue.borrow().len_of(tenant) > 0)
            .filter_map(|(_, quota)| quota.check_cpu().err())
            .min()
            .unwrap_or(MAX_IDLE_WAIT)
            .min(MAX_IDLE_WAIT);
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => enqueue(&queue, &mut quotas, job),
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn enqueue(queue: &Rc<RefCell<FairQueue<TenantId, Job>>>, quotas: &mut HashMap<TenantId, Arc<TenantQuota>>, job: Job) {
    let weight = job.quota.limits().weight;
    quotas.entry(job.tenant.clone()).or_insert_with(|| job.quota.clone());
    queue.borrow_mut().push(job.tenant.clone(), weight, job);
}
