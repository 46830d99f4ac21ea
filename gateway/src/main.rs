//! The `bulkhead` binary.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use bulkhead_gateway::{
    config::{Config, LogFormat},
    export::{self, import::ImportError},
    server,
};
use bulkhead_storage::{
    audit::{self, ChainStatus},
    Durability, Storage, StorageOptions, TenantId,
};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "bulkhead", version, about = "Multi-tenant real-time messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve(ServeArgs),
    /// Inspect the audit logs of a stopped server.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load a tenant export into an existing, empty tenant of a stopped server. Exits with 0
    /// when every record was written, 1 when the file was rejected (nothing written) and 2
    /// when the import could not run or failed while writing.
    Import(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Data directory of the server (the one given to `serve`); the server must be stopped.
    #[arg(long, env = "BULKHEAD_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The tenant to load into. Create it first (POST /v1/tenants); it must have no users and
    /// no conversations.
    #[arg(long)]
    tenant: String,
    /// The export file (NDJSON), plain or masked.
    #[arg(long)]
    file: PathBuf,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk an audit log's hash chain and report the first broken entry. Exits with 0 when
    /// the chain is intact, 1 when it is broken and 2 when the log cannot be read.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Data directory of the server (the one given to `serve`); the server must be stopped.
    #[arg(long, env = "BULKHEAD_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Verify this tenant's log instead of the platform log.
    #[arg(long)]
    tenant: Option<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML); see bulkhead.toml in the repository for every setting.
    #[arg(long, env = "BULKHEAD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080; port 0 picks a free port.
    #[arg(long, env = "BULKHEAD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the database and the generated admin token.
    #[arg(long, env = "BULKHEAD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// When a send is acknowledged: after the WAL is synced (fsync) or written (wal).
    #[arg(long, env = "BULKHEAD_DURABILITY")]
    durability: Option<DurabilityArg>,
    /// Log format.
    #[arg(long, env = "BULKHEAD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Fsync,
    Wal,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Reads FAILPOINTS for the failure tests; fail points are compiled only into test builds.
    let _fail_scenario = fail::FailScenario::setup();

    match cli.command {
        Command::Audit(AuditCommand::Verify(args)) => verify_audit(&args),
        Command::Import(args) => import(&args),
        Command::Serve(args) => {
            let config = match build_config(args) {
                Ok(config) => config,
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(2);
                }
            };
            let result = actix_web::rt::System::new().block_on(server::serve(config));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn verify_audit(args: &VerifyArgs) -> ExitCode {
    let tenant = match args.tenant.as_deref().map(TenantId::parse).transpose() {
        Ok(tenant) => tenant,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let log = match &tenant {
        Some(tenant) => format!("audit log of tenant {tenant}"),
        None => "platform audit log".to_owned(),
    };
    match audit::verify_offline(&args.data_dir, tenant.as_ref()) {
        Ok(ChainStatus::Intact { entries, head }) => {
            let head = head.map(|h| hex::encode(h.sha256)).unwrap_or_else(|| "none".into());
            println!("ok: {log}, {entries} entries, head sha256 {head}");
            ExitCode::SUCCESS
        }
        Ok(ChainStatus::Broken { seq, reason }) => {
            println!("broken: {log}, first broken entry seq {seq}: {reason}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: failed to verify the {log} in {}: {err}", args.data_dir.display());
            ExitCode::from(2)
        }
    }
}

fn import(args: &ImportArgs) -> ExitCode {
    let tenant = match TenantId::parse(&args.tenant) {
        Ok(tenant) => tenant,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let db_path = args.data_dir.join("db");
    // Opening creates a missing database, and a mistyped directory should not get one.
    if !db_path.is_dir() {
        eprintln!("error: no database at {}; pass the --data-dir of the server", db_path.display());
        return ExitCode::from(2);
    }
    let storage = match Storage::open(&args.data_dir, &StorageOptions::default()) {
        Ok(storage) => storage,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let store = match storage.tenant_store(&tenant) {
        Ok(Some(store)) => store,
        Ok(None) => {
            eprintln!("error: tenant {tenant} not found; create it first with POST /v1/tenants");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let result = runtime.block_on(export::import::import_file(&store, &args.file));
    match result {
        Ok(summary) => {
            let kind = if summary.header.masked { "masked" } else { "plain" };
            let counts = export::import::describe_counts(&summary.counts);
            println!("ok: imported the {kind} export of tenant {} into tenant {tenant}: {counts}", summary.header.tenant);
            ExitCode::SUCCESS
        }
        Err(err @ (ImportError::InvalidFile { .. } | ImportError::TenantNotEmpty(_))) => {
            eprintln!("error: {err}; nothing was written");
            ExitCode::FAILURE
        }
        Err(err @ ImportError::Write { .. }) => {
            eprintln!(
                "error: {err}; tenant {tenant} now holds part of the export: delete and re-create it before the next import"
            );
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}; nothing was written");
            ExitCode::from(2)
        }
    }
}

/// File, then environment, then flags: clap already folds the environment into the flags.
fn build_config(args: ServeArgs) -> Result<Config, String> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(durability) = args.durability {
        config.storage.durability = match durability {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::Wal => Durability::Wal,
        };
    }
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    if let Ok(token) = std::env::var("BULKHEAD_ADMIN_TOKEN") {
        config.admin_token = Some(token);
    }
    if let Ok(token) = std::env::var("BULKHEAD_OPERATOR_TOKEN") {
        config.operator_token = Some(token);
    }
    Ok(config)
}
