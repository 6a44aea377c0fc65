//! Saga throughput, end to end: deploys completed per second with N
//! `deployd worker` processes, the delay from commit to NATS publish and
//! from commit to the worker's first step, beside two baselines measured in
//! the same run: raw single-row INSERTs into PostgreSQL and raw JetStream
//! publishes.
//!
//! ```sh
//! cargo bench --bench saga
//! DEPLOYD_BENCH_DEPLOYS=600 DEPLOYD_BENCH_WORKERS=1,2,4 cargo bench --bench saga
//! ```
//!
//! Knobs (environment):
//! - `DEPLOYD_BENCH_DEPLOYS` (300): deploys per worker count
//! - `DEPLOYD_BENCH_WORKERS` ("1,2,4"): the worker counts to run
//! - `DEPLOYD_BENCH_ENTITIES` (60): entities the deploys are spread over
//!   (one entity's deploys run one at a time)
//! - `DEPLOYD_BENCH_CLIENTS` (16): concurrent `POST /api/deploys`
//! - `DEPLOYD_BENCH_RATE` (0): offered deploys per second (open loop, for
//!   delays below saturation); 0 creates them as fast as the clients go
//! - `DEPLOYD_BENCH_INSERT_SECS` (5): length of the INSERT baseline
//! - `DEPLOYD_BENCH_PUBLISHES` (20000): messages of the JetStream baseline
//! - `DEPLOYD_TEST_DATABASE_URL` (postgres://root@127.0.0.1:5432/postgres),
//!   `NATS_URL` (nats://127.0.0.1:4222)
//!
//! Every other `DEPLOYD_*` variable (e.g. `DEPLOYD_WORKER_CONCURRENCY`,
//! `DEPLOYD_SWEEP_INTERVAL_MS`) reaches the worker processes unchanged.
//!
//! Each worker count gets a fresh database (dropped at the end) and its own
//! NATS prefix `bench<ulid>` (streams deleted at the end). The server runs
//! in this process (`Application::build`, `run_worker: false`: API,
//! projectors, relay); the workers are `deployd worker` child processes.

#[path = "common/mod.rs"]
mod common;
use common::{knob, percentiles, server_url};

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use async_nats::HeaderMap;
use deployd::api::ApiSettings;
use deployd::startup::{Application, Settings, TargetSettings};
use deployd::store::db::DbOptions;
use deployd::worker::WorkerSettings;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
const FILES_PER_BUILD: usize = 10;
/// Connections of the server's pool (API, projectors, relay).
const SERVER_POOL: u32 = 16;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn new_name(kind: &str) -> String {
    format!(
        "{kind}{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    )
}

/// What one worker count measured.
#[derive(Debug, Default, Clone)]
struct Figures {
    workers: usize,
    deploys: usize,
    entities: usize,
    completed: usize,
    seconds: f64,
    deploys_per_s: f64,
    creates_per_s: f64,
    events: i64,
    events_per_s: f64,
    publish_p50_ms: f64,
    publish_p99_ms: f64,
    stored_p50_ms: f64,
    stored_p99_ms: f64,
    first_step_p50_ms: f64,
    first_step_p99_ms: f64,
    entity_first_p50_ms: f64,
    entity_first_p99_ms: f64,
    entity_firsts: usize,
    service_p50_ms: f64,
    service_p99_ms: f64,
    connections: usize,
    inserts_per_s: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deploys: usize = knob("DEPLOYD_BENCH_DEPLOYS", 300);
    let entities: usize = knob("DEPLOYD_BENCH_ENTITIES", 60);
    let clients: usize = knob("DEPLOYD_BENCH_CLIENTS", 16);
    let rate: f64 = knob("DEPLOYD_BENCH_RATE", 0.0);
    let insert_secs: f64 = knob("DEPLOYD_BENCH_INSERT_SECS", 5.0);
    let publishes: usize = knob("DEPLOYD_BENCH_PUBLISHES", 20_000);
    let workers: Vec<usize> = std::env::var("DEPLOYD_BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let binary = env!("CARGO_BIN_EXE_deployd");
    anyhow::ensure!(
        std::path::Path::new(binary).exists(),
        "the deployd binary is missing at {binary}; `cargo bench` builds it"
    );
    eprintln!(
        "saga bench: {deploys} deploys over {entities} entities ({FILES_PER_BUILD}-file builds), \
         {clients} API clients, workers {workers:?}"
    );

    let publish_rate = jetstream_baseline(publishes).await?;
    eprintln!("raw JetStream publish + PubAck (batches of 500): {publish_rate:.0} msg/s");

    let mut all = Vec::new();
    for &n in &workers {
        let figures = run(n, deploys, entities, clients, rate, insert_secs).await?;
        print_figures(&figures, publish_rate);
        all.push(figures);
    }

    println!();
    println!(
        "JetStream baseline: {publish_rate:.0} publishes/s (publish + PubAck, batches of 500, {publishes} messages)"
    );
    println!();
    println!("| workers | deploys | deploys/s | events/s | commit→JetStream p50 / p99 | commit→subscriber p50 / p99 | commit→first step p50 / p99 | started→completed p50 | PG conns | raw INSERT/s | events/s ÷ INSERT/s | events/s ÷ publish/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &all {
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} ms | {} | {:.0} | {:.3} | {:.3} |",
            f.workers,
            f.completed,
            f.deploys_per_s,
            f.events_per_s,
            f.stored_p50_ms,
            f.stored_p99_ms,
            f.publish_p50_ms,
            f.publish_p99_ms,
            f.first_step_p50_ms,
            f.first_step_p99_ms,
            f.service_p50_ms,
            f.connections,
            f.inserts_per_s,
            f.events_per_s / f.inserts_per_s,
            f.events_per_s / publish_rate,
        );
    }
    Ok(())
}

