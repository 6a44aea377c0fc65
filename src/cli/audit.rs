//! `deployd replay`, `deployd events export`, `deployd events import`,
//! `deployd audit verify`:
//! flattened into the top-level commands of `crate::cli`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use crate::readers::projector::Projection;
use crate::store::db::DbOptions;

#[derive(Debug, Subcommand)]
pub enum AuditCommands {
    /// Rebuild projections from the start of the log into fresh tables and
    /// swap them in, while the API keeps serving.
    Replay {
        /// Only this projection (`deploys`, `catalog`); default: all.
        #[arg(long)]
        projection: Option<String>,
    },
    /// Read the event log out, or into another store.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Check the event log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write the log to stdout as JSON lines, in log order.
    Export {
        /// Resume after this event: `TX:POSITION` from the last exported
        /// line (or a bare POSITION: after the event stored there).
        #[arg(long)]
        from: Option<crate::audit::export::From>,
        /// Only the streams of this workspace.
        #[arg(long)]
        workspace: Option<crate::domain::ids::WorkspaceId>,
    },
    /// Append the events of an `events export` file to this store, in file
    /// order, keeping their ids, streams, sequences, deploy numbers, times
    /// and metadata: how to move from the embedded database to PostgreSQL
    /// (set DATABASE_URL to the target).
    ///
    /// The whole file is checked first (each line an event this build
    /// reads, streams in order, hash links where the file has them);
    /// nothing is written if a line fails. Then 1,000 events per
    /// transaction; a failing line stops the import with its line number
    /// and nothing of its batch applied. Events already stored (same event
    /// id) are skipped, so running it again is safe and resumes.
    ///
    /// The read model is not written here: a server on the target rebuilds
    /// it with its projectors, which catch up from their checkpoints. Tokens
    /// are not events: create new ones on the target. The files of the
    /// local hosting target stay in DEPLOYD_DATA_DIR: keep the same one.
    Import {
        /// The export, one event per line (`-`: stdin).
        file: String,
        /// Do not check the lines' hash chain links (for a file known to be
        /// good whose JSON the check does not reproduce).
        #[arg(long)]
        no_verify: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every stream's hash chain; exit non-zero naming each
    /// stream and sequence that fails.
    Verify,
}

/// Runs one of these commands.
pub async fn run(
    globals: &super::globals::Globals,
    command: AuditCommands,
) -> anyhow::Result<ExitCode> {
    // No statement timeout (a replay's swap or a verify may be long); few
    // connections (replay uses three at most).
    let options = DbOptions {
        statement_timeout: std::time::Duration::ZERO,
        max_connections: 4,
    };
    // The log's commands work on a store that exists; none creates one.
    let db = globals.open_existing(&options).await?;
    match command {
        AuditCommands::Replay { projection } => {
            let all = crate::read_model::projections();
            let chosen: Vec<Arc<dyn Projection>> = match projection {
                None => all,
                Some(name) => {
                    let names: Vec<_> = all.iter().map(|p| p.name()).collect();
                    let one: Vec<_> = all.into_iter().filter(|p| p.name() == name).collect();
                    anyhow::ensure!(
                        !one.is_empty(),
                        "no projection named {name:?}; there are {}",
                        names.join(", ")
                    );
                    one
                }
            };
            let summary = crate::audit::replay::replay(&db, &chosen, |p| eprintln!("{p}")).await?;
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommands::Events(EventsCommand::Export { from, workspace }) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let workspace = workspace.map(|w| w.to_string());
            let n = crate::audit::export::export(&db, from, workspace.as_deref(), &mut out).await?;
            eprintln!("{n} events exported");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommands::Events(EventsCommand::Import { file, no_verify }) => {
            let source = crate::audit::import::Source::open(&file).await?;
            match crate::audit::import::import(&db, &source, !no_verify).await {
                Ok(summary) => {
                    if summary.verified + summary.unverifiable > 0 {
                        eprintln!(
                            "{} hash links verified, {} not verifiable from the file",
                            summary.verified, summary.unverifiable
                        );
                    }
                    eprintln!("{summary} (into {})", db.describe());
                    Ok(ExitCode::SUCCESS)
                }
                Err(failed) => {
                    eprintln!("deployd: {failed}");
                    eprintln!(
                        "{} (the import is one transaction: nothing of the file was imported)",
                        failed.committed
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommands::Audit(AuditCommand::Verify) => {
            let report = crate::store::chain::verify(&db).await?;
            for failure in &report.failures {
                println!("{failure}");
            }
            eprintln!(
                "{} events in {} streams checked, {} failures",
                report.events,
                report.streams,
                report.failures.len()
            );
            Ok(if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
