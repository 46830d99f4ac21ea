//! One tenant's supervisor tree and the handle through which the rest of the server reaches it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
};

use actix::{
    Actor, ActorFutureExt, Addr, Context, Handler, Message, ResponseActFuture,
    Supervised, Supervisor, WrapFuture,
};
use actix_rt::ArbiterHandle;
use bulkhead_storage::{
    ConvId, ConversationKind, ConversationRecord, MessageRecord, TenantRecord, TenantStatus,
    TenantStore, UserId, UserRecord,
};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use crate::{
    conversation::{ChangeMembers, ConversationActor, MarkRead, SendMessage, Typing},
    error::{EngineError, Result},
    sessions::{CloseReason, Outbound, SessionGuard, SessionId, SessionRegistry},
    EngineConfig,
};

type ConversationMap = Arc<RwLock<HashMap<ConvId, Addr<ConversationActor>>>>;

/// A send in the engine's terms: an authenticated member, a conversation and a JSON body.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub from: UserId,
    pub conv: ConvId,
    pub client_msg_id: String,
    pub body_json: String,
    /// The session the send came from, which gets the `ok` instead of the `message` event.
    pub origin: Option<SessionId>,
}

/// The result of an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    pub seq: u64,
    pub ts_ms: u64,
    /// True when `client_msg_id` was seen before and `seq` is the original one.
    pub duplicate: bool,
}

/// The root of a tenant's supervisor tree. It starts the tenant's conversation actors (each
/// under its own actix `Supervisor`, on a worker arbiter) and is the one place that creates
/// conversations, so two creations of the same id cannot both succeed.
pub(crate) struct TenantActor {
    store: TenantStore,
    sessions: Arc<SessionRegistry>,
    conversations: ConversationMap,
    workers: Arc<[ArbiterHandle]>,
    /// Conversation ids whose creation is being committed.
    creating: HashSet<ConvId>,
}

impl Actor for TenantActor {
    type Context = Context<Self>;
}

impl Supervised for TenantActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(tenant = %self.store.tenant(), "restarting tenant supervisor");
        metrics::counter!("bulkhead_actor_restarts_total", "actor" => "tenant").increment(1);
        self.creating.clear();
    }
}

impl TenantActor {
    fn start_conversation(&self, conv: &ConvId) -> Addr<ConversationActor> {
        if let Some(addr) = self.conversations.read().get(conv) {
            return addr.clone();
        }
        let worker = &self.workers[worker_index(self.store.tenant().as_str(), conv.as_str(), self.workers.len())];
        let (store, id, sessions) = (self.store.clone(), conv.clone(), self.sessions.clone());
        let addr = Supervisor::start_in_arbiter(worker, move |_| ConversationActor::new(store, id, sessions));
        self.conversations.write().insert(conv.clone(), addr.clone());
        addr
    }
}

fn worker_index(tenant: &str, conv: &str, workers: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tenant.hash(&mut hasher);
    conv.hash(&mut hasher);
    (hasher.finish() % workers as u64) as usize
}

/// Returns the conversation's actor, starting it if needed; `NotFound` if the conversation
/// does not exist.
#[derive(Message)]
#[rtype(result = "Result<Addr<ConversationActor>>")]
pub(crate) struct GetConversation(pub ConvId);

impl Handler<GetConversation> for TenantActor {
    type Result = Result<Addr<ConversationActor>>;

    fn handle(&mut self, msg: GetConversation, _ctx: &mut Context<Self>) -> Self::Result {
        if self.store.conversation(&msg.0)?.is_none() {
            return Err(EngineError::NotFound(format!("conversation {}", msg.0)));
        }
        Ok(self.start_conversation(&msg.0))
    }
}

#[derive(Message)]
#[rtype(result = "Result<ConversationRecord>")]
pub(crate) struct CreateConversation(pub ConversationRecord);

impl Handler<CreateConversation> for TenantActor {
    type Result = ResponseActFuture<Self, Result<ConversationRecord>>;

    fn handle(&mut self, msg: CreateConversation, _ctx: &mut Context<Self>) -> Self::Result {
        let record = msg.0;
        let id = match ConvId::parse(&record.id) {
            Ok(id) => id,
            Err(err) => return Box::pin(actix::fut::ready(Err(EngineError::InvalidRequest(err.to_string())))),
        };
        let exists = match self.store.conversation(&id) {
            Ok(found) => found.is_some() || self.creating.contains(&id),
            Err(err) => return Box::pin(actix::fut::ready(Err(err.into()))),
        };
        if exists {
            return Box::pin(actix::fut::ready(Err(EngineError::Conflict(format!("conversation {id}")))));
        }
        self.creating.insert(id.clone());

        let mut batch = self.store.batch();
        batch.put_conversation(&record);
        for member in &record.members {
            batch.put_membership(member, &record.id);
        }
        let store = self.store.clone();
        Box::pin(
            async move { store.commit(batch).await }
                .into_actor(self)
                .map(move |result, actor, _ctx| {
                    actor.creating.remove(&id);
                    result?;
                    Ok(record)
                }),
        )
    }
}

