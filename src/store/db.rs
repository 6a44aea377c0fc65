//! The database: PostgreSQL, or the embedded SQLite file when no
//! `DATABASE_URL` is set. [`Db`] is the one handle the rest of the code
//! holds; which engine is under it matters only inside `store`,
//! `read_model`, `audit` and the list SQL, where each statement is written
//! for both.
//!
//! Any command that touches the database creates it when it is missing and
//! applies the migrations, so whichever runs first on a fresh machine sets
//! everything up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};
use tokio::sync::watch;

/// The PostgreSQL schema, from `migrations/postgres/` (applied under sqlx's
/// advisory lock, so several processes may start at once).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
/// The embedded schema, from `migrations/sqlite/`.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The file of the embedded database inside `DEPLOYD_DATA_DIR`.
pub const EMBEDDED_FILE: &str = "deployd.db";

/// Pool settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    /// `statement_timeout` for every connection; zero leaves it unset.
    /// (PostgreSQL only: SQLite statements run in-process.)
    pub statement_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Which engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Sqlite => "sqlite",
        }
    }
}

/// The database handle: a pool on one engine. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(Embedded),
}

/// The embedded engine: the file, and what PostgreSQL would otherwise
/// provide across processes (notifications and advisory locks), in this
/// process. The embedded mode is one process by design.
///
/// Reads and writes go through two pools. `pool` holds read-only
/// connections: any number read at once, each from one WAL snapshot, and
/// none can write. `writer` holds the one connection that writes, and is
/// reachable only through a [`WriteTurn`]: this process's writers queue for
/// the turn in order, instead of each polling SQLite's write lock through
/// the busy handler (whose sleeps grow to 100 ms) while others take it. So
/// a write that forgot its turn does not compile, and one sent through the
/// read pool fails at once ("attempt to write a readonly database").
#[derive(Clone, Debug)]
pub struct Embedded {
    /// Read-only connections.
    pub pool: SqlitePool,
    pub path: PathBuf,
    wake: Arc<Wake>,
    locks: Arc<Mutex<HashSet<String>>>,
    /// The one writing connection (private: see [`WriteTurn::pool`]).
    writer: SqlitePool,
    turns: Arc<tokio::sync::Mutex<()>>,
}

/// In-process stand-ins for `pg_notify`: counters that move when events
/// were appended or a checkpoint moved.
#[derive(Debug)]
struct Wake {
    events: watch::Sender<u64>,
    checkpoints: watch::Sender<u64>,
}

impl Embedded {
    /// Waits for this process's turn to write.
    pub async fn write_turn(&self) -> WriteTurn {
        WriteTurn {
            _turn: self.turns.clone().lock_owned().await,
            pool: self.writer.clone(),
        }
    }

    /// The writing pool, for the event store's repository, which
    /// `store::commands` only uses under a [`WriteTurn`] (cqrs-es takes a
    /// pool, not a connection). Nothing outside `store` can reach it.
    pub(super) fn event_store_pool(&self) -> SqlitePool {
        self.writer.clone()
    }

    /// Receivers of (events appended, checkpoint moved).
    pub fn subscribe(&self) -> (watch::Receiver<u64>, watch::Receiver<u64>) {
        (
            self.wake.events.subscribe(),
            self.wake.checkpoints.subscribe(),
        )
    }

    /// Wakes waiters after a commit (they re-read what they wait for).
    pub fn wake(&self) {
        self.wake.events.send_modify(|c| *c += 1);
        self.wake.checkpoints.send_modify(|c| *c += 1);
    }

    /// Takes the named lock if free (the stand-in for a session advisory
    /// lock); it is released when the guard drops.
    pub fn try_lock(&self, name: &str) -> Option<NamedLock> {
        let mut held = self.locks.lock().expect("lock table poisoned");
        held.insert(name.to_string()).then(|| NamedLock {
            name: name.to_string(),
            locks: self.locks.clone(),
        })
    }
}

/// A writer's turn in this process, held until it drops: the only way to
/// the embedded engine's writing connection.
#[derive(Debug)]
pub struct WriteTurn {
    _turn: tokio::sync::OwnedMutexGuard<()>,
    pool: SqlitePool,
}

impl WriteTurn {
    /// The writing pool (one connection), for as long as the turn is held.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A pool that may write: PostgreSQL's, or the embedded writer under its
/// turn. [`on_writer!`] runs a statement on it.
pub enum Writer<'a> {
    Postgres(&'a PgPool),
    Sqlite(WriteTurn),
}

/// An embedded transaction's engine and, for a writer, its turn.
#[derive(Debug)]
pub struct SqliteTx {
    pub embedded: Embedded,
    pub turn: Option<WriteTurn>,
}

/// A held [`Embedded::try_lock`].
#[derive(Debug)]
pub struct NamedLock {
    name: String,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl Drop for NamedLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.lock() {
            held.remove(&self.name);
        }
    }
}

