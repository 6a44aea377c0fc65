//! The command line: one binary, every flag also an environment variable.

pub mod audit;
pub mod client;
pub mod deploy;
mod globals;
pub mod ids;

pub use globals::Globals;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::ApiSettings;
use crate::catalog::{self, CatalogFeed};
use crate::domain::ids::WorkspaceId;
use crate::hosting::cloudflare::CloudflareSettings;
use crate::startup::{Application, Settings, TargetSettings};
use crate::store::commands::Commands;
use crate::store::db::DbOptions;
use crate::store::tokens;
use crate::worker::WorkerSettings;

#[derive(Debug, Parser)]
#[command(
    name = "deployd",
    version,
    about = "Records and runs the deploys of a hosting platform."
)]
pub struct Cli {
    /// PostgreSQL URL (`postgres://…`), created and migrated when missing.
    /// Unset: the embedded SQLite database in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Where deployd keeps files (hosted builds, and the embedded database).
    #[arg(
        long,
        env = "DEPLOYD_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// The directories builds may be published from (`:`-separated): a
    /// catalog `artifactDir` must resolve inside one of them, and never near
    /// the data directory. Unset: every `artifactDir` is refused.
    #[arg(
        long,
        env = "DEPLOYD_ARTIFACT_ROOTS",
        global = true,
        value_delimiter = ':'
    )]
    pub artifact_roots: Vec<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments. `deploy`, `deploys` (the client) and `ids`
    /// accept the global store flags like every command, but their help
    /// does not list them: they never open the database.
    pub fn parse_process_args() -> Self {
        use clap::FromArgMatches;
        let matches = Self::clap_command().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The clap command, as [`Cli::parse_process_args`] parses with it:
    /// the client commands get hidden copies of the store flags, which clap then
    /// propagates below it instead of the visible ones.
    pub fn clap_command() -> clap::Command {
        use clap::CommandFactory;
        let command = Self::command();
        let hidden: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|a| ["database_url", "data_dir"].contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        ["deploy", "deploys", "ids"]
            .into_iter()
            .fold(command, |command, name| {
                command.mut_subcommand(name, |c| c.args(hidden.clone()))
            })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, with the projectors, the relay, the catalog consumer
    /// and (unless --no-worker) the saga worker.
    Serve(ServeArgs),
    /// Run the saga worker alone (any number of them may run).
    Worker(ServeArgs),
    /// Run the relay alone; `--from POSITION` republishes from that event.
    Relay {
        #[command(flatten)]
        args: ServeArgs,
        /// Republish from the event with this position (inclusive).
        #[arg(long)]
        from: Option<i64>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print fresh ids (`deployd ids new app`), for catalog documents.
    #[command(subcommand)]
    Ids(ids::IdsCommand),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Feed catalog documents (entities, builds).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Deploy a directory: hash its files, upload what the server lacks,
    /// deploy it and follow the deploy; prints the preview and production
    /// URLs (needs only DEPLOYD_URL and DEPLOYD_TOKEN).
    Deploy(deploy::DeployArgs),
    /// Talk to a deployd server: list, get, create, cancel, events,
    /// rollback, promote (needs only DEPLOYD_URL and DEPLOYD_TOKEN).
    Deploys(client::ClientArgs),
    /// Apps and functions on a deployd server: list, get (what is live).
    Apps(client::AppsArgs),
    /// Builds on a deployd server: list, get.
    Builds(client::BuildsArgs),
    /// `replay`, `events export`, `events import`, `audit verify`
    /// (src/audit/cli.rs).
    #[command(flatten)]
    Audit(audit::AuditCommands),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DEPLOYD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// NATS server with JetStream (`nats://…`). Unset: the in-process bus
    /// (one process; no events for outside subscribers).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Prefix of every NATS subject, stream and consumer deployd makes.
    #[arg(long, env = "DEPLOYD_NATS_PREFIX", default_value = "deployd")]
    pub nats_prefix: String,
    /// Base of the URLs deployd hands out (default: http:// + listen).
    #[arg(long, env = "DEPLOYD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long a command's answer waits for the read model, in ms.
    #[arg(long, env = "DEPLOYD_PROJECTION_WAIT_MS", default_value_t = 10_000)]
    pub projection_wait_ms: u64,
    /// Per-request timeout, in ms.
    #[arg(long, env = "DEPLOYD_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Statement timeout on PostgreSQL, in ms (0: none).
    #[arg(long, env = "DEPLOYD_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,
    /// Connections in the database pool.
    #[arg(long, env = "DEPLOYD_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
    /// Requests per second per token (0: no limit).
    #[arg(long, env = "DEPLOYD_RATE_LIMIT", default_value_t = 100)]
    pub rate_limit: u32,
    /// Requests a token may burst above its rate.
    #[arg(long, env = "DEPLOYD_RATE_BURST", default_value_t = 200)]
    pub rate_burst: u32,
    /// Longest wait for the next part of a request body, in ms (then 408).
    #[arg(long, env = "DEPLOYD_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Failed authentications per second per client address (0: no limit).
    #[arg(long, env = "DEPLOYD_AUTH_FAILURE_RATE", default_value_t = 1)]
    pub auth_failure_rate: u32,
    /// Failed authentications a client address may burst above that rate.
    #[arg(long, env = "DEPLOYD_AUTH_FAILURE_BURST", default_value_t = 20)]
    pub auth_failure_burst: u32,
    /// Largest request body, in bytes.
    #[arg(long, env = "DEPLOYD_BODY_LIMIT", default_value_t = 65_536)]
    pub body_limit: usize,
    /// Where builds' files and deploys' manifests are kept: `file://PATH`,
    /// or `s3://BUCKET[/PREFIX]` with the standard `AWS_*` variables
    /// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`). Unset: `<data dir>/blobs`.
    #[arg(long, env = "DEPLOYD_ARTIFACT_STORE")]
    pub artifact_store: Option<String>,
    /// Largest file an upload may hold (`PUT /api/blobs/{sha256}`), in bytes.
    #[arg(long, env = "DEPLOYD_MAX_BLOB_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_blob_bytes: u64,
    /// Most files an uploaded build may hold.
    #[arg(long, env = "DEPLOYD_MAX_BUILD_FILES", default_value_t = 20_000)]
    pub max_build_files: usize,
    /// Let webhooks reach loopback and private addresses.
    #[arg(long, env = "DEPLOYD_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// The waits before each retry of a failed webhook delivery (after the
    /// last, it is failed).
    #[arg(
        long,
        env = "DEPLOYD_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,1m,10m,1h,6h"
    )]
    pub webhook_retry_schedule: String,
    /// `/readyz` answers 503 when a reader of the log (a projection, the
    /// relay) has had events waiting without moving for longer than this, in ms.
    #[arg(long, env = "DEPLOYD_READY_MAX_LAG_MS", default_value_t = 30_000)]
    pub ready_max_lag_ms: u64,
    /// Do not run the saga worker in this process. As a value (and in the
    /// environment) any usual spelling: 1/0, true/false, yes/no, on/off.
    #[arg(
        long,
        env = "DEPLOYD_NO_WORKER",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub no_worker: bool,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// How deploys are run.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Where deploys go: `local` (deployd stores and serves them) or
    /// `cloudflare` (Pages Direct Upload; needs the CLOUDFLARE_* settings).
    #[arg(long, env = "DEPLOYD_TARGET", default_value = "local")]
    pub target: String,
    /// Deploys one worker process runs at once.
    #[arg(long, env = "DEPLOYD_WORKER_CONCURRENCY", default_value_t = 4)]
    pub worker_concurrency: usize,
    /// Timeout of one attempt of one step, in ms.
    #[arg(long, env = "DEPLOYD_STEP_TIMEOUT_MS", default_value_t = 600_000)]
    pub step_timeout_ms: u64,
    /// Attempts of a step that fails transiently.
    #[arg(long, env = "DEPLOYD_STEP_ATTEMPTS", default_value_t = 3)]
    pub step_attempts: u32,
    /// How often the sweeper re-drives deploys no worker holds, in ms.
    #[arg(long, env = "DEPLOYD_SWEEP_INTERVAL_MS", default_value_t = 5_000)]
    pub sweep_interval_ms: u64,
    /// Cloudflare API base URL.
    #[arg(
        long,
        env = "CLOUDFLARE_API_BASE",
        default_value = "https://api.cloudflare.com/client/v4"
    )]
    pub cloudflare_api_base: String,
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID")]
    pub cloudflare_account_id: Option<String>,
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    pub cloudflare_api_token: Option<String>,
}