/// Handle to a live tenant: its store, its record, its supervisor and its sessions. Cloning
/// is cheap. Every operation the gateway performs on a tenant goes through this type.
#[derive(Clone)]
pub struct TenantHandle {
    inner: Arc<TenantInner>,
}

struct TenantInner {
    store: TenantStore,
    record: RwLock<TenantRecord>,
    supervisor: Addr<TenantActor>,
    sessions: Arc<SessionRegistry>,
    conversations: ConversationMap,
    config: EngineConfig,
}

impl TenantHandle {
    pub(crate) fn start(
        store: TenantStore,
        record: TenantRecord,
        workers: Arc<[ArbiterHandle]>,
        config: EngineConfig,
    ) -> Self {
        let sessions = SessionRegistry::new(record.id.clone());
        let conversations: ConversationMap = Arc::default();
        let worker = &workers[worker_index(record.id.as_str(), "", workers.len())];

        let actor_parts = (store.clone(), sessions.clone(), conversations.clone(), workers.clone());
        let supervisor = Supervisor::start_in_arbiter(worker, move |_| {
            let (store, sessions, conversations, workers) = actor_parts;
            TenantActor {
                store,
                sessions,
                conversations,
                workers,
                creating: HashSet::new(),
            }
        });

        TenantHandle {
            inner: Arc::new(TenantInner {
                store,
                record: RwLock::new(record),
                supervisor,
                sessions,
                conversations,
                config,
            }),
        }
    }

    pub fn store(&self) -> &TenantStore {
        &self.inner.store
    }

    pub fn record(&self) -> TenantRecord {
        self.inner.record.read().clone()
    }

    pub(crate) fn set_record(&self, record: TenantRecord) {
        let suspended = record.status == TenantStatus::Suspended;
        *self.inner.record.write() = record;
        if suspended {
            self.inner.sessions.close_all(CloseReason::TenantSuspended);
        }
    }

    /// Fails with `TenantSuspended` unless the tenant is active.
    pub fn ensure_active(&self) -> Result<()> {
        let record = self.inner.record.read();
        match record.status {
            TenantStatus::Active => Ok(()),
            TenantStatus::Suspended => Err(EngineError::TenantSuspended(record.id.to_string())),
        }
    }

    pub fn has_feature(&self, feature: &str) -> bool {
        self.inner.record.read().features.iter().any(|f| f == feature)
    }

    // ---- sessions ----

    pub fn register_session(&self, user: UserId) -> (SessionGuard, mpsc::UnboundedReceiver<Outbound>) {
        self.inner.sessions.register(user)
    }

    pub fn connection_count(&self) -> usize {
        self.inner.sessions.connection_count()
    }

    pub(crate) fn close_sessions(&self, reason: CloseReason) {
        self.inner.sessions.close_all(reason);
    }

    /// Drops the addresses of the tenant's actors. With no address left, actix stops them
    /// once their mailboxes are empty.
    pub(crate) fn release_actors(&self) {
        self.inner.conversations.write().clear();
    }

    // ---- users ----

    pub async fn create_user(&self, id: UserId, display_name: Option<String>) -> Result<UserRecord> {
        // NOTE: two concurrent creations of the same user id both succeed and the later one
        // wins; the records are equal apart from the display name and creation time.
        if self.store().user(&id)?.is_some() {
            return Err(EngineError::Conflict(format!("user {id}")));
        }
        let record = UserRecord {
            id: id.to_string(),
            display_name,
            created_at_ms: bulkhead_storage::now_ms(),
        };
        let mut batch = self.store().batch();
        batch.put_user(&record);
        self.store().commit(batch).await?;
        Ok(record)
    }

    /// Deletes the user: removes it from its group conversations, deletes its record and closes
    /// its sessions. Direct conversations keep it as a member, so the other party keeps the
    /// history; without a user record it cannot log in again.
    pub async fn delete_user(&self, id: &UserId) -> Result<()> {
        if self.store().user(id)?.is_none() {
            return Err(EngineError::NotFound(format!("user {id}")));
        }
        for conv in self.store().conversations_of(id)? {
            let Some(record) = self.store().conversation(&conv)? else {
                continue;
            };
            if record.kind == ConversationKind::Group {
                self.remove_member(&conv, id.clone()).await?;
            }
        }
        let mut batch = self.store().batch();
        batch.delete_user(id);
        self.store().commit(batch).await?;
        self.inner.sessions.close_user(id, CloseReason::UserDeleted);
        Ok(())
    }

    // ---- conversations ----