/// A transaction on either engine. On SQLite, [`Db::begin`] waits for the
/// process's write turn and begins `IMMEDIATE`: it holds the write lock
/// from the start, so a transaction that reads, then writes, never fails on
/// a snapshot another writer moved.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>, SqliteTx),
}

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx, state) => {
                tx.commit().await?;
                drop(state.turn);
                state.embedded.wake();
                Ok(())
            }
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Tx::Postgres(_) => Engine::Postgres,
            Tx::Sqlite(..) => Engine::Sqlite,
        }
    }
}

/// Runs `$body` with `$pool` bound to the engine's pool (`&PgPool` or
/// `&SqlitePool`): the same statement text, compiled once per engine.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::db::Db::Postgres($pool) => $body,
            $crate::store::db::Db::Sqlite(embedded) => {
                let $pool = &embedded.pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's connection
/// (`&mut PgConnection` or `&mut SqliteConnection`).
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::db::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::store::db::Tx::Sqlite(tx, _) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the [`Writer`]'s pool (`&PgPool`, or
/// the embedded writing pool under its turn).
#[macro_export]
macro_rules! on_writer {
    ($writer:expr, $pool:ident => $body:expr) => {
        match $writer {
            $crate::store::db::Writer::Postgres($pool) => $body,
            $crate::store::db::Writer::Sqlite(turn) => {
                let $pool = turn.pool();
                $body
            }
        }
    };
}

impl Db {
    pub fn engine(&self) -> Engine {
        match self {
            Db::Postgres(_) => Engine::Postgres,
            Db::Sqlite(_) => Engine::Sqlite,
        }
    }

    /// `postgres` or `sqlite`, for SQL written per engine.
    pub fn pick<'a>(&self, postgres: &'a str, sqlite: &'a str) -> &'a str {
        match self {
            Db::Postgres(_) => postgres,
            Db::Sqlite(_) => sqlite,
        }
    }

    pub async fn begin(&self) -> sqlx::Result<Tx> {
        match self {
            Db::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
            Db::Sqlite(embedded) => {
                let turn = embedded.write_turn().await;
                Ok(Tx::Sqlite(
                    turn.pool().begin_with("BEGIN IMMEDIATE").await?,
                    SqliteTx {
                        embedded: embedded.clone(),
                        turn: Some(turn),
                    },
                ))
            }
        }
    }

    /// This process's turn to write on the embedded engine (PostgreSQL
    /// needs none), for an append through sqlite-es. Hold it until the
    /// write is committed.
    pub async fn write_turn(&self) -> Option<WriteTurn> {
        match self {
            Db::Postgres(_) => None,
            Db::Sqlite(embedded) => Some(embedded.write_turn().await),
        }
    }

    /// A pool to write one statement with, outside a transaction (on the
    /// embedded engine, under this process's turn until it drops).
    pub async fn writer(&self) -> Writer<'_> {
        match self {
            Db::Postgres(pool) => Writer::Postgres(pool),
            Db::Sqlite(embedded) => Writer::Sqlite(embedded.write_turn().await),
        }
    }

    /// A read-only transaction: one snapshot for several reads
    /// (PostgreSQL `REPEATABLE READ`; a deferred SQLite transaction, which
    /// reads one WAL snapshot and takes no write turn).
    pub async fn begin_read(&self) -> sqlx::Result<Tx> {
        match self {
            Db::Postgres(pool) => Ok(Tx::Postgres(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            )),
            Db::Sqlite(embedded) => Ok(Tx::Sqlite(
                embedded.pool.begin().await?,
                SqliteTx {
                    embedded: embedded.clone(),
                    turn: None,
                },
            )),
        }
    }

    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await);
    }

    /// Where the database is, for logs (no password).
    pub fn describe(&self) -> String {
        match self {
            Db::Postgres(pool) => {
                let options = pool.connect_options();
                format!(
                    "postgresql://{}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or("")
                )
            }
            Db::Sqlite(embedded) => format!("sqlite {}", embedded.path.display()),
        }
    }

    /// The newest migration applied, if any.
    pub async fn schema_version(&self) -> sqlx::Result<Option<i64>> {
        on_db!(self, pool => sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await)
    }

    /// The newest migration this build knows.
    pub fn expected_schema_version(&self) -> Option<i64> {
        let migrator = match self {
            Db::Postgres(_) => &MIGRATOR,
            Db::Sqlite(_) => &SQLITE_MIGRATOR,
        };
        migrator.iter().map(|m| m.version).max()
    }

    /// The PostgreSQL pool. For code that is PostgreSQL-only by nature
    /// (tests of the PostgreSQL log, benchmarks against hand-written SQL).
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }
}

