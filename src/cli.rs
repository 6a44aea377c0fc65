//! The command line: one binary, every flag also an environment variable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::ApiSettings;
use crate::app::{Application, Settings};
use crate::catalog::{self, CatalogFeed};
use crate::ids::WorkspaceId;
use crate::store::commands::Commands;
use crate::store::db::{self, DbOptions};
use crate::tokens;

#[derive(Debug, Parser)]
#[command(
    name = "deployd",
    version,
    about = "Records and runs the deploys of a hosting platform."
)]
pub struct Cli {
    /// PostgreSQL URL; the database is created and migrated when missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/deployd",
        global = true
    )]
    pub database_url: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, with the projectors and the catalog consumer.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Feed catalog documents (entities, builds).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// `replay`, `events export`, `audit verify` (src/audit/cli.rs).
    #[command(flatten)]
    Audit(crate::audit::cli::AuditCommands),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DEPLOYD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Prefix of every NATS subject, stream and consumer deployd makes.
    #[arg(long, env = "DEPLOYD_NATS_PREFIX", default_value = "deployd")]
    pub nats_prefix: String,
    /// Where deployd keeps files (uploaded builds).
    #[arg(long, env = "DEPLOYD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Base of the URLs deployd hands out (default: http:// + listen).
    #[arg(long, env = "DEPLOYD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long a command's answer waits for the read model, in ms.
    #[arg(long, env = "DEPLOYD_PROJECTION_WAIT_MS", default_value_t = 10_000)]
    pub projection_wait_ms: u64,
    /// Per-request timeout, in ms.
    #[arg(long, env = "DEPLOYD_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// PostgreSQL statement timeout, in ms (0: none).
    #[arg(long, env = "DEPLOYD_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,
    /// Connections in the database pool.
    #[arg(long, env = "DEPLOYD_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (only the token, on its own line).
    Create {
        /// A workspace the token grants (repeatable).
        #[arg(long = "workspace", required = true)]
        workspaces: Vec<WorkspaceId>,
        /// The principal shown as createdBy (default: the token's id).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Import catalog documents, one JSON document per line (`-`: stdin).
    Import { file: String },
}

impl ServeArgs {
    pub fn settings(&self, database_url: &str) -> Settings {
        Settings {
            database_url: database_url.to_string(),
            db: DbOptions {
                max_connections: self.db_pool_size,
                statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            },
            nats_url: self.nats_url.clone(),
            nats_prefix: self.nats_prefix.clone(),
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            public_url: self.public_url.clone(),
            api: ApiSettings {
                projection_wait: Duration::from_millis(self.projection_wait_ms),
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                ..ApiSettings::default()
            },
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs a command line; the exit code is the result.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(args.settings(&cli.database_url)).await?;
            let shutdown = app.shutdown_token();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("stopping: draining in-flight requests");
                shutdown.cancel();
            });
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(command) => crate::audit::cli::run(&cli.database_url, command).await,
        Command::Migrate => {
            db::connect_and_migrate(&cli.database_url, &DbOptions::default()).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Create { workspaces, name }) => {
            let pool = db::connect_and_migrate(&cli.database_url, &DbOptions::default()).await?;
            let (_, secret) = tokens::create(&pool, name.as_deref(), &workspaces).await?;
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog(CatalogCommand::Import { file }) => {
            let pool = db::connect_and_migrate(&cli.database_url, &DbOptions::default()).await?;
            let feed = CatalogFeed::new(Arc::new(Commands::new(pool)));
            let report = if file == "-" {
                let stdin = tokio::io::BufReader::new(tokio::io::stdin());
                catalog::import(&feed, stdin, std::io::stderr()).await?
            } else {
                let f = tokio::fs::File::open(&file)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {file}: {e}"))?;
                catalog::import(&feed, tokio::io::BufReader::new(f), std::io::stderr()).await?
            };
            eprintln!(
                "{} documents recorded, {} rejected",
                report.recorded, report.rejected
            );
            Ok(if report.rejected == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
