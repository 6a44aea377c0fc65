//! The two engines side by side, on the same machine in the same run: the
//! embedded SQLite file and PostgreSQL, each measured against a raw INSERT
//! baseline of its own (same engine, same durability), so the figures can
//! be compared as ratios on a noisy machine.
//!
//! ```sh
//! cargo bench --bench backends
//! DEPLOYD_BENCH_CREATES=500 DEPLOYD_BENCH_ROWS=5000 cargo bench --bench backends
//! ```
//!
//! For each engine (the embedded file `deployd.db` in a temporary
//! directory; a fresh PostgreSQL database `deployd_bench_backends_<ulid>`,
//! dropped at the end):
//!
//! 1. **Creates**: the server in this process (`Application::build`,
//!    `run_worker: false`, in-process bus, rate limit off), `N` deploys
//!    created with `POST /api/deploys` (bearer token) by `C` concurrent
//!    clients, round-robin over `E` entities (one successful build each,
//!    seeded through `deployd::catalog::import`). A create answers once the
//!    `deploys` projection shows the deploy (read-your-writes), so its
//!    latency includes the projection. creates/s = successful creates ÷
//!    wall time; p50/p99 over the successful requests.
//! 2. **Lists**: the table is topped up to `M` deploys through the command
//!    path (`deployd::store::commands::Commands`, `C` concurrent tasks; one
//!    seeded deploy in ten is cancelled, so `status` has two values), the
//!    bench waits for the server's projector to show them all, then times
//!    sequential `GET /api/deploys`: the first page (`limit=50`), a deep
//!    keyset page (`limit=50&after=<cursor>`, the cursor `DEPTH` rows in,
//!    reached by following `endCursor`), and a filtered, ordered query
//!    (`status` = cancelled, `orderBy` `sequenceNumber desc`). Before the
//!    lists, PostgreSQL gets `VACUUM (ANALYZE)` (what autovacuum converges
//!    to); SQLite is measured as deployd leaves it (no
//!    `ANALYZE` ever runs), and then once more after `ANALYZE` (the row
//!    "sqlite + ANALYZE"; `DEPLOYD_BENCH_SQLITE_ANALYZE=0` skips it).
//! 3. **Baseline** (service stopped, same database, the pool `db::open`
//!    configures: SQLite WAL + `synchronous = FULL` + busy timeout 30 s,
//!    PostgreSQL defaults): single-row autocommit `INSERT`s of an event-sized
//!    JSON row into a scratch table for `INSERT_SECS`, from `C`
//!    connections (the figure the ratio uses) and from one.
//!
//! Knobs (environment):
//! - `DEPLOYD_BENCH_CREATES` (2000): `N`, creates through the API
//! - `DEPLOYD_BENCH_ROWS` (20000): `M`, deploys in the table for the lists
//! - `DEPLOYD_BENCH_CLIENTS` (8): `C`, concurrent clients, seeders and
//!   baseline connections
//! - `DEPLOYD_BENCH_ENTITIES` (64): `E`
//! - `DEPLOYD_BENCH_DEPTH` (`M`/2): rows before the deep page
//! - `DEPLOYD_BENCH_ITERS` (200): samples per list query (after 3 warm-ups)
//! - `DEPLOYD_BENCH_INSERT_SECS` (5): length of each baseline
//! - `DEPLOYD_BENCH_ENGINES` ("sqlite,postgres")
//! - `DEPLOYD_TEST_DATABASE_URL` (postgres://root@127.0.0.1:5432/postgres):
//!   the PostgreSQL server (its database name is replaced)
//! - `DEPLOYD_BENCH_LOG` ("warn"): the server's log filter (to stderr)
//!
//! The server's warnings and errors are printed, and the lines that say
//! "database is locked" or "database is busy" are counted per engine.

