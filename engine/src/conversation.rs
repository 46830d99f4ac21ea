//! The conversation actor: the single writer of one conversation.
//!
//! Sends are sequenced here. A send gets the next `seq` at once and joins the group that is
//! being collected. While one group is being committed, the next one collects, so at most
//! one group per conversation is in flight and groups commit in `seq` order. When a group is
//! durable, its senders get their `ok` and every online session of every member gets the
//! `message` event, in `seq` order.
//!
//! Edits and recalls go through the same groups: the actor checks the sender, builds the
//! changed record and commits it with the next group, so a message never has two changes in
//! flight that could land out of order. The change keeps the message's `seq`.

use std::{collections::HashMap, sync::Arc, time::Instant};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, Supervised, WrapFuture,
};
use bulkhead_storage::{ConvId, ConversationRecord, MessageRecord, StorageError, TenantStore, UserId};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::{
    error::{EngineError, Result},
    events,
    panic_guard::run_guarded,
    quota::{thread_cpu_time, TenantQuota},
    scheduler,
    sessions::{SessionId, SessionRegistry},
    tenant::{Amendment, AmendOutcome, SendOutcome},
};

const ACTOR: &str = "conversation";

pub(crate) struct ConversationActor {
    store: TenantStore,
    conv: ConvId,
    sessions: Arc<SessionRegistry>,
    quota: Arc<TenantQuota>,
    state: Option<LoadedState>,
    /// The error of the last failed load. Every request gets it until a restart succeeds.
    load_error: Option<String>,
    collecting: Group,
    in_flight: bool,
}

/// The state the actor rebuilds from RocksDB when it starts or restarts.
struct LoadedState {
    record: ConversationRecord,
    members: Vec<UserId>,
    next_seq: u64,
    /// `(seq, ts_ms)` of messages that are not durable yet, by `client_msg_id`, so that a
    /// retry that arrives before the commit finishes gets the same `seq`.
    uncommitted_ids: HashMap<String, (u64, u64)>,
    /// The newest version of messages whose edit or recall is not durable yet, by `seq`, so
    /// that a second change builds on the first instead of on the stored record.
    uncommitted_changes: HashMap<u64, MessageRecord>,
}

enum Admission {
    /// Reply at once.
    Reply(Result<SendOutcome>),
    /// Reply with this outcome once the collecting group is durable.
    Wait(SendOutcome),
}

/// A message of a group, with the session it came from and when it was accepted.
struct Pending {
    record: MessageRecord,
    origin: Option<SessionId>,
    accepted_at: Instant,
}

#[derive(Default)]
struct Group {
    messages: Vec<Pending>,
    waiters: Vec<Waiter>,
    changes: Vec<PendingChange>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.waiters.is_empty() && self.changes.is_empty()
    }
}

struct Waiter {
    reply: oneshot::Sender<Result<SendOutcome>>,
    outcome: SendOutcome,
}

/// An edited or recalled message of a group, with the request waiting for it.
struct PendingChange {
    record: MessageRecord,
    origin: Option<SessionId>,
    reply: oneshot::Sender<Result<AmendOutcome>>,
    outcome: AmendOutcome,
}

impl ConversationActor {
    pub(crate) fn new(store: TenantStore, conv: ConvId, sessions: Arc<SessionRegistry>, quota: Arc<TenantQuota>) -> Self {
        ConversationActor {
            store,
            conv,
            sessions,
            quota,
            state: None,
            load_error: None,
            collecting: Group::default(),
            in_flight: false,
        }
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("conversation", tenant = %self.store.tenant(), conv = %self.conv)
    }