fn print_figures(f: &Figures, publish_rate: f64) {
    println!();
    println!("== {} worker process(es) ==", f.workers);
    println!(
        "  deploys completed        {} of {} over {} entities",
        f.completed, f.deploys, f.entities
    );
    println!("  wall time                {:.2} s", f.seconds);
    println!("  deploys/s end to end     {:.1}", f.deploys_per_s);
    println!("  API creates/s            {:.1}", f.creates_per_s);
    println!(
        "  events appended          {} ({:.0}/s during the run)",
        f.events, f.events_per_s
    );
    println!(
        "  commit → NATS publish    p50 {:.1} ms  p99 {:.1} ms",
        f.publish_p50_ms, f.publish_p99_ms
    );
    println!(
        "    (to JetStream's stored timestamp: p50 {:.1} ms  p99 {:.1} ms)",
        f.stored_p50_ms, f.stored_p99_ms
    );
    println!(
        "  commit → first step      p50 {:.1} ms  p99 {:.1} ms",
        f.first_step_p50_ms, f.first_step_p99_ms
    );
    println!(
        "    (first deploy of each entity, {} of them: p50 {:.1} ms  p99 {:.1} ms)",
        f.entity_firsts, f.entity_first_p50_ms, f.entity_first_p99_ms
    );
    println!(
        "  started → completed      p50 {:.1} ms  p99 {:.1} ms (one deploy's run)",
        f.service_p50_ms, f.service_p99_ms
    );
    println!(
        "  raw INSERT baseline      {:.0} rows/s on {} connections (events/s ÷ that = {:.3})",
        f.inserts_per_s,
        f.connections,
        f.events_per_s / f.inserts_per_s
    );
    println!(
        "  raw publish baseline     {:.0} msg/s (events/s ÷ that = {:.3}; deploys/s ÷ that = {:.4})",
        publish_rate,
        f.events_per_s / publish_rate,
        f.deploys_per_s / publish_rate
    );
}

/// When JetStream stored a message, from its ack subject
/// (`$JS.ACK.[<domain>.<hash>.]<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending>[.<token>]`).
fn stored_at(reply: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let tokens: Vec<&str> = reply.split('.').collect();
    let at = match tokens.len() {
        9 => 7,
        n if n >= 11 => 9,
        _ => return None,
    };
    let nanos: i64 = tokens.get(at)?.parse().ok()?;
    Some(chrono::DateTime::from_timestamp_nanos(nanos))
}