#[path = "common/mod.rs"]
mod common;
use common::{knob, loadavg, percentiles, server_url};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deployd::api::ApiSettings;
use deployd::domain::deploy::{CreateDeploy, DeployCommand, Origin};
use deployd::domain::ids::DeployId;
use deployd::domain::{Target, Trigger};
use deployd::startup::{Application, Settings, TargetSettings};
use deployd::store::commands::{CommandMeta, Commands};
use deployd::store::db::{self, Db, DbOptions, Location};
use deployd::worker::WorkerSettings;
use futures::StreamExt;
use serde_json::{json, Value};

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
/// Connections of the server's pool and of the bench's own.
const POOL: u32 = 16;
const PAGE: usize = 50;
const FILTER: &str = r#"{"status":{"eq":"cancelled"}}"#;
const ORDER_BY: &str = r#"[{"sequenceNumber":"desc"}]"#;

/// Server log lines seen, and those about SQLite's lock.
static LOG_LINES: AtomicUsize = AtomicUsize::new(0);
static LOCKED_LINES: AtomicUsize = AtomicUsize::new(0);

/// stderr, counting what passes through (one write per log line).
struct CountingStderr;

impl std::io::Write for CountingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        LOG_LINES.fetch_add(text.matches('\n').count().max(1), Ordering::Relaxed);
        LOCKED_LINES.fetch_add(
            text.matches("database is locked").count() + text.matches("database is busy").count(),
            Ordering::Relaxed,
        );
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

struct Knobs {
    creates: usize,
    rows: usize,
    clients: usize,
    entities: usize,
    depth: usize,
    iters: usize,
    insert_secs: f64,
    sqlite_analyze: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }
}

type P = (f64, f64);

/// List latencies (ms, p50/p99) of one read-model state.
#[derive(Debug, Clone, Copy)]
struct Lists {
    first: P,
    deep: P,
    filtered: P,
}

