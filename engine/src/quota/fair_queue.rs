//! Deficit round robin over tenants.
//!
//! Each tenant with queued work has a place in a round. When its turn comes, its deficit is
//! topped up by `quantum × weight`; it runs items while its deficit is positive, and every
//! item is charged afterwards with what it really cost (CPU time). A tenant that spends more
//! than its share goes negative and sits out turns until the top-ups catch up. Queues are per
//! tenant, not per conversation, so a tenant with a thousand busy conversations gets the same
//! share as a tenant with one.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::Duration,
};

struct TenantQueue<T> {
    items: VecDeque<T>,
    weight: u64,
    /// Nanoseconds of CPU the tenant may still use in this round; negative after overspending.
    deficit_nanos: i64,
}

pub struct FairQueue<K, T> {
    quantum: Duration,
    queues: HashMap<K, TenantQueue<T>>,
    /// Tenants with queued items, in turn order. The front one is being served.
    round: VecDeque<K>,
    /// Whether the front tenant has had its top-up for the current turn.
    front_topped_up: bool,
}

impl<K: Clone + Eq + Hash, T> FairQueue<K, T> {
    /// `quantum` is the CPU time a tenant of weight 1 may use per turn.
    pub fn new(quantum: Duration) -> Self {
        FairQueue {
            quantum,
            queues: HashMap::new(),
            round: VecDeque::new(),
            front_topped_up: false,
        }
    }

    pub fn push(&mut self, tenant: K, weight: u64, item: T) {
        let queue = self.queues.entry(tenant.clone()).or_insert_with(|| TenantQueue {
            items: VecDeque::new(),
            weight,
            deficit_nanos: 0,
        });
        queue.weight = weight.max(1);
        if queue.items.is_empty() && !self.round.contains(&tenant) {
            self.round.push_back(tenant);
        }
        queue.items.push_back(item);
    }

    pub fn is_empty(&self) -> bool {
        self.round.is_empty()
    }

    pub fn len_of(&self, tenant: &K) -> usize {
        self.queues.get(tenant).map_or(0, |q| q.items.len())
    }

    /// Returns the next item by deficit round robin, skipping tenants for which `may_run` is false
    /// (for example, tenants over their hard CPU cap). `None` when no runnable tenant has work.
    pub fn pop(&mut self, mut may_run: impl FnMut(&K) -> bool) -> Option<(K, T)> {
        // Each pass either serves the front tenant or moves it to the back with a top-up, and
        // every top-up is positive, so a runnable tenant is served within a bounded number
        // of passes. The bound also stops the loop when every tenant is held back.
        let mut passes = 0;
        let limit = self.round.len() * 64 + 64;
        while let Some(tenant) = self.round.front().cloned() {
            passes += 1;
            if passes > limit {
                return None;
            }
            if !may_run(&tenant) {
                self.rotate();
                continue;
            }

            let quantum = self.quantum.as_nanos() as i64;
            let queue = self.queues.get_mut(&tenant).expect("tenants in the round have a queue");
            if !self.front_topped_up {
                queue.deficit_nanos = queue.deficit_nanos.saturating_add(quantum * queue.weight as i64);
                self.front_topped_up = true;
            }
            if queue.deficit_nanos <= 0 {
                self.rotate();
                continue;
            }

            let item = queue.items.pop_front().expect("tenants in the round have items");
            if queue.items.is_empty() {
                // An idle tenant keeps its debt but not its credit: credit saved while idle
                // would let it burst past the others later.
                queue.deficit_nanos = queue.deficit_nanos.min(0);
                self.round.pop_front();
                self.front_topped_up = false;
            }
            return Some((tenant, item));
        }
        None
    }

    /// Charges `tenant` the cost of an item it ran.
    pub fn charge(&mut self, tenant: &K, cost: Duration) {
        if let Some(queue) = self.queues.get_mut(tenant) {
            queue.deficit_nanos = queue.deficit_nanos.saturating_sub(cost.as_nanos() as i64);
        }
    }

    /// Forgets a tenant and its queued items.
    pub fn remove(&mut self, tenant: &K) -> Vec<T> {
        self.round.retain(|t| t != tenant);
        self.front_topped_up = false;
        self.queues.remove(tenant).map(|q| q.items.into_iter().collect()).unwrap_or_default()
    }