/// Publishes `count` event-sized messages to a scratch stream the way the
/// relay does (publish a batch, then await every PubAck); returns msg/s.
async fn jetstream_baseline(count: usize) -> anyhow::Result<f64> {
    let prefix = new_name("bench");
    let client = async_nats::connect(nats_url()).await?;
    let js = jetstream::new(client);
    let stream_name = format!("{prefix}_scratch");
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{prefix}.scratch.>")],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let body = bytes_of_event();
    let started = Instant::now();
    let result: anyhow::Result<()> = async {
        let mut sent = 0;
        while sent < count {
            let batch = (count - sent).min(500);
            let mut acks = Vec::with_capacity(batch);
            for i in 0..batch {
                let mut headers = HeaderMap::new();
                let id = format!("evt_{}", ulid::Ulid::generate());
                headers.insert("Nats-Msg-Id", id.as_str());
                headers.insert("Deployd-Position", (sent + i).to_string().as_str());
                acks.push(
                    js.publish_with_headers(
                        format!("{prefix}.scratch.{WS}.Deploy.StepStarted"),
                        headers,
                        body.clone().into(),
                    )
                    .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
            sent += batch;
        }
        Ok(())
    }
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = js.delete_stream(&stream_name).await;
    result?;
    Ok(count as f64 / elapsed)
}

/// A message about the size of a published event (~700 bytes).
fn bytes_of_event() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "eventId": "evt_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "position": 123456,
        "workspaceId": WS,
        "aggregateType": "Deploy",
        "aggregateId": "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "sequence": 3,
        "type": "StepStarted",
        "version": "1.0",
        "recordedAt": "2026-11-27T10:00:00.123456Z",
        "metadata": {"actor": "worker", "requestId": "worker:1234:01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
                     "correlationId": "req_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
                     "causationId": "req_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"},
        "data": {"deployId": "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", "step": "prepare",
                 "startedAt": "2026-11-27T10:00:00.123456Z", "attempt": 1,
                 "note": "x".repeat(200)}
    }))
    .expect("json")
}

