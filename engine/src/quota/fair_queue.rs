//! Deficit round robin over tenants, with sparse tenants served first.
//!
//! Each tenant with queued work has a place in a round. When its turn comes, its deficit is
//! topped up by `quantum × weight`; it runs items while its deficit is positive, and every
//! item is charged afterwards with what it really cost (CPU time). A tenant that spends more
//! than its share goes negative and sits out turns until the top-ups catch up. Queues are per
//! tenant, not per conversation, so a tenant with a thousand busy conversations gets the same
//! share as a tenant with one.
//!
//! A tenant that was idle and gets work joins a list of new tenants, which is served before the
//! round, as the new flows of FQ-CoDel (RFC 8290) are. A quiet tenant that sends a
//! message now and then therefore waits for no busy tenant's turn. It gets no more than its
//! share from this: the top-up it gets as a new tenant replaces the one of its next turn in
//! the round, and it can become new again only after it has left the round.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::Duration,
};

struct TenantQueue<T> {
    items: VecDeque<T>,
    weight: u64,
    /// Nanoseconds of CPU the tenant may still use in this turn; negative after overspending.
    deficit_nanos: i64,
    /// Whether the tenant is in the new list or in the round.
    listed: bool,
    /// Whether the tenant's next turn in the round goes without a top-up, because it had
    /// this round's top-up as a new tenant.
    skip_top_up: bool,
}

impl<T> TenantQueue<T> {
    /// Drops the credit that the tenant did not use. Credit saved while idle would let it
    /// burst past the others later, but its debt stays.
    fn drop_credit(&mut self) {
        self.deficit_nanos = self.deficit_nanos.min(0);
    }
}

pub struct FairQueue<K, T> {
    quantum: Duration,
    queues: HashMap<K, TenantQueue<T>>,
    /// Tenants that were idle and got work, served before the round.
    new_tenants: VecDeque<K>,
    /// The other listed tenants, in turn order. The front one is being served. A tenant that
    /// moved here from the new list may have an empty queue until its turn.
    round: VecDeque<K>,
    /// Whether the front tenant of the round has started its turn (had its top-up or skipped it).
    front_started: bool,
    /// Items in all queues.
    queued: usize,
}

impl<K: Clone + Eq + Hash, T> FairQueue<K, T> {
    /// `quantum` is the CPU time a tenant of weight 1 may use per turn. It must be positive,
    /// because a tenant in debt pays it back with top-ups of `quantum × weight`.
    pub fn new(quantum: Duration) -> Self {
        assert!(!quantum.is_zero(), "the fair queue's quantum must be positive");
        FairQueue {
            quantum,
            queues: HashMap::new(),
            new_tenants: VecDeque::new(),
            round: VecDeque::new(),
            front_started: false,
            queued: 0,
        }
    }