/// Where the data lives: `DATABASE_URL` when set (a PostgreSQL URL, or
/// `sqlite://PATH`), else the embedded file in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Postgres(String),
    Sqlite(PathBuf),
}

impl Location {
    pub fn new(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(Location::Sqlite(data_dir.join(EMBEDDED_FILE))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_string()))
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                anyhow::ensure!(!path.is_empty(), "DATABASE_URL {url} names no file");
                Ok(Location::Sqlite(PathBuf::from(path)))
            }
            Some(url) => anyhow::bail!(
                "DATABASE_URL must be a postgres:// or sqlite:// URL, not {}",
                redact(url)
            ),
        }
    }
}

/// Creates the database if needed, connects, and migrates.
pub async fn open(location: &Location, options: &DbOptions) -> anyhow::Result<Db> {
    match location {
        Location::Postgres(url) => Ok(Db::Postgres(connect_and_migrate(url, options).await?)),
        Location::Sqlite(path) => open_sqlite(path, options).await,
    }
}

/// Opens a store that exists (migrating it), for the commands that write
/// to a store beside a server: they never create one, so a command run in
/// the wrong directory or against the wrong URL fails, naming where it
/// looked and how to make a store there.
pub async fn open_existing(location: &Location, options: &DbOptions) -> anyhow::Result<Db> {
    const HOW: &str = "create it with `deployd migrate` (or start `deployd serve` once), or \
                       point DEPLOYD_DATA_DIR / DATABASE_URL at the store you mean";
    match location {
        Location::Sqlite(path) => {
            anyhow::ensure!(
                path.is_file(),
                "no deployd store at {}: {HOW}",
                std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
            );
        }
        Location::Postgres(url) => {
            use sqlx::Connection;
            match sqlx::PgConnection::connect(url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                }
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                    anyhow::bail!(
                        "no deployd store at {}: the database does not exist; {HOW}",
                        redact(url)
                    );
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("connecting to {}", redact(url)))
                    )
                }
            }
        }
    }
    open(location, options).await
}

/// Opens (creating it when missing) and migrates an embedded database.
pub async fn open_sqlite(path: &Path, options: &DbOptions) -> anyhow::Result<Db> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let connect_options = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        // LIKE compares case as PostgreSQL's does
        .pragma("case_sensitive_like", "ON")
        .busy_timeout(Duration::from_secs(30));
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(register_functions)
        .connect_with(
            connect_options
                .clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full),
        )
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    SQLITE_MIGRATOR
        .run(&writer)
        .await
        .context("applying the embedded database's migrations")?;
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(2))
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(register_functions)
        .connect_with(connect_options.read_only(true))
        .await
        .with_context(|| format!("opening {} to read", path.display()))?;
    let (events, _) = watch::channel(0);
    let (checkpoints, _) = watch::channel(0);
    Ok(Db::Sqlite(Embedded {
        pool,
        path: path.to_path_buf(),
        wake: Arc::new(Wake {
            events,
            checkpoints,
        }),
        locks: Arc::default(),
        writer,
        turns: Arc::default(),
    }))
}

/// Registers deployd's SQL functions on a new embedded connection.
fn register_functions(
    conn: &mut sqlx::SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, sqlx::Result<()>> {
    Box::pin(async move {
        let mut handle = conn.lock_handle().await?;
        // SAFETY: the locked handle is live and ours for the call.
        unsafe { crate::store::sqlite_fns::register(handle.as_raw_handle()) }
            .map_err(|e| sqlx::Error::Configuration(e.into()))
    })
}

/// Creates the PostgreSQL database if needed, connects, and migrates.
pub async fn connect_and_migrate(url: &str, options: &DbOptions) -> anyhow::Result<PgPool> {
    ensure_database(url).await?;
    let pool = connect(url, options).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying the database migrations")?;
    Ok(pool)
}

/// Connects to PostgreSQL without migrating.
pub async fn connect(url: &str, options: &DbOptions) -> anyhow::Result<PgPool> {
    let mut connect_options = PgConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL is not a PostgreSQL URL: {}", redact(url)))?
        .application_name("deployd");
    if !options.statement_timeout.is_zero() {
        connect_options = connect_options.options([(
            "statement_timeout",
            options.statement_timeout.as_millis().to_string(),
        )]);
    }
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let exists = Postgres::database_exists(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    if !exists {
        if let Err(error) = Postgres::create_database(url).await {
            // Another process may have created it in the meantime.
            let now_exists = Postgres::database_exists(url).await.unwrap_or(false);
            if !now_exists {
                return Err(error).with_context(|| format!("creating {}", redact(url)));
            }
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
