//! One tenant's supervisor tree and the handle through which the rest of the server reaches it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::{
    Actor, ActorFutureExt, Addr, Context, Handler, Message, ResponseActFuture,
    Supervised, Supervisor, WrapFuture,
};
use actix_rt::ArbiterHandle;
use bulkhead_storage::{
    BrandingRecord, ConvId, ConversationKind, ConversationRecord, MessageRecord, TenantRecord, TenantStatus,
    TenantStore, UserId, UserRecord,
};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use crate::{
    conversation::{AmendMessage, ChangeMembers, ConversationActor, MarkRead, SendMessage, Typing},
    error::{EngineError, Result},
    metrics::TenantSnapshot,
    quota::{Clock, QuotaExceeded, Resource, TenantQuota},
    scheduler::{Job, SchedulerHandle},
    sessions::{CloseReason, Outbound, SessionGuard, SessionId, SessionRegistry},
    EngineConfig, Feature,
};

/// Bytes a send occupies in the backlog on top of its body and `client_msg_id`: the
/// request's fields, the reply channel and the actor message. An estimate, used only for the
/// memory quota.
const SEND_OVERHEAD_BYTES: u64 = 256;

/// How often the tenant's storage size is re-read for the storage quota. RocksDB's estimate
/// is cheap but not free, and it moves slowly.
const STORAGE_SIZE_REFRESH: Duration = Duration::from_secs(1);

/// When a tenant over its storage quota may retry: the size is re-read every
/// `STORAGE_SIZE_REFRESH`, and only deleting data lowers it.
const STORAGE_RETRY_AFTER: Duration = Duration::from_secs(60);

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

/// A change to a stored message by its sender.
#[derive(Debug, Clone)]
pub enum Amendment {
    /// Replaces the body; the message gets the `edited` marker.
    Edit { body_json: String },
    /// Removes the body from storage; the message gets the `recalled` marker.
    Recall,
}

/// The result of an accepted edit or recall: the message's unchanged `seq` and the time of
/// the change, in ms since the Unix epoch. A repeated recall returns the first one's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmendOutcome {
    pub seq: u64,
    pub ts_ms: u64,
}

/// The root of a tenant's supervisor tree. It starts the tenant's conversation actors (each
/// under its own actix `Supervisor`, on a worker arbiter) and is the one place that creates
/// conversations, so two creations of the same id cannot both succeed.
pub(crate) struct TenantActor {
    store: TenantStore,
    quota: Arc<TenantQuota>,
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
        let (store, id, sessions, quota) = (self.store.clone(), conv.clone(), self.sessions.clone(), self.quota.clone());
        let addr = Supervisor::start_in_arbiter(worker, move |_| ConversationActor::new(store, id, sessions, quota));
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
    quota: Arc<TenantQuota>,
    supervisor: Addr<TenantActor>,
    sessions: Arc<SessionRegistry>,
    conversations: ConversationMap,
    schedulers: Arc<[SchedulerHandle]>,
    config: EngineConfig,
    /// Last storage size estimate, and when it was read (clock time in nanoseconds).
    storage_bytes: AtomicU64,
    storage_read_at_nanos: AtomicU64,
}

impl TenantHandle {
    pub(crate) fn start(
        store: TenantStore,
        record: TenantRecord,
        workers: Arc<[ArbiterHandle]>,
        schedulers: Arc<[SchedulerHandle]>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        let quota = Arc::new(TenantQuota::new(record.quotas.clone(), clock));
        let sessions = SessionRegistry::new(quota.clone(), config.max_session_pending_bytes);
        let conversations: ConversationMap = Arc::default();
        let worker = &workers[worker_index(record.id.as_str(), "", workers.len())];

        let actor_parts = (store.clone(), quota.clone(), sessions.clone(), conversations.clone(), workers.clone());
        let supervisor = Supervisor::start_in_arbiter(worker, move |_| {
            let (store, quota, sessions, conversations, workers) = actor_parts;
            TenantActor {
                store,
                quota,
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
                quota,
                supervisor,
                sessions,
                conversations,
                schedulers,
                config,
                storage_bytes: AtomicU64::new(0),
                storage_read_at_nanos: AtomicU64::new(u64::MAX),
            }),
        }
    }

