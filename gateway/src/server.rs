//! Starting and stopping the server.

use std::{sync::Arc, time::Duration};

use actix_web::{web, App, HttpServer};
use bulkhead_engine::Engine;
use bulkhead_storage::Storage;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    auth::{PlatformToken, PlatformTokens},
    config::Config, network::NetworkPolicies, rest, state::AppState, telemetry, ws};

/// How long a stopping server waits for sessions to finish their in-flight requests and
/// close, before it stops anyway. Sends still waiting then are not acknowledged, but every
/// acknowledged send is already durable.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Maximum wait at exit for other threads to drop their handles on the storage, such as
/// actix workers that are still dropping their copy of the app state after the server stopped.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Opens the database, starts the engine and serves until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), String> {
    telemetry::init_logging(config.log_format);
    // Bind first, so that a busy port fails before anything is created on disk.
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| format!("failed to listen on {}: {e}", config.listen))?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("failed to create data directory {}: {e}", config.data_dir.display()))?;

    let storage = Storage::open(&config.data_dir, &config.storage).map_err(|e| e.to_string())?;
    tracing::info!(data_dir = %config.data_dir.display(), durability = %config.storage.durability, "storage opened");

    let admin = PlatformToken::load_or_generate(config.admin_token.as_deref(), &config.data_dir)
        .map_err(|e| format!("failed to set up the platform admin token: {e}"))?;
    let operator = config.operator_token.as_deref().filter(|t| !t.is_empty()).map(PlatformToken::from_token);
    if operator.is_some() {
        tracing::info!("a platform operator token is configured");
    }
    let engine = Engine::start(storage.clone(), config.engine.clone());
    // Starting every tenant's tree now makes its quota series visible before its first use.
    let started = engine.start_all_tenants().map_err(|e| format!("failed to start tenants: {e}"))?;
    tracing::info!(tenants = started, "tenants started");

    let state = web::Data::new(AppState {
        engine: engine.clone(),
        platform: PlatformTokens { admin, operator },
        config: Arc::new(config.clone()),
        metrics: telemetry::install_metrics(),
        network_policies: NetworkPolicies::default(),
        key_usage: Default::default(),
    });
    let key_usage = state.key_usage.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(rest::configure)
            .service(ws::upgrade)
    })
    .disable_signals()
    // Without it, small frames (acks, events) can wait for the peer's delayed ACK: tens of
    // milliseconds in the slowest percent of requests.
    .tcp_nodelay(true)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .listen(listener)
    .map_err(|e| format!("failed to listen on {}: {e}", config.listen))?;

    for addr in server.addrs() {
        tracing::info!(%addr, "listening on {addr}");
    }
    let server = server.run();
    let handle = server.handle();
    let mut server = std::pin::pin!(server);

    tokio::select! {
        result = &mut server => result.map_err(|e| format!("server failed: {e}"))?,
        signal = shutdown_signal() => {
            signal?;
            drain_sessions(&engine).await;
            // The server future has to be polled for the stop command to take effect.
            let (_, result) = tokio::join!(handle.stop(true), server);
            result.map_err(|e| format!("server failed: {e}"))?;
        }
    }

    // No request runs any more, so every last use of an API key is known by now.
    key_usage.store_all(&storage).await;
    engine.stop_workers();
    drop(engine);
    close_storage(storage).await;
    tracing::info!("server stopped");
    Ok(())
}

/// Closes the database before the process exits. RocksDB's background threads must be
/// stopped before the C++ static destructors run at exit, or the process can abort. Other
/// threads may hold a handle for a moment after the server stopped, so this waits for them.
async fn close_storage(mut storage: Arc<Storage>) {
    let deadline = tokio::time::Instant::now() + CLOSE_PATIENCE;
    loop {
        match Arc::try_unwrap(storage) {
            Ok(storage) => {
                drop(storage);
                return;
            }
            Err(shared) if tokio::time::Instant::now() < deadline => {
                storage = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(shared) => {
                // NOTE: a task that outlived its worker still has the database; the WAL is synced
                // so that nothing acknowledged depends on the missing close.
                tracing::warn!(references = Arc::strong_count(&shared), "database still referenced at exit");
                if let Err(err) = shared.sync_wal() {
                    tracing::error!(error = %err, "failed to sync the WAL at exit");
                }
                return;
            }
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("failed to install the SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("failed to install the SIGINT handler: {e}"))?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
    }
    Ok(())
}

/// Takes no new work and lets sessions finish their in-flight requests and close with 1001,
/// for at most `SHUTDOWN_GRACE`.
async fn drain_sessions(engine: &Engine) {
    engine.begin_shutdown();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while engine.open_sessions() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if engine.open_sessions() > 0 {
        tracing::warn!(sessions = engine.open_sessions(), "sessions still open after the grace period");
    }
}
