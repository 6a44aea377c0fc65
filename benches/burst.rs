//! A burst on one entity beside an idle one (issue 12, item 4), on
//! PostgreSQL + NATS with the server's own worker (`deployd serve`):
//!
//! - baseline, in the same run: deploys of idle entities one at a time with
//!   nothing else queued (create → started, create → completed);
//! - then `DEPLOYD_BENCH_BURST` deploys of one entity, created as fast as
//!   16 clients go, followed by one deploy of another, idle entity: how long
//!   the idle entity's deploy waited to start (÷ the baseline), how many of
//!   the burst completed before it (by log position), how long the burst took
//!   to drain per deploy (÷ the baseline's create → completed), the
//!   JetStream redeliveries of the worker's consumer and the PostgreSQL
//!   sessions opened meanwhile (`pg_stat_database.sessions`).
//!
//! ```sh
//! cargo bench --bench burst
//! DEPLOYD_BENCH_BURST=400 cargo bench --bench burst
//! ```
//!
//! Knobs: `DEPLOYD_BENCH_BURST` (200), `DEPLOYD_BENCH_BASELINE` (5 lone
//! deploys), `DEPLOYD_TEST_DATABASE_URL`, `NATS_URL`.

#[path = "common/mod.rs"]
mod common;
use common::{knob, loadavg, server_url};

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use deployd::api::ApiSettings;
use deployd::startup::{Application, Settings, TargetSettings};
use deployd::store::db::DbOptions;
use deployd::worker::WorkerSettings;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
const FILES_PER_BUILD: usize = 10;
const CLIENTS: usize = 16;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn new_name(kind: &str) -> String {
    format!(
        "{kind}{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let burst: usize = knob("DEPLOYD_BENCH_BURST", 200);
    let lone: usize = knob("DEPLOYD_BENCH_BASELINE", 5).max(1);
    eprintln!(
        "burst bench: {burst} deploys of one entity, then one of an idle entity; load {}",
        loadavg()
    );

    let database = new_name("deployd_bench_");
    let mut url = url::Url::parse(&server_url()).context("DEPLOYD_TEST_DATABASE_URL")?;
    url.set_path(&database);
    let database_url = url.to_string();
    let prefix = new_name("bench");
    let dir = tempfile::tempdir()?;
    let app = Application::build(Settings {
        database_url: Some(database_url.clone()),
        db: DbOptions::default(),
        nats_url: Some(nats_url()),
        nats_prefix: prefix.clone(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        artifact_roots: vec![dir.path().join("builds")],
        artifact_store: None,
        public_url: None,
        api: ApiSettings {
            rate_limit_per_second: 100_000,
            rate_limit_burst: 100_000,
            ..ApiSettings::default()
        },
        run_worker: true,
        worker: WorkerSettings::default(),
        target: TargetSettings::Local,
        webhooks: Default::default(),
    })
    .await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let result = measure(&address, &database_url, &prefix, dir.path(), burst, lone).await;

    shutdown.cancel();
    let _ = server.await;
    if let Ok(client) = async_nats::connect(nats_url()).await {
        let js = jetstream::new(client);
        for suffix in ["catalog", "events"] {
            let _ = js.delete_stream(format!("{prefix}_{suffix}")).await;
        }
    }
    if let Ok(pool) = PgPool::connect(&server_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
    result
}

struct Client {
    http: reqwest::Client,
    address: String,
    token: String,
}

impl Client {
    async fn create(&self, build: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/api/deploys", self.address))
            .bearer_auth(&self.token)
            .json(&json!({ "buildId": build }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "create: {}", response.status());
        let row: Value = response.json().await?;
        Ok(row["id"].as_str().context("an id")?.to_string())
    }
}

/// Seconds from created to started and to completed, once completed.
async fn wait_completed(pool: &PgPool, id: &str) -> anyhow::Result<(f64, f64)> {
    let by = Instant::now() + Duration::from_secs(900);
    loop {
        let row: Option<(String, Option<f64>, Option<f64>)> = sqlx::query_as(
            "SELECT status, extract(epoch FROM started_at - created_at)::float8, \
                    extract(epoch FROM completed_at - created_at)::float8 \
             FROM deploys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        if let Some((status, started, completed)) = row {
            if status == "completed" {
                return Ok((started.unwrap_or(0.0), completed.unwrap_or(0.0)));
            }
            anyhow::ensure!(status == "pending" || status == "running", "{id} {status}");
        }
        anyhow::ensure!(Instant::now() < by, "{id} did not complete in 15 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn consumer_redelivered(prefix: &str) -> anyhow::Result<usize> {
    let js = jetstream::new(async_nats::connect(nats_url()).await?);
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(format!("{prefix}_events"))
        .await?
        .get_consumer(&format!("{prefix}_worker"))
        .await
        .map_err(|e| anyhow::anyhow!("the worker consumer: {e}"))?;
    Ok(consumer.get_info().await?.num_redelivered)
}

async fn sessions(pool: &PgPool) -> anyhow::Result<i64> {
    // A fresh transaction reads fresh statistics.
    Ok(sqlx::query_scalar(
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

async fn measure(
    address: &str,
    database_url: &str,
    prefix: &str,
    dir: &std::path::Path,
    burst: usize,
    lone: usize,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    let db = deployd::store::Db::Postgres(pool.clone());
    let token = deployd::store::tokens::create(&db, Some("bench"), &[WS.parse().unwrap()])
        .await?
        .1;
    // The busy entity, the burst's idle neighbour, and one idle entity per
    // baseline deploy: each with one successful build.
    let mut documents = String::new();
    let mut builds = Vec::new();
    for e in 0..lone + 2 {
        let app = format!("app_{}", ulid::Ulid::generate());
        let version = format!("ver_{}", ulid::Ulid::generate());
        let build = format!("bld_{}", ulid::Ulid::generate());
        let site = dir.join("builds").join(format!("site-{build}"));
        std::fs::create_dir_all(site.join("assets"))?;
        std::fs::write(site.join("index.html"), format!("<h1>{build}</h1>"))?;
        for i in 1..FILES_PER_BUILD {
            std::fs::write(
                site.join("assets").join(format!("{i}.txt")),
                format!("{build} {e} {i} {}", "x".repeat(2000)),
            )?;
        }
        documents.push_str(&format!(
            "{}\n{}\n",
            json!({
                "type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": WS,
                "entity": {"id": app, "kind": "app", "name": format!("bench-{e}"),
                           "defaultVersionId": version, "autoDeploy": false}
            }),
            json!({
                "type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": WS,
                "build": {"id": build, "entityId": app, "versionId": version,
                          "artifactDir": site.to_str().unwrap(), "commitSha": "abc123", "branch": "main"}
            })
        ));
        builds.push(build);
    }
    let feed = deployd::catalog::CatalogFeed::new(
        Arc::new(deployd::store::commands::Commands::new(db.clone())),
        deployd::hosting::artifacts::ArtifactRoots::new(vec![dir.join("builds")], dir.join("data")),
    );
    let report = deployd::catalog::import(&feed, documents.as_bytes(), std::io::sink()).await?;
    anyhow::ensure!(report.rejected == 0, "seeding rejected documents");
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        address: address.to_string(),
        token,
    });

    // Baseline: one deploy at a time, nothing else queued.
    let (mut starts, mut services) = (Vec::new(), Vec::new());
    for build in &builds[2..] {
        let id = client.create(build).await?;
        let (started, completed) = wait_completed(&pool, &id).await?;
        starts.push(started);
        services.push(completed);
    }
    let (base_start, base_service) = (median(&mut starts), median(&mut services));
    eprintln!(
        "baseline: {lone} lone deploys, create → started {:.1} ms, create → completed {:.1} ms (medians)",
        base_start * 1e3,
        base_service * 1e3
    );

    // The burst, then the idle entity's deploy.
    let redelivered_before = consumer_redelivered(prefix).await?;
    let sessions_before = sessions(&pool).await?;
    let started = Instant::now();
    let busy = builds[0].clone();
    let ids: Vec<String> = futures::stream::iter(0..burst)
        .map(|_| {
            let (client, busy) = (client.clone(), busy.clone());
            async move { client.create(&busy).await }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let creating = started.elapsed().as_secs_f64();
    let idle = client.create(&builds[1]).await?;
    let (idle_start, idle_service) = wait_completed(&pool, &idle).await?;
    let before_idle: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'DeployCompleted' AND aggregate_id = ANY($1) \
         AND position < (SELECT position FROM events WHERE aggregate_id = $2 AND event_type = 'DeployCompleted')",
    )
    .bind(&ids)
    .bind(&idle)
    .fetch_one(&pool)
    .await?;
    for id in &ids {
        wait_completed(&pool, id).await?;
    }
    let drained = started.elapsed().as_secs_f64();
    let drain: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(completed_at) - min(created_at))::float8 \
         FROM deploys WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&pool)
    .await?;
    // Let the statistics of the closed sessions arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new_sessions = sessions(&pool).await? - sessions_before;
    let redelivered = consumer_redelivered(prefix).await? - redelivered_before;
    let per_deploy = drain / burst as f64;

    println!();
    println!(
        "burst of {burst} deploys of one entity ({creating:.2} s to create, {FILES_PER_BUILD}-file builds), \
         then one deploy of an idle entity; load {}",
        loadavg()
    );
    println!();
    println!("| figure | value | ratio to the same run's baseline |");
    println!("|---|---:|---:|");
    println!(
        "| lone deploy, create → started (baseline) | {:.1} ms | 1 |",
        base_start * 1e3
    );
    println!(
        "| lone deploy, create → completed (baseline) | {:.1} ms | 1 |",
        base_service * 1e3
    );
    println!(
        "| idle entity behind the burst, create → started | {:.1} ms | {:.1}× |",
        idle_start * 1e3,
        idle_start / base_start
    );
    println!(
        "| idle entity behind the burst, create → completed | {:.1} ms | {:.1}× |",
        idle_service * 1e3,
        idle_service / base_service
    );
    println!("| burst deploys completed before the idle one | {before_idle} of {burst} | |");
    println!(
        "| burst drain, first create → last completed | {drain:.2} s ({drained:.2} s wall) | |"
    );
    println!(
        "| burst drain per deploy | {:.1} ms | {:.2}× a lone deploy |",
        per_deploy * 1e3,
        per_deploy / base_service
    );
    println!(
        "| JetStream redeliveries (worker consumer) | {redelivered} | {:.2} per deploy |",
        redelivered as f64 / (burst + 1) as f64
    );
    println!(
        "| PostgreSQL sessions opened meanwhile | {new_sessions} | {:.2} per deploy |",
        new_sessions as f64 / (burst + 1) as f64
    );
    Ok(())
}