    fn load(&mut self) {
        let _span = self.span().entered();
        let loaded = self.store.conversation(&self.conv).and_then(|record| {
            let record = record.ok_or_else(|| StorageError::Decode {
                what: "conversation record",
                reason: "missing".into(),
            })?;
            let last_seq = self.store.last_seq(&self.conv)?;
            Ok((record, last_seq))
        });

        match loaded {
            Ok((record, last_seq)) => {
                let members = record.members.iter().filter_map(|m| UserId::parse(m).ok()).collect();
                self.state = Some(LoadedState {
                    record,
                    members,
                    next_seq: last_seq + 1,
                    uncommitted_ids: HashMap::new(),
                    uncommitted_changes: HashMap::new(),
                });
                self.load_error = None;
                tracing::debug!(last_seq, "conversation loaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "failed to load conversation state");
                self.load_error = Some(err.to_string());
            }
        }
    }

    fn state(&mut self) -> Result<&mut LoadedState> {
        match (&mut self.state, &self.load_error) {
            (Some(state), _) => Ok(state),
            (None, Some(err)) => Err(EngineError::InvalidRequest(format!(
                "conversation {} is unavailable: {err}",
                self.conv
            ))),
            (None, None) => Err(EngineError::NotFound(format!("conversation {}", self.conv))),
        }
    }

    /// Decides what happens to a send: an immediate answer, or a wait for the group being
    /// collected (a new message, or a retry of one that is not durable yet).
    fn admit(&mut self, from: UserId, client_msg_id: String, body_json: String, origin: Option<SessionId>) -> Admission {
        let conv = self.conv.clone();
        let state = match self.state() {
            Ok(state) => state,
            Err(err) => return Admission::Reply(Err(err)),
        };
        if !state.members.contains(&from) {
            return Admission::Reply(Err(EngineError::NotFound(format!("conversation {conv}"))));
        }

        // A retry of a message that is not durable yet waits for the collecting group, which
        // commits after the group that contains the original.
        if let Some(&(seq, ts_ms)) = state.uncommitted_ids.get(&client_msg_id) {
            return Admission::Wait(SendOutcome { seq, ts_ms, duplicate: true });
        }

        // A retry of a committed message returns the original seq and stores nothing.
        match self.store.seq_for_client_msg_id(&conv, &client_msg_id) {
            Ok(Some(seq)) => return Admission::Reply(self.original_outcome(seq)),
            Ok(None) => {}
            Err(err) => return Admission::Reply(Err(err.into())),
        }

        let state = self.state.as_mut().expect("state checked above");
        let seq = state.next_seq;
        state.next_seq += 1;
        let ts_ms = bulkhead_storage::now_ms();
        state.uncommitted_ids.insert(client_msg_id.clone(), (seq, ts_ms));

        let record = MessageRecord::new(seq, from.to_string(), client_msg_id, ts_ms, body_json);
        self.collecting.messages.push(Pending {
            record,
            origin,
            accepted_at: Instant::now(),
        });
        Admission::Wait(SendOutcome { seq, ts_ms, duplicate: false })
    }

    fn original_outcome(&self, seq: u64) -> Result<SendOutcome> {
        let (items, _) = self.store.messages(&self.conv, seq - 1, seq + 1, 1, false)?;
        let ts_ms = items.first().map(|m| m.ts_ms).unwrap_or_default();
        Ok(SendOutcome { seq, ts_ms, duplicate: true })
    }

    /// Starts committing the collected group unless a commit is already in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.collecting.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.collecting);
        self.in_flight = true;

        let mut batch = self.store.batch();
        for pending in &group.messages {
            batch.put_message(&self.conv, &pending.record);
        }
        for change in &group.changes {
            batch.replace_message(&self.conv, &change.record);
        }
        let store = self.store.clone();
        let commit = async move { store.commit(batch).await }.instrument(self.span());

        ctx.spawn(commit.into_actor(self).map(move |result, actor, ctx| {
            let cpu_start = thread_cpu_time();
            run_guarded(ACTOR, ctx, |ctx| actor.on_committed(group, result, ctx));
            actor.charge_cpu_since(cpu_start);
        }));
    }

    fn on_committed(&mut self, group: Group, result: Result<(), StorageError>, ctx: &mut Context<Self>) {
        self.in_flight = false;

        if let Err(err) = result {
            // The seqs of this group were not stored, and later sends already got the seqs after
            // them. Fail everything pending and restart, so the seqs are handed out again from
            // what RocksDB contains and no gap appears.
            tracing::error!(parent: &self.span(), error = %err, "commit failed; restarting the conversation");
            // Nothing of the group was stored, so a retry with the same client_msg_id is safe.
            for waiter in group.waiters {
                let _ = waiter.reply.send(Err(EngineError::ActorStopped(ACTOR)));
            }
            for change in group.changes {
                let _ = change.reply.send(Err(EngineError::ActorStopped(ACTOR)));
            }
            actix::ActorContext::stop(ctx);
            return;
        }

        fail::fail_point!("conversation-after-commit");

        if let Some(state) = self.state.as_mut() {
            for pending in &group.messages {
                state.uncommitted_ids.remove(&pending.record.client_msg_id);
            }
            for change in &group.changes {
                // A later change of the same message, still collecting, stays.
                if state.uncommitted_changes.get(&change.record.seq) == Some(&change.record) {
                    state.uncommitted_changes.remove(&change.record.seq);
                }
            }
        }
        for waiter in group.waiters {
            // The sender may have gone; the message is stored and will be synced.
            let _ = waiter.reply.send(Ok(waiter.outcome));
        }
        self.deliver(&group.messages);
        self.deliver_changes(group.changes);
        self.flush(ctx);
    }