impl WorkerArgs {
    fn target(&self) -> anyhow::Result<TargetSettings> {
        match self.target.as_str() {
            "local" => Ok(TargetSettings::Local),
            "cloudflare" => Ok(TargetSettings::Cloudflare(CloudflareSettings {
                api_base: self.cloudflare_api_base.clone(),
                account_id: self.cloudflare_account_id.clone().ok_or_else(|| {
                    anyhow::anyhow!("DEPLOYD_TARGET=cloudflare needs CLOUDFLARE_ACCOUNT_ID")
                })?,
                api_token: self.cloudflare_api_token.clone().ok_or_else(|| {
                    anyhow::anyhow!("DEPLOYD_TARGET=cloudflare needs CLOUDFLARE_API_TOKEN")
                })?,
            })),
            other => anyhow::bail!("DEPLOYD_TARGET must be local or cloudflare, not {other:?}"),
        }
    }

    fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            concurrency: self.worker_concurrency,
            step_timeout: Duration::from_millis(self.step_timeout_ms),
            attempts: self.step_attempts.max(1),
            sweep_interval: Duration::from_millis(self.sweep_interval_ms),
            ..WorkerSettings::default()
        }
    }
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
    /// List the tokens: id, name, workspaces, created, last used, revoked
    /// (never a secret).
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (`tok_…`): refused from the next request on.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Import catalog documents, one JSON document per line (`-`: stdin).
    Import { file: String },
}