    pub fn push(&mut self, tenant: K, weight: u64, item: T) {
        let quantum = self.quantum_nanos();
        let queue = self.queues.entry(tenant.clone()).or_insert_with(|| TenantQueue {
            items: VecDeque::new(),
            weight,
            deficit_nanos: 0,
            listed: false,
            skip_top_up: false,
        });
        queue.weight = weight.max(1);
        queue.items.push_back(item);
        self.queued += 1;

        if !queue.listed {
            queue.listed = true;
            queue.deficit_nanos = queue.deficit_nanos.saturating_add(quantum * queue.weight as i64);
            self.new_tenants.push_back(tenant);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    pub fn len_of(&self, tenant: &K) -> usize {
        self.queues.get(tenant).map_or(0, |q| q.items.len())
    }

    /// Returns the next item, from the new tenants first and then by deficit round robin,
    /// skipping tenants for which `may_run` is false (for example, tenants over their hard CPU
    /// cap). `None` when no runnable tenant has work.
    pub fn pop(&mut self, mut may_run: impl FnMut(&K) -> bool) -> Option<(K, T)> {
        if let Some(popped) = self.pop_new(&mut may_run) {
            return Some(popped);
        }
        self.pop_round(&mut may_run)
    }

    /// Serves the front of the new list. A new tenant that is held back, is in debt, has used
    /// its quantum or has run out of work moves to the back of the round.
    fn pop_new(&mut self, may_run: &mut impl FnMut(&K) -> bool) -> Option<(K, T)> {
        while let Some(tenant) = self.new_tenants.front().cloned() {
            let queue = self.queues.get_mut(&tenant).expect("listed tenants have a queue");
            if queue.items.is_empty() || queue.deficit_nanos <= 0 || !may_run(&tenant) {
                queue.drop_credit();
                queue.skip_top_up = true;
                self.new_tenants.pop_front();
                self.round.push_back(tenant);
                continue;
            }

            let item = queue.items.pop_front().expect("the queue was checked to be non-empty");
            self.queued -= 1;
            return Some((tenant, item));
        }
        None
    }

    fn pop_round(&mut self, may_run: &mut impl FnMut(&K) -> bool) -> Option<(K, T)> {
        // Each pass serves the front tenant, drops it from the round because its queue is
        // empty, or moves it to the back. A runnable tenant gets a positive top-up at least
        // every other turn, so it is served once its debt is paid, however deep the debt. The
        // loop stops early only when a whole round of tenants in a row is held back.
        let mut held_back_in_a_row = 0;
        while let Some(tenant) = self.round.front().cloned() {
            if held_back_in_a_row >= self.round.len() {
                return None;
            }

            let quantum = self.quantum_nanos();
            let queue = self.queues.get_mut(&tenant).expect("listed tenants have a queue");
            if queue.items.is_empty() {
                queue.drop_credit();
                queue.listed = false;
                queue.skip_top_up = false;
                self.round.pop_front();
                self.front_started = false;
                continue;
            }
            if !may_run(&tenant) {
                held_back_in_a_row += 1;
                self.rotate();
                continue;
            }
            held_back_in_a_row = 0;
            if !self.front_started {
                if !queue.skip_top_up {
                    queue.deficit_nanos = queue.deficit_nanos.saturating_add(quantum * queue.weight as i64);
                }
                queue.skip_top_up = false;
                self.front_started = true;
            }
            if queue.deficit_nanos <= 0 {
                self.rotate();
                continue;
            }

            let item = queue.items.pop_front().expect("the queue was checked to be non-empty");
            self.queued -= 1;
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
        if self.round.front() == Some(tenant) {
            self.front_started = false;
        }
        self.new_tenants.retain(|t| t != tenant);
        self.round.retain(|t| t != tenant);
        let items: Vec<T> = self.queues.remove(tenant).map(|q| q.items.into_iter().collect()).unwrap_or_default();
        self.queued -= items.len();
        items
    }

    fn quantum_nanos(&self) -> i64 {
        self.quantum.as_nanos() as i64
    }

    fn rotate(&mut self) {
        if let Some(tenant) = self.round.pop_front() {
            self.round.push_back(tenant);
        }
        self.front_started = false;
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
        // The queue is empty, so this pop finds "a" idle and drops it from the lists. "a" used
        // 1 ms of its 10 ms quantum. It must not keep the other 9 ms, because they would let it
        // run two 10 ms items in its next turn.
        assert!(queue.pop(|_| true).is_none());

        for i in 0..10 {
            queue.push("a", 1, i);
            queue.push("b", 1, i);
        }
        let order: Vec<_> = (0..4)
            .map(|_| {
                let (t, _) = queue.pop(|_| true).unwrap();
                queue.charge(&t, 10 * MS);
                t
            })
            .collect();
        assert_eq!(order, vec!["a", "b", "a", "b"]);
    }

    #[test]
    fn sparse_tenant_skips_busy_turn() {
        // "busy" runs 10 ms items until it is in the round, in the middle of a 10 ms turn.
        let mut queue = FairQueue::new(10 * MS);
        for i in 0..100 {
            queue.push("busy", 1, i);
        }
        for cost in [10 * MS, MS] {
            let (t, _) = queue.pop(|_| true).unwrap();
            queue.charge(&t, cost);
        }

        queue.push("quiet", 1, 0);
        let (next, _) = queue.pop(|_| true).unwrap();

        assert_eq!(next, "quiet");
    }

    #[test]
    fn sparse_tenant_gets_no_more_than_its_share() {
        // "quiet" always has exactly one item queued: it gets a new item as soon as the last
        // one ran, so its queue empties after every item. Re-entering must not win it more
        // than half of the runs against a tenant that is always busy.
        let mut queue = FairQueue::new(MS);
        for i in 0..1000 {
            queue.push("busy", 1, i);
        }
        let mut runs: HashMap<&str, usize> = HashMap::new();
        for i in 0..200 {
            if queue.len_of(&"quiet") == 0 {
                queue.push("quiet", 1, i);
            }
            let (tenant, _) = queue.pop(|_| true).unwrap();
            queue.charge(&tenant, MS);
            *runs.entry(tenant).or_default() += 1;
        }

        assert!(runs["quiet"] <= 101, "quiet ran {} of 200", runs["quiet"]);
        assert!(runs["busy"] >= 99, "busy ran {} of 200", runs["busy"]);
    }

    #[test]
    fn indebted_tenant_waits_for_its_turn() {
        // "a" overspent by far on its last item. When it gets work again it is not new: "b",
        // already waiting, runs until "a" has paid its debt back with top-ups.
        let mut queue = FairQueue::new(MS);
        queue.push("a", 1, 0);
        let (t, _) = queue.pop(|_| true).unwrap();
        queue.charge(&t, 3 * MS);
        for i in 0..10 {
            queue.push("b", 1, i);
        }
        let (t, _) = queue.pop(|_| true).unwrap();
        queue.charge(&t, MS);

        queue.push("a", 1, 1);
        let order: Vec<_> = (0..4)
            .map(|_| {
                let (t, _) = queue.pop(|_| true).unwrap();
                queue.charge(&t, MS);
                t
            })
            .collect();

        // "a" is 2 ms in debt after its item (3 ms charged against a 1 ms quantum). It skips
        // the top-up of its first turn, which it had as a new tenant, and needs the top-ups of
        // two more turns to get positive.
        assert_eq!(order, vec!["b", "b", "a", "b"]);
    }

    #[test]
    fn deep_debt_is_paid_within_one_pop() {
        // One handler run cost 200 quanta. The tenant is the only one with work and may run,
        // so the next pop must serve it after the top-ups, not report that nothing can run.
        let mut queue = FairQueue::new(MS);
        queue.push("a", 1, 0);
        let (t, _) = queue.pop(|_| true).unwrap();
        queue.charge(&t, 200 * MS);
        queue.push("a", 1, 1);

        assert_eq!(queue.pop(|_| true), Some(("a", 1)));
    }

    #[test]
    fn removed_tenant_leaves_no_work() {
        let mut queue = FairQueue::new(MS);
        queue.push("a", 1, 0);
        queue.push("a", 1, 1);
        queue.push("b", 1, 2);

        let removed = queue.remove(&"a");

        assert_eq!(removed, vec![0, 1]);
        assert_eq!(queue.pop(|_| true).map(|(t, i)| (t, i)), Some(("b", 2)));
        assert!(queue.is_empty());
        assert!(queue.pop(|_| true).is_none());
    }
}
