//! The command path: load an aggregate from its events, decide, append in
//! one transaction with optimistic concurrency (cqrs-es 0.5 on postgres-es
//! or sqlite-es, the plain event store: no snapshots, no in-process query
//! dispatch).
//!
//! A concurrency conflict (another writer appended to the same stream first)
//! is retried a few times with a short random backoff, then reported as
//! [`CommandError::Conflict`] (409 at the API).

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use sqlite_es::SqliteEventRepository;

use crate::domain::catalog::{Build, Entity};
use crate::domain::deploy::Deploy;
use crate::store::db::Db;
use crate::store::log::{self, LogPosition};

type Framework<A, R> = CqrsFramework<A, PersistedEventStore<R, A>>;

/// The three aggregates' frameworks over one event repository.
struct Frameworks<R: PersistedEventRepository> {
    deploys: Framework<Deploy, R>,
    entities: Framework<Entity, R>,
    builds: Framework<Build, R>,
}

impl<R: PersistedEventRepository> Frameworks<R> {
    fn new(repository: impl Fn() -> R) -> Self {
        Self {
            deploys: framework(repository()),
            entities: framework(repository()),
            builds: framework(repository()),
        }
    }
}

enum Engines {
    Postgres(Frameworks<PostgresEventRepository>),
    Sqlite(Frameworks<SqliteEventRepository>),
}

/// Runs `$body` with `$f` bound to the engine's [`Frameworks`].
macro_rules! on_engine {
    ($engines:expr, $f:ident => $body:expr) => {
        match $engines {
            Engines::Postgres($f) => $body,
            Engines::Sqlite($f) => $body,
        }
    };
}

const ATTEMPTS: u32 = 5;

/// Who and what caused a command; stored as every resulting event's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    /// The principal (a token's name) or `system`.
    pub actor: String,
    /// The HTTP request id or the message id that carried the command.
    pub request_id: String,
    /// The id shared by everything one original request set off.
    pub correlation_id: String,
    /// The event (or request) that directly caused this command.
    pub causation_id: Option<String>,
}

impl CommandMeta {
    pub fn system(request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        Self {
            actor: "system".into(),
            correlation_id: request_id.clone(),
            request_id,
            causation_id: None,
        }
    }

    fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor".to_string(), self.actor.clone()),
            ("requestId".to_string(), self.request_id.clone()),
            ("correlationId".to_string(), self.correlation_id.clone()),
        ]);
        if let Some(causation) = &self.causation_id {
            map.insert("causationId".to_string(), causation.clone());
        }
        map
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused it.
    #[error(transparent)]
    Domain(E),
    /// Other writers kept appending to the same stream.
    #[error("the resource kept changing while the command ran; try again")]
    Conflict,
    #[error("the event store failed: {0}")]
    Store(String),
}

/// The one way in for every command.
pub struct Commands {
    db: Db,
    engines: Engines,
}

fn framework<A: Aggregate<Services = ()>, R: PersistedEventRepository>(
    repository: R,
) -> Framework<A, R> {
    let store = PersistedEventStore::new_event_store(repository)
        .with_upcasters(crate::store::upcast::for_cqrs());
    CqrsFramework::new(store, vec![], ())
}

impl Commands {
    pub fn new(db: Db) -> Self {
        let engines = match &db {
            Db::Postgres(pool) => Engines::Postgres(Frameworks::new(|| {
                PostgresEventRepository::new(pool.clone())
            })),
            Db::Sqlite(embedded) => Engines::Sqlite(Frameworks::new(|| {
                SqliteEventRepository::new(embedded.event_store_pool())
            })),
        };
        Self { db, engines }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs a deploy command; returns where the stream's head now is.
    pub async fn deploy(
        &self,
        id: &str,
        command: <Deploy as Aggregate>::Command,
        meta: &CommandMeta,
    ) -> Result<LogPosition, CommandError<<Deploy as Aggregate>::Error>> {
        on_engine!(&self.engines, f => self.run(&f.deploys, id, command, meta).await)
    }

    pub async fn entity(
        &self,
        id: &str,
        command: <Entity as Aggregate>::Command,
        meta: &CommandMeta,
    ) -> Result<LogPosition, CommandError<<Entity as Aggregate>::Error>> {
        on_engine!(&self.engines, f => self.run(&f.entities, id, command, meta).await)
    }

    pub async fn build(
        &self,
        id: &str,
        command: <Build as Aggregate>::Command,
        meta: &CommandMeta,
    ) -> Result<LogPosition, CommandError<<Build as Aggregate>::Error>> {
        on_engine!(&self.engines, f => self.run(&f.builds, id, command, meta).await)
    }

    async fn run<A, R>(
        &self,
        framework: &Framework<A, R>,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<LogPosition, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
        R: PersistedEventRepository,
    {
        let mut attempt = 0;
        let outcome = |o: &'static str| {
            metrics::counter!("deployd_commands_total", "aggregate" => A::TYPE, "outcome" => o)
                .increment(1);
        };
        loop {
            attempt += 1;
            // Embedded: take this process's write turn for the append.
            let turn = self.db.write_turn().await;
            let executed = framework
                .execute_with_metadata(id, command.clone(), meta.to_map())
                .await;
            drop(turn);
            match executed {
                Ok(()) => break,
                Err(AggregateError::UserError(e)) => {
                    outcome("refused");
                    return Err(CommandError::Domain(e));
                }
                Err(AggregateError::AggregateConflict) if attempt < ATTEMPTS => {
                    metrics::counter!("deployd_command_conflicts_total", "aggregate" => A::TYPE)
                        .increment(1);
                    let backoff = rand::rng().random_range(5..25u64) * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                Err(AggregateError::AggregateConflict) => {
                    outcome("conflict");
                    return Err(CommandError::Conflict);
                }
                Err(other) => {
                    outcome("error");
                    return Err(CommandError::Store(other.to_string()));
                }
            }
        }
        outcome("ok");
        if let Db::Sqlite(embedded) = &self.db {
            embedded.wake();
        }
        log::stream_head(&self.db, A::TYPE, id)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))
            .map(|head| head.unwrap_or(LogPosition::START))
    }
}
