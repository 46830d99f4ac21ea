//! `POST /v1/tenants/{tid}/export`: the tenant's users, conversations, messages and read
//! markers as a chunked NDJSON stream, plain or masked.
//!
//! The store is read on a blocking thread, page by page, and the encoded chunks go to the
//! response through a channel of [`CHANNEL_CHUNKS`] chunks. When the client reads slowly,
//! the channel fills and the reading thread waits, so memory stays bounded.

use actix_web::{post, web, HttpRequest, HttpResponse};
use bulkhead_engine::Feature;
use bulkhead_proto::export::{ExportRequest, CONFIRM_EXPORT_HEADER, CONTENT_TYPE};
use bulkhead_storage::{now_ms, TenantStore, MASKING_KEY_BYTES};
use rand::RngCore;
use tokio::sync::mpsc;

use super::require_confirmation;
use crate::{
    audit::{AuditAction, AuditLogs, AuditRecord},
    auth::Action,
    error::ApiError,
    export::{
        mask::Masker,
        writer::{write_export, ExportError},
    },
    state::AppState,
};

/// Chunks (of about 64 KiB each) that may wait between the reading thread and the socket.
/// A few keep the socket busy while the next page is read; the value may change.
const CHANNEL_CHUNKS: usize = 8;

/// Serializes the creation of masking keys, so that two first masked exports of one tenant
/// cannot store different keys. Only this process writes the database.
static MASKING_KEY_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A chunk of the stream, or the error that ends it. `std::io::Error` because the error
/// crosses from the reading thread, and `actix_web::Error` is not `Send`.
type Chunk = Result<web::Bytes, std::io::Error>;

#[post("/{tid}/export")]
pub(super) async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let tid = path.into_inner();
    let caller = state.caller(&req)?;
    let mut mask = None;
    let result: Result<(TenantStore, Option<Masker>), ApiError> = async {
        let ctx = state.scope(&caller, &tid, Action::ExportTenant)?;
        ctx.tenant.require_feature(Feature::Export)?;
        let request = parse_request(&body)?;
        mask = Some(request.mask);
        require_confirmation(&req, "exporting a tenant", CONFIRM_EXPORT_HEADER, &tid)?;

        let store = ctx.tenant.store().clone();
        let masker = if request.mask { Some(masker(&store).await?) } else { None };
        Ok((store, masker))
    }
    .await;

    // The entry is durable before the first byte of the export leaves, and an export whose
    // entry cannot be written does not start.
    let record = AuditRecord {
        logs: AuditLogs::Tenant(&tid),
        action: AuditAction::ExportTenant,
        object: &tid,
        detail: mask.map(|mask| format!("mask={mask}")),
    };
    let audited = state.audit_or_fail(&caller, record, &result).await;
    let (store, masker) = result?;
    audited?;

    let (chunks, receiver) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    let span = tracing::info_span!("export", tenant = %tid, masked = masker.is_some());
    actix_web::rt::task::spawn_blocking(move || span.in_scope(|| run_export(&store, masker.as_ref(), &chunks)));

    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).streaming(stream))
}

/// Parses the request body. An empty body exports without masking.
fn parse_request(body: &[u8]) -> Result<ExportRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ExportRequest::default());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    // serde reads a struct from an array too (`[true]`), which no client means.
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object such as {\"mask\": true}"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Returns the masker of the tenant's key, creating and storing the key on first use.
async fn masker(store: &TenantStore) -> Result<Masker, ApiError> {
    if let Some(key) = store.masking_key()? {
        return Ok(Masker::new(&key));
    }
    let _guard = MASKING_KEY_LOCK.lock().await;
    // Another export may have stored the key while this one waited for the lock.
    if let Some(key) = store.masking_key()? {
        return Ok(Masker::new(&key));
    }

    let mut key = [0u8; MASKING_KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    let mut batch = store.batch();
    batch.put_masking_key(&key);
    store.commit(batch).await?;
    tracing::info!(tenant = %store.tenant(), "created the tenant's masking key");
    Ok(Masker::new(&key))
}

/// Writes the export into `chunks`. On a failure the stream ends with an error, so the
/// client sees a broken chunked body and the export has no `end` line.
fn run_export(store: &TenantStore, masker: Option<&Masker>, chunks: &mpsc::Sender<Chunk>) {
    let sink = |chunk: Vec<u8>| chunks.blocking_send(Ok(web::Bytes::from(chunk))).is_ok();
    match write_export(store, masker, now_ms(), sink) {
        Ok(counts) => tracing::info!(
            users = counts.users,
            conversations = counts.conversations,
            messages = counts.messages,
            read_markers = counts.read_markers,
            "export finished"
        ),
        Err(ExportError::SinkClosed) => tracing::warn!("export stopped: the client closed the connection"),
        Err(err) => {
            tracing::error!(error = %err, "export failed; the stream ends without its end line");
            let _ = chunks.blocking_send(Err(std::io::Error::other("export failed")));
        }
    }
}