    fn deliver(&self, messages: &[Pending]) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        for pending in messages {
            self.quota.metrics.message_in();
            let frame = events::message_frame(&self.conv, &pending.record);
            for member in &state.members {
                self.sessions
                    .push_to_user(member, &frame, pending.origin, Some(pending.accepted_at));
            }
        }
    }

    /// Replies to the edits and recalls of a committed group and sends their `edit` or `recall`
    /// events to every member's sessions, except the session that asked for the change.
    fn deliver_changes(&self, changes: Vec<PendingChange>) {
        for change in changes {
            let _ = change.reply.send(Ok(change.outcome));
            let frame = events::change_frame(&self.conv, &change.record);
            self.push_to_members(&frame, change.origin);
        }
    }

    /// Charges the CPU used since `start` to the tenant's CPU cap and to the fair scheduler.
    fn charge_cpu_since(&self, start: std::time::Duration) {
        let used = thread_cpu_time().saturating_sub(start);
        self.quota.charge_cpu(used);
        scheduler::charge(self.store.tenant(), used);
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.load();
    }
}

impl Supervised for ConversationActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(parent: &self.span(), "restarting conversation actor");
        metrics::counter!("bulkhead_actor_restarts_total", "actor" => ACTOR).increment(1);

        // Dropping the pending groups drops their reply senders: those senders get
        // `ActorStopped` and may retry with the same client_msg_id.
        self.collecting = Group::default();
        self.in_flight = false;
        self.state = None;
        self.load_error = None;
    }
}

/// A send on behalf of `from`. The reply comes once the message is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SendMessage {
    pub from: UserId,
    pub client_msg_id: String,
    pub body_json: String,
    /// The session the send came from; it gets the `ok` and not the `message` event.
    pub origin: Option<SessionId>,
    pub reply: oneshot::Sender<Result<SendOutcome>>,
}

impl Handler<SendMessage> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: SendMessage, ctx: &mut Context<Self>) {
        let cpu_start = thread_cpu_time();
        run_guarded(ACTOR, ctx, |ctx| {
            let SendMessage { from, client_msg_id, body_json, origin, reply } = msg;
            match self.admit(from, client_msg_id, body_json, origin) {
                Admission::Reply(result) => {
                    let _ = reply.send(result);
                }
                Admission::Wait(outcome) => {
                    self.collecting.waiters.push(Waiter { reply, outcome });
                    self.flush(ctx);
                }
            }
        });
        self.charge_cpu_since(cpu_start);
    }
}

/// Adds and removes members of a group conversation.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChangeMembers {
    pub add: Vec<UserId>,
    pub remove: Vec<UserId>,
    pub max_group_members: usize,
    pub reply: oneshot::Sender<Result<ConversationRecord>>,
}

impl Handler<ChangeMembers> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: ChangeMembers, ctx: &mut Context<Self>) {
        run_guarded(ACTOR, ctx, |ctx| {
            let ChangeMembers { add, remove, max_group_members, reply } = msg;
            match self.plan_member_change(&add, &remove, max_group_members) {
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
                Ok(record) => self.commit_member_change(record, add, remove, reply, ctx),
            }
        });
    }
}