impl ServeArgs {
    pub fn settings(&self, cli: &Globals) -> anyhow::Result<Settings> {
        Ok(Settings {
            database_url: cli.database_url.clone(),
            db: DbOptions {
                max_connections: self.db_pool_size,
                statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            },
            nats_url: self.nats_url.clone(),
            nats_prefix: self.nats_prefix.clone(),
            listen: self.listen.clone(),
            data_dir: cli.data_dir.clone(),
            artifact_roots: cli.artifact_roots().roots().to_vec(),
            artifact_store: self.artifact_store.clone(),
            public_url: self.public_url.clone(),
            api: ApiSettings {
                projection_wait: Duration::from_millis(self.projection_wait_ms),
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                body_limit: self.body_limit,
                body_timeout: Duration::from_millis(self.body_timeout_ms),
                rate_limit_per_second: self.rate_limit,
                rate_limit_burst: self.rate_burst,
                auth_failure_rate: self.auth_failure_rate,
                auth_failure_burst: self.auth_failure_burst,
                ready_max_lag: Duration::from_millis(self.ready_max_lag_ms),
                max_blob_bytes: self.max_blob_bytes,
                max_build_files: self.max_build_files,
                ..ApiSettings::default()
            },
            run_worker: !self.no_worker,
            worker: self.worker.settings(),
            target: self.worker.target()?,
            webhooks: crate::webhooks::WebhookSettings {
                allow_private: self.webhook_allow_private,
                retry_schedule: crate::webhooks::parse_schedule(&self.webhook_retry_schedule)
                    .map_err(|e| anyhow::anyhow!("DEPLOYD_WEBHOOK_RETRY_SCHEDULE: {e}"))?,
                ..Default::default()
            },
        })
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
    let globals = Globals {
        database_url: cli.database_url,
        data_dir: cli.data_dir,
        artifact_roots: cli.artifact_roots,
    };
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(args.settings(&globals)?).await?;
            let shutdown = app.shutdown_token();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("stopping: draining in-flight requests");
                shutdown.cancel();
            });
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("stopping: finishing the steps in flight");
                stop.cancel();
            });
            crate::startup::run_worker(args.settings(&globals)?, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay { args, from } => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                stop_signal().await;
                stop.cancel();
            });
            crate::startup::run_relay(args.settings(&globals)?, from, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy(args) => deploy::run(args).await,
        Command::Deploys(args) => client::run(args).await,
        Command::Apps(args) => client::run_apps(args).await,
        Command::Builds(args) => client::run_builds(args).await,
        Command::Audit(command) => audit::run(&globals, command).await,
        Command::Ids(command) => {
            ids::run(command);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = globals.open(&DbOptions::default()).await?;
            println!("migrations applied to {}", db.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Create { workspaces, name }) => {
            let db = globals.open_existing(&DbOptions::default()).await?;
            let (_, secret) = tokens::create(&db, name.as_deref(), &workspaces).await?;
            println!("{secret}");
            eprintln!("token recorded in {}", db.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::List { json }) => {
            let db = globals.open_existing(&DbOptions::default()).await?;
            let tokens = crate::store::access::list_tokens(&db).await?;
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| crate::domain::time::format(&t))
                    .unwrap_or_else(|| "-".into())
            };
            if json {
                for token in &tokens {
                    println!("{}", serde_json::to_string(token)?);
                }
            } else {
                println!("ID\tNAME\tWORKSPACES\tCREATED\tLAST USED\tREVOKED");
                for t in &tokens {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.name,
                        t.workspaces.join(","),
                        crate::domain::time::format(&t.created_at),
                        time(t.last_used_at),
                        time(t.revoked_at)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let db = globals.open_existing(&DbOptions::default()).await?;
            if crate::store::access::revoke_token(&db, &id, crate::domain::time::now()).await? {
                eprintln!("token {id} revoked in {}", db.describe());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("deployd: no live token {id} in {}", db.describe());
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Catalog(CatalogCommand::Import { file }) => {
            let db = globals.open_existing(&DbOptions::default()).await?;
            eprintln!("importing into {}", db.describe());
            let feed = CatalogFeed::new(Arc::new(Commands::new(db)), globals.artifact_roots());
            let report = if file == "-" {
                let stdin = tokio::io::BufReader::new(tokio::io::stdin());
                catalog::import(&feed, stdin, std::io::stderr()).await?
            } else {
                let f = tokio::fs::File::open(&file)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {file}: {e}"))?;
                catalog::import(&feed, tokio::io::BufReader::new(f), std::io::stderr()).await?
            };
            eprintln!("{report}");
            Ok(if report.rejected == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn no_worker(args: &[&str]) -> Result<bool, clap::Error> {
        let mut all = vec!["deployd", "serve"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::Serve(args) => Ok(args.no_worker),
            _ => unreachable!(),
        }
    }

    #[test]
    fn boolean_settings_take_the_usual_spellings() {
        assert!(!no_worker(&[]).unwrap());
        assert!(no_worker(&["--no-worker"]).unwrap());
        for yes in ["1", "true", "yes", "on", "TRUE", "Yes"] {
            assert!(
                no_worker(&[&format!("--no-worker={yes}")]).unwrap(),
                "{yes}"
            );
        }
        for no in ["0", "false", "no", "off"] {
            assert!(!no_worker(&[&format!("--no-worker={no}")]).unwrap(), "{no}");
        }
        assert!(no_worker(&["--no-worker=maybe"]).is_err());
    }
}