    fn rotate(&mut self) {
        if let Some(tenant) = self.round.pop_front() {
            self.round.push_back(tenant);
        }
        self.front_topped_up = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `n` items, each costing `cost`, and counts how many each tenant ran.
    fn run(queue: &mut FairQueue<&'static str, u32>, n: usize, cost: Duration) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let (tenant, _) = queue.pop(|_| true).expect("work is queued");
            queue.charge(&tenant, cost);
            *counts.entry(tenant).or_default() += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_alternate() {
        let mut queue = FairQueue::new(MS);
        for i in 0..100 {
            queue.push("a", 1, i);
            queue.push("b", 1, i);
        }
        let order: Vec<_> = (0..6)
            .map(|_| {
                let (t, _) = queue.pop(|_| true).unwrap();
                queue.charge(&t, MS);
                t
            })
            .collect();
        assert_eq!(order, vec!["a", "b", "a", "b", "a", "b"]);
    }

    #[test]
    fn thousand_conversations_get_one_share() {
        // Tenant "busy" has a thousand conversations with work, "quiet" has one. Queues are
        // per tenant, so both get the same share of runs while both have work.
        let mut queue = FairQueue::new(MS);
        for conversation in 0..1000 {
            queue.push("busy", 1, conversation);
        }
        for message in 0..100 {
            queue.push("quiet", 1, message);
        }
        let counts = run(&mut queue, 200, MS);
        assert_eq!(counts["busy"], 100);
        assert_eq!(counts["quiet"], 100);
    }

    #[test]
    fn weights_share_capacity() {
        let mut queue = FairQueue::new(MS);
        for i in 0..1000 {
            queue.push("gold", 3, i);
            queue.push("basic", 1, i);
        }
        let counts = run(&mut queue, 400, MS);
        assert_eq!(counts["gold"], 300);
        assert_eq!(counts["basic"], 100);
    }

    #[test]
    fn expensive_items_are_charged_their_cost() {
        // "heavy" items cost 4 ms, "light" items 1 ms; CPU time, not item count, is shared.
        let mut queue = FairQueue::new(MS);
        for i in 0..1000 {
            queue.push("heavy", 1, i);
            queue.push("light", 1, i);
        }
        let mut cpu: HashMap<&str, Duration> = HashMap::new();
        for _ in 0..500 {
            let (tenant, _) = queue.pop(|_| true).unwrap();
            let cost = if tenant == "heavy" { 4 * MS } else { MS };
            queue.charge(&tenant, cost);
            *cpu.entry(tenant).or_default() += cost;
        }
        let (heavy, light) = (cpu["heavy"], cpu["light"]);
        let gap = heavy.abs_diff(light);
        assert!(gap <= 4 * MS, "heavy {heavy:?} vs light {light:?}");
    }

    #[test]
    fn held_back_tenant_is_skipped_not_starving_others() {
        let mut queue = FairQueue::new(MS);
        queue.push("capped", 1, 1);
        queue.push("free", 1, 2);
        queue.push("free", 1, 3);
        let (t, _) = queue.pop(|t| *t != "capped").unwrap();
        assert_eq!(t, "free");
        let (t, _) = queue.pop(|t| *t != "capped").unwrap();
        assert_eq!(t, "free");
        assert!(queue.pop(|t| *t != "capped").is_none());
        assert_eq!(queue.pop(|_| true).unwrap().0, "capped");
        assert!(queue.is_empty());
    }

    #[test]
    fn idle_tenant_does_not_bank_credit() {
        let mut queue = FairQueue::new(10 * MS);
        queue.push("a", 1, 0);
        let (t, _) = queue.pop(|_| true).unwrap();
        queue.charge(&t, MS);
        // "a" used 1 ms of a 10 ms quantum and went idle; it must not keep the other 9 ms.
        for i in 0..10 {
            queue.push("a", 1, i);
            queue.push("b", 1, i);
        }
        let first_two: Vec<_> = (0..2).map(|_| {
            let (t, _) = queue.pop(|_| true).unwrap();
            queue.charge(&t, 10 * MS);
            t
        }).collect();
        assert_eq!(first_two, vec!["a", "b"]);
    }
}