impl ConversationActor {
    fn plan_member_change(
        &mut self,
        add: &[UserId],
        remove: &[UserId],
        max_group_members: usize,
    ) -> Result<ConversationRecord> {
        for user in add {
            if self.store.user(user)?.is_none() {
                return Err(EngineError::NotFound(format!("user {user}")));
            }
        }
        let conv = self.conv.clone();
        let state = self.state()?;
        if state.record.kind == bulkhead_storage::ConversationKind::Direct {
            return Err(EngineError::InvalidRequest(format!(
                "conversation {conv} is direct; direct conversations keep their two members"
            )));
        }

        let mut record = state.record.clone();
        record.members.retain(|m| !remove.iter().any(|r| r.as_str() == m));
        for user in add {
            if !record.members.iter().any(|m| m == user.as_str()) {
                record.members.push(user.to_string());
            }
        }
        record.members.sort();
        if record.members.len() > max_group_members {
            return Err(EngineError::InvalidRequest(format!(
                "a group conversation has at most {max_group_members} members"
            )));
        }
        Ok(record)
    }

    fn commit_member_change(
        &mut self,
        record: ConversationRecord,
        add: Vec<UserId>,
        remove: Vec<UserId>,
        reply: oneshot::Sender<Result<ConversationRecord>>,
        ctx: &mut Context<Self>,
    ) {
        let mut batch = self.store.batch();
        batch.put_conversation(&record);
        for user in &add {
            batch.put_membership(user.as_str(), self.conv.as_str());
        }
        for user in &remove {
            batch.delete_membership(user.as_str(), self.conv.as_str());
        }
        let store = self.store.clone();
        let commit = async move { store.commit(batch).await };

        ctx.spawn(commit.into_actor(self).map(move |result, actor, _ctx| match result {
            Ok(()) => {
                if let Some(state) = actor.state.as_mut() {
                    state.members = record.members.iter().filter_map(|m| UserId::parse(m).ok()).collect();
                    state.record = record.clone();
                }
                let _ = reply.send(Ok(record));
            }
            Err(err) => {
                let _ = reply.send(Err(err.into()));
            }
        }));
    }
}

/// Stores a member's read marker and sends a `receipt` event to the members' sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MarkRead {
    pub user: UserId,
    pub seq: u64,
    pub notify: bool,
    pub origin: Option<SessionId>,
    pub reply: oneshot::Sender<Result<()>>,
}

impl Handler<MarkRead> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: MarkRead, ctx: &mut Context<Self>) {
        run_guarded(ACTOR, ctx, |ctx| {
            let conv = self.conv.clone();
            let state = match self.state() {
                Ok(state) => state,
                Err(err) => {
                    let _ = msg.reply.send(Err(err));
                    return;
                }
            };
            if !state.members.contains(&msg.user) {
                let _ = msg.reply.send(Err(EngineError::NotFound(format!("conversation {conv}"))));
                return;
            }
            let last_assigned = state.next_seq - 1;
            if msg.seq > last_assigned {
                let _ = msg.reply.send(Err(EngineError::InvalidRequest(format!(
                    "seq {} is past the last message {last_assigned} of conversation {conv}",
                    msg.seq
                ))));
                return;
            }

            let mut batch = self.store.batch();
            batch.put_read_marker(&conv, &msg.user, msg.seq);
            let store = self.store.clone();
            let commit = async move { store.commit(batch).await };
            ctx.spawn(commit.into_actor(self).map(move |result, actor, _ctx| {
                // Receipts are optional events, shed first when the tenant is over quota.
                if result.is_ok() && msg.notify && !actor.quota.shedding() {
                    let frame = events::receipt_frame(&actor.conv, &msg.user, msg.seq);
                    actor.push_to_members(&frame, msg.origin);
                }
                let _ = msg.reply.send(result.map_err(Into::into));
            }));
        });
    }
}

/// Tells the other members that `user` is typing. Nothing is stored.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Typing {
    pub user: UserId,
    pub reply: oneshot::Sender<Result<()>>,
}

impl Handler<Typing> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Typing, ctx: &mut Context<Self>) {
        run_guarded(ACTOR, ctx, |_ctx| {
            let conv = self.conv.clone();
            let result = self.state().and_then(|state| {
                if state.members.contains(&msg.user) {
                    Ok(())
                } else {
                    Err(EngineError::NotFound(format!("conversation {conv}")))
                }
            });
            // Typing events are never stored and are the first thing shed under pressure.
            if result.is_ok() && !self.quota.shedding() {
                let frame = events::typing_frame(&self.conv, &msg.user);
                if let Some(state) = self.state.as_ref() {
                    for member in state.members.iter().filter(|m| **m != msg.user) {
                        self.sessions.push_to_user(member, &frame, None, None);
                    }
                }
            }
            let _ = msg.reply.send(result);
        });
    }
}