#[derive(Debug, Default)]
struct Figures {
    engine: &'static str,
    created: usize,
    create_failures: BTreeMap<String, usize>,
    creates_per_s: f64,
    create_ms: P,
    seeded: usize,
    seed_failures: BTreeMap<String, usize>,
    seed_per_s: f64,
    catch_up_s: f64,
    rows: i64,
    cancelled: i64,
    filtered_total: i64,
    depth: usize,
    lists: Option<Lists>,
    lists_analyzed: Option<Lists>,
    inserts_per_s: f64,
    inserts_one_per_s: f64,
    insert_failures: usize,
    log_lines: usize,
    locked_lines: usize,
    load_before: String,
    load_after: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = std::env::var("DEPLOYD_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(|| CountingStderr)
        .with_ansi(false)
        .init();

    let rows: usize = knob("DEPLOYD_BENCH_ROWS", 20_000);
    let knobs = Knobs {
        creates: knob("DEPLOYD_BENCH_CREATES", 2000),
        rows,
        clients: knob("DEPLOYD_BENCH_CLIENTS", 8usize).max(1),
        entities: knob("DEPLOYD_BENCH_ENTITIES", 64usize).max(1),
        depth: knob("DEPLOYD_BENCH_DEPTH", rows / 2),
        iters: knob("DEPLOYD_BENCH_ITERS", 200usize).max(1),
        insert_secs: knob("DEPLOYD_BENCH_INSERT_SECS", 5.0),
        sqlite_analyze: knob("DEPLOYD_BENCH_SQLITE_ANALYZE", 1u8) != 0,
    };
    let engines: Vec<Kind> = std::env::var("DEPLOYD_BENCH_ENGINES")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .filter_map(|e| match e.trim() {
            "sqlite" => Some(Kind::Sqlite),
            "postgres" | "postgresql" => Some(Kind::Postgres),
            _ => None,
        })
        .collect();
    let load_start = loadavg();
    eprintln!(
        "backends bench: {} creates by {} clients over {} entities; lists over {} deploys \
         (deep page {} rows in, {} samples each); baselines {} s; engines {:?}; load average {}",
        knobs.creates,
        knobs.clients,
        knobs.entities,
        knobs.rows,
        knobs.depth,
        knobs.iters,
        knobs.insert_secs,
        engines,
        load_start
    );

    let mut all = Vec::new();
    for &kind in &engines {
        match run(kind, &knobs).await {
            Ok(figures) => {
                print_details(&figures);
                all.push(figures);
            }
            Err(error) => eprintln!("[{}] failed: {error:#}", kind.name()),
        }
    }
    let load_end = loadavg();

    println!();
    println!(
        "load average at start {load_start}, at end {load_end}; {} creates by {} clients, \
         lists over {} deploys (deep page {} rows in), limit {PAGE}",
        knobs.creates, knobs.clients, knobs.rows, knobs.depth
    );
    println!();
    print_table(&all);
    Ok(())
}

fn p(v: P) -> String {
    format!("{:.1} / {:.1}", v.0, v.1)
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn pr(a: P, b: P) -> String {
    format!("{} / {}", ratio(a.0, b.0), ratio(a.1, b.1))
}

fn print_table(all: &[Figures]) {
    println!(
        "| engine | creates/s | create p50 / p99 ms | raw inserts/s | ratio | list first page p50 / p99 ms | deep page p50 / p99 ms | filtered p50 / p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in all {
        let lists = |l: Option<Lists>| match l {
            Some(l) => format!("{} | {} | {}", p(l.first), p(l.deep), p(l.filtered)),
            None => "– | – | –".into(),
        };
        println!(
            "| {} | {:.0} | {} | {:.0} | {:.3} | {} |",
            f.engine,
            f.creates_per_s,
            p(f.create_ms),
            f.inserts_per_s,
            f.creates_per_s / f.inserts_per_s,
            lists(f.lists)
        );
        if let Some(analyzed) = f.lists_analyzed {
            println!(
                "| {} + ANALYZE | | | | | {} |",
                f.engine,
                lists(Some(analyzed))
            );
        }
    }
    let sqlite = all.iter().find(|f| f.engine == "sqlite");
    let postgres = all.iter().find(|f| f.engine == "postgres");
    if let (Some(s), Some(pg)) = (sqlite, postgres) {
        let lists = match (s.lists, pg.lists) {
            (Some(a), Some(b)) => format!(
                "{} | {} | {}",
                pr(a.first, b.first),
                pr(a.deep, b.deep),
                pr(a.filtered, b.filtered)
            ),
            _ => "– | – | –".into(),
        };
        println!(
            "| SQLite / PostgreSQL | {} | {} | {} | {} | {} |",
            ratio(s.creates_per_s, pg.creates_per_s),
            pr(s.create_ms, pg.create_ms),
            ratio(s.inserts_per_s, pg.inserts_per_s),
            ratio(
                s.creates_per_s / s.inserts_per_s,
                pg.creates_per_s / pg.inserts_per_s
            ),
            lists
        );
    }
}

fn print_details(f: &Figures) {
    let failures = |m: &BTreeMap<String, usize>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{v}× {k}"))
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    println!();
    println!(
        "== {} (load average {} → {}) ==",
        f.engine, f.load_before, f.load_after
    );
    println!(
        "  API creates          {} ok, {:.1}/s, p50 {:.1} ms p99 {:.1} ms; failures: {}",
        f.created,
        f.creates_per_s,
        f.create_ms.0,
        f.create_ms.1,
        failures(&f.create_failures)
    );
    println!(
        "  seeded (commands)    {} at {:.0}/s; failures: {}; projection caught up {:.1} s after",
        f.seeded,
        f.seed_per_s,
        failures(&f.seed_failures),
        f.catch_up_s
    );
    println!(
        "  read model           {} deploys, {} cancelled; filtered total {}; deep page {} rows in",
        f.rows, f.cancelled, f.filtered_total, f.depth
    );
    let lists = |label: &str, l: &Option<Lists>| {
        if let Some(l) = l {
            println!(
                "  lists{label:<15} first {}  deep {}  filtered {} ms (p50 / p99)",
                p(l.first),
                p(l.deep),
                p(l.filtered)
            );
        }
    };
    lists("", &f.lists);
    lists(" after ANALYZE", &f.lists_analyzed);
    println!(
        "  raw INSERT baseline  {:.0} rows/s on the clients' connections, {:.0} rows/s on one; \
         {} failed inserts",
        f.inserts_per_s, f.inserts_one_per_s, f.insert_failures
    );
    println!(
        "  server log           {} warning/error lines, {} saying the database is locked/busy",
        f.log_lines, f.locked_lines
    );
}

/// One engine, from an empty database to its dropped database.
async fn run(kind: Kind, knobs: &Knobs) -> anyhow::Result<Figures> {
    // deployd's own files in `data`, the builds beside it in `builds` (a
    // build may never be published from the data directory).
    let base = tempfile::tempdir()?;
    let data_dir = base.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let (database_url, database) = match kind {
        Kind::Sqlite => (None, None),
        Kind::Postgres => {
            let name = format!(
                "deployd_bench_backends_{}",
                ulid::Ulid::generate().to_string().to_lowercase()
            );
            let mut url = url::Url::parse(&server_url()).context("DEPLOYD_TEST_DATABASE_URL")?;
            url.set_path(&name);
            (Some(url.to_string()), Some(name))
        }
    };
    let location = Location::new(database_url.as_deref(), &data_dir)?;
    let options = DbOptions {
        max_connections: POOL,
        ..DbOptions::default()
    };
    let result = async {
        let db = db::open(&location, &options).await?;
        let result = measure(kind, knobs, &db, database_url.clone(), &data_dir).await;
        db.close().await;
        result
    }
    .await;
    if let Some(name) = database {
        match sqlx::PgPool::connect(&server_url()).await {
            Ok(pool) => {
                if let Err(e) = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&pool)
                    .await
                {
                    eprintln!("[postgres] dropping {name} failed: {e}");
                }
                pool.close().await;
            }
            Err(e) => eprintln!("[postgres] dropping {name} failed: {e}"),
        }
    }
    result
}

/// A deploy's build, seeded.
#[derive(Clone)]
struct Seeded {
    entity: String,
    version: String,
    build: String,
}

async fn measure(
    kind: Kind,
    knobs: &Knobs,
    db: &Db,
    database_url: Option<String>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Figures> {
    let engine = kind.name();
    let mut figures = Figures {
        engine,
        load_before: loadavg(),
        ..Figures::default()
    };
    let (log_lines, locked_lines) = (
        LOG_LINES.load(Ordering::Relaxed),
        LOCKED_LINES.load(Ordering::Relaxed),
    );
    let token = deployd::store::tokens::create(db, Some("bench"), &[WS.parse()?])
        .await?
        .1;
    let builds = seed_catalog(db, data_dir, knobs.entities).await?;

    let settings = Settings {
        database_url,
        db: DbOptions {
            max_connections: POOL,
            ..DbOptions::default()
        },
        nats_url: None,
        nats_prefix: "deployd".into(),
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        artifact_roots: vec![builds_dir(data_dir)],
        artifact_store: None,
        public_url: None,
        api: ApiSettings {
            rate_limit_per_second: 0,
            ..ApiSettings::default()
        },
        run_worker: false,
        worker: WorkerSettings::default(),
        target: TargetSettings::Local,
        webhooks: Default::default(),
    };
    let app = Application::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let served = serve_phase(kind, knobs, db, &address, &token, &builds, &mut figures).await;
    shutdown.cancel();
    let stopped = server.await;
    served?;
    stopped??;

    // The baselines, with the service stopped.
    let (rate, failed) = insert_baseline(db, knobs.clients, knobs.insert_secs).await?;
    figures.inserts_per_s = rate;
    figures.insert_failures += failed;
    let (rate, failed) = insert_baseline(db, 1, knobs.insert_secs).await?;
    figures.inserts_one_per_s = rate;
    figures.insert_failures += failed;

    figures.log_lines = LOG_LINES.load(Ordering::Relaxed) - log_lines;
    figures.locked_lines = LOCKED_LINES.load(Ordering::Relaxed) - locked_lines;
    figures.load_after = loadavg();
    Ok(figures)
}

/// Entities, each with one successful build, through the catalog import.
/// Where the builds are: beside the data directory.
fn builds_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir
        .parent()
        .expect("the data directory is in the run's directory")
        .join("builds")
}

async fn seed_catalog(
    db: &Db,
    data_dir: &std::path::Path,
    entities: usize,
) -> anyhow::Result<Vec<Seeded>> {
    let dir = builds_dir(data_dir).join("site");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("index.html"), "<h1>bench</h1>")?;
    let mut documents = String::new();
    let mut seeded = Vec::new();
    for e in 0..entities {
        let s = Seeded {
            entity: format!("app_{}", ulid::Ulid::generate()),
            version: format!("ver_{}", ulid::Ulid::generate()),
            build: format!("bld_{}", ulid::Ulid::generate()),
        };
        let entity = json!({
            "type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
            "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": WS,
            "entity": {"id": s.entity, "kind": "app", "name": format!("bench-{e}"),
                       "defaultVersionId": s.version, "autoDeploy": false}
        });
        let built = json!({
            "type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
            "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": WS,
            "build": {"id": s.build, "entityId": s.entity, "versionId": s.version,
                      "artifactDir": dir.to_str().context("a UTF-8 temporary path")?,
                      "commitSha": "abc123", "branch": "main"}
        });
        documents.push_str(&format!("{entity}\n{built}\n"));
        seeded.push(s);
    }
    let feed = deployd::catalog::CatalogFeed::new(
        Arc::new(Commands::new(db.clone())),
        deployd::hosting::artifacts::ArtifactRoots::new(vec![builds_dir(data_dir)], data_dir),
    );
    let report = deployd::catalog::import(&feed, documents.as_bytes(), std::io::sink()).await?;
    anyhow::ensure!(report.rejected == 0, "seeding rejected documents");
    Ok(seeded)
}

