//! The `bulkhead` binary.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use bulkhead_gateway::{
    config::{Config, LogFormat},
    server,
};
use bulkhead_storage::{
    audit::{self, ChainStatus},
    Durability, TenantId,
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