    pub fn store(&self) -> &TenantStore {
        &self.inner.store
    }

    pub fn record(&self) -> TenantRecord {
        self.inner.record.read().clone()
    }

    pub fn quota(&self) -> &Arc<TenantQuota> {
        &self.inner.quota
    }

    pub(crate) fn set_record(&self, record: TenantRecord) {
        let suspended = record.status == TenantStatus::Suspended;
        self.inner.quota.set_limits(record.quotas.clone());
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

    pub fn has_feature(&self, feature: Feature) -> bool {
        self.inner.record.read().features.iter().any(|f| f == feature.as_str())
    }

    /// Fails with `FeatureDisabled` unless the tenant's plan includes `feature`.
    pub fn require_feature(&self, feature: Feature) -> Result<()> {
        if self.has_feature(feature) {
            Ok(())
        } else {
            Err(EngineError::FeatureDisabled(feature))
        }
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
        // NOTE: two concurrent creations of the same user id both succeed, and the later one
        // wins. The records differ only in display name and creation time.
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

    /// Stores the tenant's branding, replacing the previous one.
    pub async fn put_branding(&self, branding: &BrandingRecord) -> Result<()> {
        let mut batch = self.store().batch();
        batch.put_branding(branding);
        self.store().commit(batch).await?;
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

    /// Sends a message; returns once it is durable. The send is admitted against the
    /// tenant's storage and memory quotas, then queued in the fair scheduler of the worker
    /// that runs the conversation.
    pub async fn send(&self, request: SendRequest) -> Result<SendOutcome> {
        self.ensure_active()?;
        self.check_storage()?;
        let bytes = request.body_json.len() as u64 + request.client_msg_id.len() as u64 + SEND_OVERHEAD_BYTES;
        self.inner.quota.reserve_send(bytes).map_err(EngineError::QuotaExceeded)?;
        let _reservation = SendReservation {
            quota: &self.inner.quota,
            bytes,
        };

        let (reply, result) = oneshot::channel();
        let conv = request.conv.clone();
        let message = SendMessage {
            from: request.from,
            client_msg_id: request.client_msg_id,
            body_json: request.body_json,
            origin: request.origin,
            reply,
        };
        self.schedule(&conv, message).await?;
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    /// Edits or recalls message `seq` of `conv` on behalf of its sender `user`; returns once
    /// the change is durable. Like a send, the change is admitted against the tenant's
    /// quotas and queued in the fair scheduler. Needs the `edit_recall` feature.
    pub async fn amend(
        &self,
        user: UserId,
        conv: &ConvId,
        seq: u64,
        amendment: Amendment,
        origin: Option<SessionId>,
    ) -> Result<AmendOutcome> {
        self.ensure_active()?;
        self.require_feature(Feature::EditRecall)?;
        let body_bytes = match &amendment {
            // A recall only shrinks the tenant's data, so it passes a full storage quota.
            Amendment::Recall => 0,
            Amendment::Edit { body_json } => {
                self.check_storage()?;
                body_json.len() as u64
            }
        };
        let bytes = body_bytes + SEND_OVERHEAD_BYTES;
        self.inner.quota.reserve_send(bytes).map_err(EngineError::QuotaExceeded)?;
        let _reservation = SendReservation {
            quota: &self.inner.quota,
            bytes,
        };

        let (reply, result) = oneshot::channel();
        let message = AmendMessage {
            user,
            seq,
            amendment,
            origin,
            reply,
        };
        self.schedule(conv, message).await?;
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    /// Queues `message` for the conversation's actor in the fair scheduler of the worker
    /// that runs the conversation.
    async fn schedule<M>(&self, conv: &ConvId, message: M) -> Result<()>
    where
        M: Message<Result = ()> + Send + 'static,
        ConversationActor: Handler<M>,
    {
        let actor = self.conversation_actor(conv).await?;
        let index = worker_index(self.store().tenant().as_str(), conv.as_str(), self.inner.schedulers.len());
        let job = Job {
            tenant: self.store().tenant().clone(),
            quota: self.inner.quota.clone(),
            run: Box::new(move || actor.do_send(message)),
        };
        if !self.inner.schedulers[index].submit(job) {
            return Err(EngineError::ShuttingDown);
        }
        Ok(())
    }

    /// Rejects sends while the tenant's data is larger than `max_storage_bytes`.
    fn check_storage(&self) -> Result<()> {
        let limit = self.inner.record.read().quotas.max_storage_bytes;
        if self.storage_bytes() <= limit {
            return Ok(());
        }
        self.inner.quota.metrics.rejected(Resource::Storage);
        Err(EngineError::QuotaExceeded(QuotaExceeded {
            resource: Resource::Storage,
            retry_after: STORAGE_RETRY_AFTER,
        }))
    }

    /// Returns the tenant's storage size estimate, re-read at most every `STORAGE_SIZE_REFRESH`.
    pub fn storage_bytes(&self) -> u64 {
        let now = self.inner.quota.now().as_nanos() as u64;
        let read_at = self.inner.storage_read_at_nanos.load(Ordering::Relaxed);
        let stale = read_at == u64::MAX || now.saturating_sub(read_at) >= STORAGE_SIZE_REFRESH.as_nanos() as u64;
        if stale {
            match self.store().approximate_size_bytes() {
                Ok(bytes) => self.inner.storage_bytes.store(bytes, Ordering::Relaxed),
                Err(err) => tracing::warn!(tenant = %self.store().tenant(), error = %err, "failed to read the storage size"),
            }
            self.inner.storage_read_at_nanos.store(now, Ordering::Relaxed);
        }
        self.inner.storage_bytes.load(Ordering::Relaxed)
    }

    /// Returns every quota as `(resource, limit, usage)` in base units: cores, bytes, bytes per
    /// second, connections, requests per second.
    pub fn quota_usage(&self) -> Vec<(Resource, f64, f64)> {
        let quota = &self.inner.quota;
        let limits = quota.limits();
        let now = quota.now();
        vec![
            (Resource::Cpu, limits.cpu_millicores as f64 / 1000.0, quota.cpu_usage_cores()),
            (Resource::Memory, limits.memory_bytes as f64, quota.memory_used() as f64),
            (Resource::IngressBandwidth, limits.ingress_bytes_per_sec as f64, quota.metrics.ingress_rate(now) as f64),
            (Resource::EgressBandwidth, limits.egress_bytes_per_sec as f64, quota.metrics.egress_rate(now) as f64),
            (Resource::Connections, limits.max_connections as f64, self.connection_count() as f64),
            (Resource::Storage, limits.max_storage_bytes as f64, self.storage_bytes() as f64),
            (Resource::RestRequests, limits.rest_requests_per_sec as f64, quota.metrics.rest_request_rate(now) as f64),
        ]
    }

    pub(crate) fn metrics_snapshot<'a>(&'a self, tenant: &'a str) -> TenantSnapshot<'a> {
        TenantSnapshot {
            tenant,
            metrics: &self.inner.quota.metrics,
            quotas: self.quota_usage(),
            backlog_bytes: self.inner.quota.memory_used(),
            backlog_messages: self.inner.quota.backlog_messages(),
            connections: self.connection_count() as u64,
        }
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
        self.require_feature(Feature::History)?;
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
            notify: self.has_feature(Feature::ReadReceipts),
            origin,
            reply,
        });
        result.await.map_err(|_| EngineError::ActorStopped("conversation"))?
    }

    pub async fn typing(&self, user: UserId, conv: &ConvId) -> Result<()> {
        self.require_feature(Feature::Typing)?;
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

/// Returns a send's memory reservation when the send is answered or abandoned.
struct SendReservation<'a> {
    quota: &'a TenantQuota,
    bytes: u64,
}

impl Drop for SendReservation<'_> {
    fn drop(&mut self) {
        self.quota.release_send(self.bytes);
    }
}