/// What one failed request or command was, for counting alike failures.
fn failure_key(text: &str) -> String {
    let text: String = text.chars().take(160).collect();
    text.replace('\n', " ")
}

/// Creates, seeding and lists, with the server running.
async fn serve_phase(
    kind: Kind,
    knobs: &Knobs,
    db: &Db,
    address: &str,
    token: &str,
    builds: &[Seeded],
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let engine = kind.name();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(knobs.clients)
        .build()?;

    // 1. Creates through the API (a few first, to open connections).
    let create = |i: usize| {
        let (http, token) = (http.clone(), token.to_string());
        let build = builds[i % builds.len()].build.clone();
        let url = format!("{address}/api/deploys");
        async move {
            let t = Instant::now();
            let outcome = async {
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "buildId": build }))
                    .send()
                    .await
                    .map_err(|e| format!("request: {e}"))?;
                let status = response.status();
                let body = response.text().await.map_err(|e| format!("body: {e}"))?;
                if status == reqwest::StatusCode::CREATED {
                    Ok(())
                } else {
                    Err(format!("{status}: {body}"))
                }
            }
            .await;
            (t.elapsed().as_secs_f64() * 1000.0, outcome)
        }
    };
    let warm: Vec<_> = futures::stream::iter(0..knobs.clients)
        .map(create)
        .buffer_unordered(knobs.clients)
        .collect()
        .await;
    let mut created = warm.iter().filter(|(_, o)| o.is_ok()).count();
    let started = Instant::now();
    let outcomes: Vec<(f64, Result<(), String>)> =
        futures::stream::iter(knobs.clients..knobs.clients + knobs.creates)
            .map(create)
            .buffer_unordered(knobs.clients)
            .collect()
            .await;
    let wall = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for (ms, outcome) in outcomes
        .into_iter()
        .chain(warm.into_iter().map(|w| (f64::NAN, w.1)))
    {
        match outcome {
            Ok(()) if ms.is_finite() => latencies.push(ms),
            Ok(()) => {}
            Err(e) => *figures.create_failures.entry(failure_key(&e)).or_default() += 1,
        }
    }
    figures.created = latencies.len();
    created += latencies.len();
    figures.creates_per_s = latencies.len() as f64 / wall;
    figures.create_ms = percentiles(&mut latencies);
    eprintln!(
        "[{engine}] {} creates in {wall:.2} s: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
        figures.created,
        figures.creates_per_s,
        figures.create_ms.0,
        figures.create_ms.1,
        figures.create_failures.values().sum::<usize>()
    );

    // 2. Top the table up through the command path.
    let commands = Arc::new(Commands::new(db.clone()));
    let to_seed = knobs.rows.saturating_sub(created);
    let seeding = Instant::now();
    let seeded: Vec<Result<bool, String>> = futures::stream::iter(0..to_seed)
        .map(|i| {
            let (commands, s) = (commands.clone(), builds[i % builds.len()].clone());
            async move {
                let id = DeployId::generate();
                let parse = |e: deployd::domain::ids::IdError| e.to_string();
                let command = DeployCommand::Create(CreateDeploy {
                    deploy_id: id,
                    workspace_id: WS.parse().map_err(parse)?,
                    entity_id: s.entity.parse().map_err(parse)?,
                    build_id: s.build.parse().map_err(parse)?,
                    version_id: Some(s.version.parse().map_err(parse)?),
                    trigger: Trigger::Manual,
                    target: Target::Production,
                    origin: Origin::Build,
                    reason: None,
                    source_event_id: None,
                    metadata: serde_json::Map::new(),
                    created_by: "bench".into(),
                    at: deployd::domain::time::now(),
                });
                let meta = CommandMeta::system(format!("bench:seed:{i}"));
                commands
                    .deploy(&id.to_string(), command, &meta)
                    .await
                    .map_err(|e| format!("create: {e}"))?;
                if i % 10 == 0 {
                    let cancel = DeployCommand::Cancel {
                        reason: Some("bench".into()),
                        by: "bench".into(),
                        at: deployd::domain::time::now(),
                    };
                    commands
                        .deploy(&id.to_string(), cancel, &meta)
                        .await
                        .map_err(|e| format!("cancel: {e}"))?;
                    return Ok(true);
                }
                Ok(false)
            }
        })
        .buffer_unordered(knobs.clients)
        .collect()
        .await;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let mut cancelled = 0i64;
    for outcome in seeded {
        match outcome {
            Ok(c) => {
                figures.seeded += 1;
                cancelled += i64::from(c);
            }
            Err(e) => *figures.seed_failures.entry(failure_key(&e)).or_default() += 1,
        }
    }
    figures.seed_per_s = figures.seeded as f64 / seed_secs;
    eprintln!(
        "[{engine}] seeded {} deploys through the command path in {seed_secs:.1} s, {} failed",
        figures.seeded,
        figures.seed_failures.values().sum::<usize>()
    );

    // Wait for the server's projector to show every deploy.
    let expected = (created + figures.seeded) as i64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (rows, done): (i64, i64) = deployd::on_db!(db, pool => sqlx::query_as(
            "SELECT count(*), count(CASE WHEN status = 'cancelled' THEN 1 END) FROM deploys",
        )
        .fetch_one(pool)
        .await)?;
        if rows >= expected && done >= cancelled {
            figures.rows = rows;
            figures.cancelled = done;
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "[{engine}] the projection shows {rows} of {expected} deploys after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    figures.catch_up_s = seeding.elapsed().as_secs_f64() - seed_secs;
    eprintln!(
        "[{engine}] projection shows {} deploys ({} cancelled) {:.1} s after seeding",
        figures.rows, figures.cancelled, figures.catch_up_s
    );
    if let Some(pool) = db.postgres() {
        sqlx::query("VACUUM (ANALYZE)").execute(pool).await?;
    }

    // 3. Lists.
    figures.depth = knobs.depth.min(figures.rows.max(0) as usize);
    let lister = Lister {
        http: http.clone(),
        address: address.to_string(),
        token: token.to_string(),
        iters: knobs.iters,
    };
    figures.lists = Some(lister.all(figures, engine).await?);
    if kind == Kind::Sqlite && knobs.sqlite_analyze {
        deployd::on_db!(db, pool => sqlx::query("ANALYZE").execute(pool).await.map(|_| ()))?;
        figures.lists_analyzed = Some(lister.all(figures, engine).await?);
    }
    Ok(())
}