impl ConversationActor {
    fn push_to_members(&self, frame: &Arc<str>, skip: Option<SessionId>) {
        if let Some(state) = self.state.as_ref() {
            for member in &state.members {
                self.sessions.push_to_user(member, frame, skip, None);
            }
        }
    }
}

/// An edit or a recall of message `seq` on behalf of `user`. The reply comes once the change
/// is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AmendMessage {
    pub user: UserId,
    pub seq: u64,
    pub amendment: Amendment,
    /// The session the change came from; it gets the `ok` and not the event.
    pub origin: Option<SessionId>,
    pub reply: oneshot::Sender<Result<AmendOutcome>>,
}

impl Handler<AmendMessage> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: AmendMessage, ctx: &mut Context<Self>) {
        let cpu_start = thread_cpu_time();
        run_guarded(ACTOR, ctx, |ctx| {
            let AmendMessage { user, seq, amendment, origin, reply } = msg;
            match self.plan_change(&user, seq, amendment) {
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
                // A recall of a message that is already recalled changes nothing.
                Ok(None) => {
                    let outcome = self.recalled_outcome(seq);
                    let _ = reply.send(outcome);
                }
                Ok(Some(record)) => {
                    let outcome = AmendOutcome {
                        seq,
                        ts_ms: record.edited_ts_ms.max(record.recalled_ts_ms).unwrap_or_default(),
                    };
                    if let Some(state) = self.state.as_mut() {
                        state.uncommitted_changes.insert(seq, record.clone());
                    }
                    self.collecting.changes.push(PendingChange { record, origin, reply, outcome });
                    self.flush(ctx);
                }
            }
        });
        self.charge_cpu_since(cpu_start);
    }
}

impl ConversationActor {
    /// Builds the changed record, or `None` when the change is a recall of a message that is
    /// already recalled. Only the message's sender may change it, and only while a member.
    fn plan_change(&mut self, user: &UserId, seq: u64, amendment: Amendment) -> Result<Option<MessageRecord>> {
        let conv = self.conv.clone();
        let state = self.state()?;
        if !state.members.contains(user) {
            return Err(EngineError::NotFound(format!("conversation {conv}")));
        }
        let pending = state.uncommitted_changes.get(&seq).cloned();
        let current = match pending {
            Some(record) => record,
            None => self
                .store
                .message(&conv, seq)?
                .ok_or_else(|| EngineError::NotFound(format!("message {seq} of conversation {conv}")))?,
        };

        let verb = match amendment {
            Amendment::Edit { .. } => "edit",
            Amendment::Recall => "recall",
        };
        if current.from != user.as_str() {
            return Err(EngineError::Forbidden(format!(
                "only the sender {} may {verb} message {seq} of conversation {conv}",
                current.from
            )));
        }

        let mut record = current;
        let now_ms = bulkhead_storage::now_ms();
        match amendment {
            Amendment::Edit { body_json } => {
                if record.recalled_ts_ms.is_some() {
                    return Err(EngineError::InvalidRequest(format!(
                        "message {seq} of conversation {conv} was recalled and cannot be edited"
                    )));
                }
                record.body_json = body_json;
                record.edited_ts_ms = Some(now_ms);
            }
            Amendment::Recall => {
                if record.recalled_ts_ms.is_some() {
                    return Ok(None);
                }
                record.body_json = "null".into();
                record.recalled_ts_ms = Some(now_ms);
            }
        }
        Ok(Some(record))
    }

    /// Returns the outcome of recalling a message that is already recalled: the time of the
    /// first recall, which may still be committing.
    fn recalled_outcome(&mut self, seq: u64) -> Result<AmendOutcome> {
        let conv = self.conv.clone();
        let pending = self.state()?.uncommitted_changes.get(&seq).cloned();
        let record = match pending {
            Some(record) => Some(record),
            None => self.store.message(&conv, seq)?,
        };
        let ts_ms = record.and_then(|r| r.recalled_ts_ms).unwrap_or_default();
        Ok(AmendOutcome { seq, ts_ms })
    }
}
