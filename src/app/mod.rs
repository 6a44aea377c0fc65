//! The use cases: what a caller can ask deployd to do, each a function of
//! typed inputs that returns a typed outcome, with no HTTP in it (the API
//! parses a request into the input and turns the outcome into an answer;
//! tests and the CLI can call the same functions). A use case looks up
//! what the aggregate needs inside the caller's workspaces, runs the
//! command through the one command path, and waits until the read model
//! shows the result (read-your-writes).

pub mod deploys;
pub mod entities;
pub mod releases;

use std::time::Duration;

use crate::domain::deploy::DeployError;
use crate::read_model::DeploysProjection;
use crate::store::commands::CommandError;
use crate::store::log::{self, LogPosition};

use crate::store::commands::{CommandMeta, Commands};
use crate::store::db::Db;
use crate::store::log::LogSignals;
use crate::store::tokens::Caller;

/// What the use cases run on.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub db: &'a Db,
    pub commands: &'a Commands,
    pub signals: &'a LogSignals,
    /// The API's own leases (a workspace's entity names while one is
    /// created), apart from the worker's.
    pub leases: &'a crate::store::lease::Leases,
    /// How long a use case waits for the read model to show its result.
    pub projection_wait: Duration,
}

/// Who asks, and the request that carries the question.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub caller: &'a Caller,
    /// The request's id: the events' `requestId`, and the start of the
    /// correlation every later event of the deploy carries.
    pub request_id: &'a str,
}

impl Actor<'_> {
    /// The metadata of the commands this request causes.
    pub fn meta(&self) -> CommandMeta {
        CommandMeta {
            actor: self.caller.principal.clone(),
            request_id: self.request_id.to_string(),
            correlation_id: self.request_id.to_string(),
            causation_id: Some(self.request_id.to_string()),
        }
    }
}

/// Why a use case did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Unknown, or outside the caller's workspaces.
    #[error("{0}")]
    NotFound(String),
    /// Well-formed, but the state refuses it (a build that did not succeed).
    #[error("{0}")]
    Unprocessable(String),
    /// It conflicts with the state (a deploy already terminal).
    #[error("{0}")]
    Conflict(String),
    /// Recorded, but the read model did not show it in time.
    #[error("{id} was recorded but the read model is behind")]
    Behind { id: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Refusal::Internal(e.into())
    }
}

/// A refusal, and whether a command had already committed when it came
/// (then an idempotency record is kept for a retry to take over, not
/// forgotten).
#[derive(Debug)]
pub struct Failed {
    pub refusal: Refusal,
    pub committed: bool,
}

impl<E: Into<Refusal>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed {
            refusal: e.into(),
            committed: false,
        }
    }
}

impl Failed {
    /// The same refusal, after a command committed.
    pub fn after_commit(refusal: impl Into<Refusal>) -> Self {
        Failed {
            refusal: refusal.into(),
            committed: true,
        }
    }
}

/// Waits until the `deploys` projection shows `head` (read-your-writes).
pub(crate) async fn visible(s: Services<'_>, head: LogPosition, id: &str) -> Result<(), Failed> {
    let shown = log::wait_for_checkpoint(
        s.db,
        s.signals,
        DeploysProjection::NAME,
        head,
        s.projection_wait,
    )
    .await
    .map_err(Failed::after_commit)?;
    if shown {
        Ok(())
    } else {
        Err(Failed::after_commit(Refusal::Behind { id: id.to_string() }))
    }
}

/// A refused deploy command, as the use case's refusal.
pub(crate) fn refused(e: CommandError<DeployError>) -> Refusal {
    match e {
        CommandError::Domain(DeployError::NotFound) => Refusal::NotFound("deploy not found".into()),
        CommandError::Domain(DeployError::Terminal(status)) => Refusal::Conflict(format!(
            "the deploy is already {status}; nothing leaves that status"
        )),
        CommandError::Domain(other) => Refusal::Conflict(other.to_string()),
        CommandError::Conflict => {
            Refusal::Conflict(CommandError::<DeployError>::Conflict.to_string())
        }
        CommandError::Store(e) => Refusal::Internal(anyhow::anyhow!(e)),
    }
}