/// Single-row INSERTs (autocommit, one per statement) from `connections`
/// connections for `secs` seconds into a scratch table; returns rows/s.
async fn insert_baseline(database_url: &str, connections: usize, secs: f64) -> anyhow::Result<f64> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections as u32)
        .connect(database_url)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_scratch (id bigserial PRIMARY KEY, payload jsonb NOT NULL, \
         recorded_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let payload: Value = serde_json::from_slice(&bytes_of_event())?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (pool, payload) = (pool.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            let mut rows = 0u64;
            while Instant::now() < deadline {
                sqlx::query("INSERT INTO bench_scratch (payload) VALUES ($1)")
                    .bind(&payload)
                    .execute(&mut *conn)
                    .await?;
                rows += 1;
            }
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0;
    for task in tasks {
        rows += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_scratch")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(rows as f64 / elapsed)
}

/// Everything one worker count sets up, torn down by [`Rig::stop`].
struct Rig {
    database: String,
    database_url: String,
    prefix: String,
    data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    workers: Vec<Child>,
}

impl Rig {
    async fn stop(mut self) {
        for mut child in self.workers.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Ok(client) = async_nats::connect(nats_url()).await {
            let js = jetstream::new(client);
            for suffix in ["catalog", "events"] {
                let _ = js.delete_stream(format!("{}_{suffix}", self.prefix)).await;
            }
        }
        if let Ok(pool) = PgPool::connect(&server_url()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .execute(&pool)
            .await;
        }
    }
}

async fn run(
    n: usize,
    deploys: usize,
    entities: usize,
    clients: usize,
    rate: f64,
    insert_secs: f64,
) -> anyhow::Result<Figures> {
    let database = new_name("deployd_bench_");
    let mut url = url::Url::parse(&server_url()).context("DEPLOYD_TEST_DATABASE_URL")?;
    url.set_path(&database);
    let database_url = url.to_string();
    let prefix = new_name("bench");
    let data_dir = tempfile::tempdir()?;
    let settings = Settings {
        database_url: Some(database_url.clone()),
        db: DbOptions {
            max_connections: SERVER_POOL,
            ..DbOptions::default()
        },
        nats_url: Some(nats_url()),
        nats_prefix: prefix.clone(),
        listen: "127.0.0.1:0".into(),
        // deployd's own files and the builds, side by side (a build may
        // never be published from the data directory).
        data_dir: data_dir.path().join("data"),
        artifact_roots: vec![data_dir.path().join("builds")],
        artifact_store: None,
        public_url: None,
        api: ApiSettings::default(),
        run_worker: false,
        worker: WorkerSettings::default(),
        target: TargetSettings::Local,
        webhooks: Default::default(),
    };
    let app = Application::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let mut rig = Rig {
        database,
        database_url,
        prefix,
        data_dir,
        shutdown: app.shutdown_token(),
        server: Some(tokio::spawn(app.run_until_stopped())),
        workers: Vec::new(),
    };
    let result = measure(&mut rig, &address, n, deploys, entities, clients, rate).await;
    // The baseline runs on the same database with the service stopped.
    let result = match result {
        Ok(mut figures) => {
            for mut child in rig.workers.drain(..) {
                let _ = child.kill();
                let _ = child.wait();
            }
            rig.shutdown.cancel();
            if let Some(server) = rig.server.take() {
                let _ = server.await;
            }
            match insert_baseline(&rig.database_url, figures.connections.max(1), insert_secs).await
            {
                Ok(rate) => {
                    figures.inserts_per_s = rate;
                    Ok(figures)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    rig.stop().await;
    result
}

async fn measure(
    rig: &mut Rig,
    address: &str,
    n: usize,
    deploys: usize,
    entities: usize,
    clients: usize,
    rate: f64,
) -> anyhow::Result<Figures> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&rig.database_url)
        .await?;
    let token = deployd::store::tokens::create(
        &deployd::store::Db::Postgres(pool.clone()),
        Some("bench"),
        &[WS.parse().unwrap()],
    )
    .await?
    .1;

    // Seed: one entity per slot, each with a successful 10-file build of
    // its default version.
    let seeding = Instant::now();
    let mut documents = String::new();
    let mut builds = Vec::new();
    for e in 0..entities {
        let app = format!("app_{}", ulid::Ulid::generate());
        let version = format!("ver_{}", ulid::Ulid::generate());
        let build = format!("bld_{}", ulid::Ulid::generate());
        let dir = rig
            .data_dir
            .path()
            .join("builds")
            .join(format!("site-{build}"));
        std::fs::create_dir_all(dir.join("assets"))?;
        std::fs::write(dir.join("index.html"), format!("<h1>{build}</h1>"))?;
        for i in 1..FILES_PER_BUILD {
            std::fs::write(
                dir.join("assets").join(format!("{i}.txt")),
                format!("{build} {e} {i} {}", "x".repeat(2000)),
            )?;
        }
        let entity = json!({
            "type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
            "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": WS,
            "entity": {"id": app, "kind": "app", "name": format!("bench-{e}"),
                       "defaultVersionId": version, "autoDeploy": false}
        });
        let built = json!({
            "type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
            "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": WS,
            "build": {"id": build, "entityId": app, "versionId": version,
                      "artifactDir": dir.to_str().unwrap(), "commitSha": "abc123", "branch": "main"}
        });
        documents.push_str(&format!("{entity}\n{built}\n"));
        builds.push(build);
    }
    let feed = deployd::catalog::CatalogFeed::new(
        Arc::new(deployd::store::commands::Commands::new(
            deployd::store::Db::Postgres(pool.clone()),
        )),
        deployd::hosting::artifacts::ArtifactRoots::new(
            vec![rig.data_dir.path().join("builds")],
            rig.data_dir.path().join("data"),
        ),
    );
    let report = deployd::catalog::import(&feed, documents.as_bytes(), std::io::sink()).await?;
    anyhow::ensure!(report.rejected == 0, "seeding rejected documents");
    eprintln!(
        "[{n} workers] seeded {entities} entities with {FILES_PER_BUILD}-file builds in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // Subscribe to every published event from before the run.
    let client = async_nats::connect(nats_url()).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(format!("{}_events", rig.prefix)).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.events.>", rig.prefix),
            ..Default::default()
        })
        .await?;
    // Per DeployCreated: (commit → stored in JetStream, commit → received).
    let publish_delays: Arc<Mutex<HashMap<String, (f64, f64)>>> = Arc::default();
    let subscriber = {
        let delays = publish_delays.clone();
        let mut messages = consumer.messages().await?;
        tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let received = chrono::Utc::now();
                let Ok(body) = serde_json::from_slice::<Value>(&message.payload) else {
                    continue;
                };
                if body["type"] != "DeployCreated" {
                    continue;
                }
                let recorded = body["recordedAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                if let (Some(recorded), Some(id)) = (recorded, body["aggregateId"].as_str()) {
                    let recorded = recorded.with_timezone(&chrono::Utc);
                    let ms = |t: chrono::DateTime<chrono::Utc>| {
                        (t - recorded).num_microseconds().unwrap_or(0) as f64 / 1000.0
                    };
                    let stored = message
                        .reply
                        .as_ref()
                        .and_then(|r| stored_at(r.as_str()))
                        .unwrap_or(received);
                    delays
                        .lock()
                        .unwrap()
                        .entry(id.to_string())
                        .or_insert((ms(stored), ms(received)));
                }
            }
        })
    };

    // The workers, ready when their pull requests wait on the consumer.
    for _ in 0..n {
        rig.workers.push(
            Command::new(env!("CARGO_BIN_EXE_deployd"))
                .arg("worker")
                .env("DATABASE_URL", &rig.database_url)
                .env("NATS_URL", nats_url())
                .env("DEPLOYD_NATS_PREFIX", &rig.prefix)
                .env("DEPLOYD_DATA_DIR", rig.data_dir.path().join("data"))
                .env("DEPLOYD_ARTIFACT_ROOTS", rig.data_dir.path().join("builds"))
                .env("DEPLOYD_PUBLIC_URL", address)
                .env(
                    "DEPLOYD_LOG",
                    std::env::var("DEPLOYD_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .spawn()
                .context("starting a deployd worker")?,
        );
    }
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = match stream
            .get_consumer::<jetstream::consumer::pull::Config>(&format!("{}_worker", rig.prefix))
            .await
        {
            Ok(mut c) => c.info().await.map(|i| i.num_waiting).unwrap_or(0),
            Err(_) => 0,
        };
        if waiting >= n {
            break;
        }
        if Instant::now() > ready_by {
            eprintln!("[{n} workers] only {waiting} workers pulling after 30 s; going on");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The run: create every deploy through the API, then wait for them all.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let peak_connections = Arc::new(Mutex::new(0usize));
    let sampler = {
        let (pool, peak, database) = (pool.clone(), peak_connections.clone(), rig.database.clone());
        tokio::spawn(async move {
            loop {
                let count: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND application_name = 'deployd'",
                )
                .bind(&database)
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
                {
                    let mut peak = peak.lock().unwrap();
                    *peak = (*peak).max(count as usize);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(0..deploys)
        .map(|i| {
            let (http, token, build) = (http.clone(), token.clone(), builds[i % entities].clone());
            let url = format!("{address}/api/deploys");
            async move {
                if rate > 0.0 {
                    tokio::time::sleep_until(
                        (started + Duration::from_secs_f64(i as f64 / rate)).into(),
                    )
                    .await;
                }
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "buildId": build }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == reqwest::StatusCode::CREATED,
                    "create answered {}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
                let body: Value = response.json().await?;
                Ok(body["id"].as_str().unwrap_or_default().to_string())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let creating = started.elapsed().as_secs_f64();
    let created: Vec<String> = created.into_iter().collect::<anyhow::Result<_>>()?;
    eprintln!("[{n} workers] {deploys} deploys created in {creating:.2} s");

    let deadline = Instant::now() + Duration::from_secs(600);
    let (completed, finished) = loop {
        let (completed, terminal): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'completed'), \
                    count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')) \
             FROM deploys",
        )
        .fetch_one(&pool)
        .await?;
        if terminal as usize >= created.len() {
            break (completed as usize, started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {terminal} of {} deploys finished within 600 s",
            created.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sampler.abort();
    eprintln!("[{n} workers] {completed} deploys completed after {finished:.2} s");

    // Commit → first step, from the log.
    // Also for each entity's first deploy alone, which queues behind no
    // earlier deploy of its entity (only behind the workers' permits).
    let first_steps: Vec<(f64, bool)> = sqlx::query_as(
        "SELECT (extract(epoch FROM s.recorded_at - c.recorded_at) * 1000)::float8, \
                coalesce(c.payload -> 'DeployCreated' ->> 'sequenceNumber' = '1', false) \
         FROM events c JOIN events s ON s.aggregate_type = 'Deploy' \
              AND s.aggregate_id = c.aggregate_id AND s.event_type = 'StepStarted' \
              AND s.payload -> 'StepStarted' ->> 'step' = 'prepare' \
         WHERE c.aggregate_type = 'Deploy' AND c.event_type = 'DeployCreated'",
    )
    .fetch_all(&pool)
    .await?;
    let mut first_step: Vec<f64> = first_steps.iter().map(|(d, _)| *d).collect();
    let mut entity_first: Vec<f64> = first_steps
        .iter()
        .filter(|(_, first)| *first)
        .map(|(d, _)| *d)
        .collect();
    // How long a deploy runs once started (DeployStarted → DeployCompleted).
    let mut service: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM d.recorded_at - s.recorded_at) * 1000)::float8 \
         FROM events s JOIN events d ON d.aggregate_type = 'Deploy' \
              AND d.aggregate_id = s.aggregate_id AND d.event_type = 'DeployCompleted' \
         WHERE s.aggregate_type = 'Deploy' AND s.event_type = 'DeployStarted'",
    )
    .fetch_all(&pool)
    .await?;
    let (service_p50_ms, service_p99_ms) = percentiles(&mut service);
    // Events appended while the run lasted (Deploy events only: the run's).
    let (events, span): (i64, f64) = sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM max(recorded_at) - min(recorded_at)), 0)::float8 \
         FROM events WHERE aggregate_type = 'Deploy'",
    )
    .fetch_one(&pool)
    .await?;

    // Commit → publish: wait for the last DeployCreated to come through.
    let by = Instant::now() + Duration::from_secs(30);
    while publish_delays.lock().unwrap().len() < created.len() && Instant::now() < by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscriber.abort();
    let mut publish: Vec<f64> = publish_delays
        .lock()
        .unwrap()
        .values()
        .map(|d| d.1)
        .collect();
    let mut stored: Vec<f64> = publish_delays
        .lock()
        .unwrap()
        .values()
        .map(|d| d.0)
        .collect();
    let (stored_p50_ms, stored_p99_ms) = percentiles(&mut stored);
    if publish.len() < created.len() {
        eprintln!(
            "[{n} workers] only {} of {} DeployCreated seen on NATS",
            publish.len(),
            created.len()
        );
    }
    let (publish_p50_ms, publish_p99_ms) = percentiles(&mut publish);
    let (first_step_p50_ms, first_step_p99_ms) = percentiles(&mut first_step);
    let (entity_first_p50_ms, entity_first_p99_ms) = percentiles(&mut entity_first);
    pool.close().await;
    let connections = *peak_connections.lock().unwrap();
    Ok(Figures {
        workers: n,
        deploys,
        entities,
        completed,
        seconds: finished,
        deploys_per_s: completed as f64 / finished,
        creates_per_s: deploys as f64 / creating,
        events,
        events_per_s: events as f64 / span.max(1e-3),
        publish_p50_ms,
        publish_p99_ms,
        stored_p50_ms,
        stored_p99_ms,
        first_step_p50_ms,
        first_step_p99_ms,
        entity_first_p50_ms,
        entity_first_p99_ms,
        entity_firsts: entity_first.len(),
        service_p50_ms,
        service_p99_ms,
        connections,
        inserts_per_s: 0.0,
    })
}