    pub async fn create_conversation(
        &self,
        id: ConvId,
        kind: ConversationKind,
        name: Option<String>,
        members: Vec<UserId>,
    ) -> Result<ConversationRecord> {
        let mut member_ids: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        member_ids.sort();
        member_ids.dedup();
        match kind {
            ConversationKind::Direct if member_ids.len() != 2 => {
                return Err(EngineError::InvalidRequest(
                    "a direct conversation has exactly two distinct members".into(),
                ))
            }
            ConversationKind::Group if member_ids.is_empty() => {
                return Err(EngineError::InvalidRequest("a group conversation needs at least one member".into()))
            }
            ConversationKind::Group if member_ids.len() > self.inner.config.max_group_members => {
                return Err(EngineError::InvalidRequest(format!(
                    "a group conversation has at most {} members",
                    self.inner.config.max_group_members
                )))
            }
            _ => {}
        }
        for member in &members {
            if self.store().user(member)?.is_none() {
                return Err(EngineError::NotFound(format!("user {member}")));
            }
        }

        let record = ConversationRecord {
            id: id.to_string(),
            kind,
            name,
            members: member_ids,
            created_at_ms: bulkhead_storage::now_ms(),
        };
        self.inner
            .supervisor
            .send(CreateConversation(record))
            .await
            .map_err(|_| EngineError::ActorStopped("tenant"))?
    }

    async fn conversation_actor(&self, conv: &ConvId) -> Result<Addr<ConversationActor>> {
        if let Some(addr) = self.inner.conversations.read().get(conv) {
            return Ok(addr.clone());
        }
        self.inner
            .supervisor
            .send(GetConversation(conv.clone()))
            .await
            .map_err(|_| EngineError::ActorStopped("tenant"))?
    }

    pub async fn add_member(&self, conv: &ConvId, user: UserId) -> Result<ConversationRecord> {
        self.change_members(conv, vec![user], Vec::new()).await
    }

    pub async fn remove_member(&self, conv: &ConvId, user: UserId) -> Result<ConversationRecord> {
        self.change_members(conv, Vec::new(), vec![user]).await
    }

    async fn change_members(&self, conv: &ConvId, add: Vec<UserId>, remove: Vec<UserId>) -> Result<ConversationRecord> {
        let actor = self.conversation_actor(conv).await?;
        let (reply, result) = oneshot::channel();
        actor.do_send(ChangeMembers {
            add,
            remove,
            max_group_members: self.inner.config.max_group_members,
            reply,
        });
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    // ---- messages ----

    /// Sends a message; returns once it is durable.
    pub async fn send(&self, request: SendRequest) -> Result<SendOutcome> {
        self.ensure_active()?;
        let actor = self.conversation_actor(&request.conv).await?;
        let (reply, result) = oneshot::channel();
        // TODO: enqueue through the tenant's quota mailbox instead of `do_send`, which ignores
        // mailbox capacity.
        actor.do_send(SendMessage {
            from: request.from,
            client_msg_id: request.client_msg_id,
            body_json: request.body_json,
            origin: request.origin,
            reply,
        });
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    /// Reads a page of history. With `member`, the conversation must have that member (a user's
    /// request); without, the caller is the tenant's backend. `before` wins over `after`.
    pub fn history(
        &self,
        member: Option<&UserId>,
        conv: &ConvId,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, bool)> {
        self.check_member(member, conv)?;
        let result = match (before, after) {
            (Some(before), _) => self.store().messages(conv, 0, before, limit, true)?,
            (None, Some(after)) => self.store().messages(conv, after, u64::MAX, limit, false)?,
            (None, None) => self.store().messages(conv, 0, u64::MAX, limit, true)?,
        };
        Ok(result)
    }

    /// Messages after `since[conv]` (0 when absent) in every conversation `user` is a member
    /// of, at most `limit` per conversation. Conversations with nothing new are left out.
    pub fn sync(
        &self,
        user: &UserId,
        since: &BTreeMap<String, u64>,
        limit: usize,
    ) -> Result<Vec<(ConvId, Vec<MessageRecord>, bool)>> {
        let mut pages = Vec::new();
        for conv in self.store().conversations_of(user)? {
            let after = since.get(conv.as_str()).copied().unwrap_or(0);
            let (items, more) = self.store().messages(&conv, after, u64::MAX, limit, false)?;
            if !items.is_empty() {
                pages.push((conv, items, more));
            }
        }
        Ok(pages)
    }

    pub async fn mark_read(&self, user: UserId, conv: &ConvId, seq: u64, origin: Option<SessionId>) -> Result<()> {
        let actor = self.conversation_actor(conv).await?;
        let (reply, result) = oneshot::channel();
        actor.do_send(MarkRead {
            user,
            seq,
            notify: self.has_feature("read_receipts"),
            origin,
            reply,
        });
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    pub async fn typing(&self, user: UserId, conv: &ConvId) -> Result<()> {
        let actor = self.conversation_actor(conv).await?;
        let (reply, result) = oneshot::channel();
        actor.do_send(Typing { user, reply });
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    fn check_member(&self, member: Option<&UserId>, conv: &ConvId) -> Result<()> {
        let record = self
            .store()
            .conversation(conv)?
            .ok_or_else(|| EngineError::NotFound(format!("conversation {conv}")))?;
        if let Some(user) = member {
            if !record.members.iter().any(|m| m == user.as_str()) {
                return Err(EngineError::NotFound(format!("conversation {conv}")));
            }
        }
        Ok(())
    }
}