struct Lister {
    http: reqwest::Client,
    address: String,
    token: String,
    iters: usize,
}

impl Lister {
    async fn get(&self, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/api/deploys", self.address))
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status == reqwest::StatusCode::OK,
            "list answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(serde_json::from_slice(&body)?)
    }

    /// 3 warm-ups, then `iters` sequential requests; ms p50/p99.
    async fn time(&self, query: &[(&str, &str)]) -> anyhow::Result<P> {
        for _ in 0..3 {
            self.get(query).await?;
        }
        let mut samples = Vec::with_capacity(self.iters);
        for _ in 0..self.iters {
            let t = Instant::now();
            self.get(query).await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(percentiles(&mut samples))
    }

    async fn all(&self, figures: &mut Figures, engine: &str) -> anyhow::Result<Lists> {
        let limit = PAGE.to_string();
        let first_query = [("limit", limit.as_str())];
        let page = self.get(&first_query).await?;
        anyhow::ensure!(
            page["data"].as_array().map(Vec::len) == Some(PAGE.min(figures.rows as usize)),
            "the first page is not {PAGE} rows"
        );
        let first = self.time(&first_query).await?;

        // The cursor `depth` rows in, by following endCursor (100 a page).
        let mut cursor: Option<String> = None;
        let mut walked = 0;
        while walked < figures.depth {
            let step = (figures.depth - walked).min(100).to_string();
            let mut query = vec![("limit", step.as_str())];
            if let Some(c) = &cursor {
                query.push(("after", c.as_str()));
            }
            let page = self.get(&query).await?;
            let rows = page["data"].as_array().map(Vec::len).unwrap_or(0);
            anyhow::ensure!(rows > 0, "the walk ended after {walked} rows");
            walked += rows;
            cursor = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
        }
        let mut deep_query = vec![("limit", limit.as_str())];
        if let Some(c) = &cursor {
            deep_query.push(("after", c.as_str()));
        }
        let page = self.get(&deep_query).await?;
        anyhow::ensure!(
            page["data"].as_array().is_some_and(|d| !d.is_empty()),
            "the deep page is empty"
        );
        let deep = self.time(&deep_query).await?;

        let filtered_query = [
            ("limit", limit.as_str()),
            ("filter", FILTER),
            ("orderBy", ORDER_BY),
        ];
        let page = self.get(&filtered_query).await?;
        figures.filtered_total = page["pageInfo"]["total"].as_i64().unwrap_or(-1);
        let filtered = self.time(&filtered_query).await?;
        eprintln!(
            "[{engine}] lists: first {} deep {} filtered {} ms (p50 / p99)",
            p(first),
            p(deep),
            p(filtered)
        );
        Ok(Lists {
            first,
            deep,
            filtered,
        })
    }
}

/// A row about the size of a stored event (~700 bytes of JSON).
fn event_sized_payload() -> Value {
    json!({
        "eventId": "evt_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "aggregateType": "Deploy",
        "aggregateId": "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "sequence": 3,
        "type": "StepStarted",
        "metadata": {"actor": "worker", "requestId": "worker:1234:01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
                     "correlationId": "req_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"},
        "data": {"deployId": "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", "step": "prepare",
                 "startedAt": "2026-11-27T10:00:00.123456Z", "attempt": 1,
                 "note": "x".repeat(300)}
    })
}

/// Single-row autocommit INSERTs from `connections` connections of the
/// pool `db::open` made, for `secs`, into a scratch table; rows/s and the
/// number of failed inserts (counted, not retried).
async fn insert_baseline(db: &Db, connections: usize, secs: f64) -> anyhow::Result<(f64, usize)> {
    let create = db.pick(
        "CREATE TABLE bench_scratch (id bigserial PRIMARY KEY, payload jsonb NOT NULL, \
         recorded_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE bench_scratch (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, \
         recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now')))",
    );
    let insert = db.pick(
        "INSERT INTO bench_scratch (payload) VALUES ($1)",
        "INSERT INTO bench_scratch (payload) VALUES (?1)",
    );
    deployd::on_writer!(db.writer().await, pool => sqlx::query(create).execute(pool).await.map(|_| ()))?;
    let payload = event_sized_payload();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (db, payload) = (db.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let (mut rows, mut failed) = (0usize, 0usize);
            deployd::on_writer!(db.writer().await, pool => {
                let mut conn = pool.acquire().await?;
                while Instant::now() < deadline {
                    match sqlx::query(insert).bind(&payload).execute(&mut *conn).await {
                        Ok(_) => rows += 1,
                        Err(e) => {
                            if failed == 0 {
                                eprintln!("baseline insert failed: {e}");
                            }
                            failed += 1;
                        }
                    }
                }
            });
            anyhow::Ok((rows, failed))
        }));
    }
    let (mut rows, mut failed) = (0, 0);
    for task in tasks {
        let (r, f) = task.await??;
        rows += r;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    deployd::on_db!(db, pool => sqlx::query("DROP TABLE bench_scratch")
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok((rows as f64 / elapsed, failed))
}
