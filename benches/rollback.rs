//! Rollback time: the worker time (`startedAt` → `completedAt`) of a
//! rollback to a deploy whose 10,000-file build is already stored, beside
//! the worker time of that build's first deploy, measured in the same run
//! on the same machine.
//!
//! ```sh
//! cargo bench --bench rollback
//! DEPLOYD_BENCH_FILES=10000 DEPLOYD_BENCH_ROUNDS=5 cargo bench --bench rollback
//! DEPLOYD_BENCH_ENGINE=postgres cargo bench --bench rollback   # PostgreSQL + NATS
//! ```
//!
//! Knobs (environment):
//! - `DEPLOYD_BENCH_FILES` (10000): files in the build (about 100 bytes each)
//! - `DEPLOYD_BENCH_ROUNDS` (5): rollbacks measured (each after a promotion
//!   of the other deploy took production back)
//! - `DEPLOYD_BENCH_ENGINE` (`sqlite`): `sqlite` (embedded, nothing to run)
//!   or `postgres` (`DEPLOYD_TEST_DATABASE_URL`, `NATS_URL`)
//!
//! The server (API, projectors, worker, local hosting) runs in this
//! process. Each round: promote the second deploy (production moves off the
//! first), then roll back to the first, and read both worker times from
//! the deploys' rows.

#[path = "common/mod.rs"]
mod common;
use common::{knob, loadavg, percentiles, server_url};

use std::time::{Duration, Instant};

use anyhow::Context;
use deployd::api::ApiSettings;
use deployd::startup::{Application, Settings, TargetSettings};
use deployd::store::db::DbOptions;
use deployd::worker::WorkerSettings;
use serde_json::{json, Value};

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

struct Rig {
    address: String,
    client: reqwest::Client,
    token: String,
}

impl Rig {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{path}: {}", r.text().await?);
        Ok(r.json().await?)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?)
    }

    /// Waits for the deploy to complete; its worker time in seconds.
    async fn worker_seconds(&self, id: &str) -> anyhow::Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let d = self.get(&format!("/api/deploys/{id}")).await?;
            match d["status"].as_str() {
                Some("completed") => {
                    let at = |k: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
                        Ok(d[k].as_str().context("a timestamp")?.parse()?)
                    };
                    let micros = (at("completedAt")? - at("startedAt")?)
                        .num_microseconds()
                        .context("a duration")?;
                    return Ok(micros as f64 / 1e6);
                }
                Some("failed" | "cancelled") => anyhow::bail!("deploy {id} ended: {d}"),
                _ => {}
            }
            anyhow::ensure!(Instant::now() < deadline, "deploy {id} did not complete");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn import_line(doc: Value) -> String {
    format!("{doc}\n")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: usize = knob("DEPLOYD_BENCH_FILES", 10_000);
    let rounds: usize = knob("DEPLOYD_BENCH_ROUNDS", 5);
    let engine = std::env::var("DEPLOYD_BENCH_ENGINE").unwrap_or_else(|_| "sqlite".into());
    let data_dir = tempfile::tempdir()?;
    // Builds live apart from the data directory (DEPLOYD_ARTIFACT_ROOTS).
    let builds_dir = tempfile::tempdir()?;
    let database = match engine.as_str() {
        "postgres" => {
            let name = format!(
                "deployd_bench_{}",
                ulid::Ulid::generate().to_string().to_lowercase()
            );
            let base = server_url();
            let url = match base.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => anyhow::bail!("DEPLOYD_TEST_DATABASE_URL has no database part"),
            };
            Some((name, url))
        }
        "sqlite" => None,
        other => anyhow::bail!("DEPLOYD_BENCH_ENGINE={other}: expected sqlite or postgres"),
    };
    let settings = Settings {
        database_url: database.as_ref().map(|(_, url)| url.clone()),
        db: DbOptions::default(),
        nats_url: database
            .as_ref()
            .map(|_| std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())),
        nats_prefix: format!("bench{}", ulid::Ulid::generate().to_string().to_lowercase()),
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.path().to_path_buf(),
        public_url: None,
        api: ApiSettings {
            rate_limit_per_second: 0,
            ..ApiSettings::default()
        },
        run_worker: true,
        worker: WorkerSettings {
            sweep_interval: Duration::from_millis(200),
            data_dir: data_dir.path().to_path_buf(),
            ..WorkerSettings::default()
        },
        target: TargetSettings::Local,
        webhooks: Default::default(),
        artifact_roots: vec![builds_dir.path().to_path_buf()],
        artifact_store: None,
    };
    let app = Application::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let db = app.db().clone();
    let server = tokio::spawn(app.run_until_stopped());
    let workspace = WS.parse()?;
    let (_, token) = deployd::store::tokens::create(&db, Some("bench"), &[workspace]).await?;
    let rig = Rig {
        address,
        client: reqwest::Client::new(),
        token,
    };

    // An app with two builds of its default version: A (the big one) and B.
    let app_id = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let event = || format!("evt_{}", ulid::Ulid::generate());
    let build = |dir: &std::path::Path, id: &str| {
        json!({"type": "build.succeeded", "eventId": event(), "occurredAt": "2026-11-30T00:00:01Z",
               "workspaceId": WS, "build": {"id": id, "entityId": app_id, "versionId": version,
               "artifactDir": dir.to_str().unwrap()}})
    };
    let (a, b) = (
        format!("bld_{}", ulid::Ulid::generate()),
        format!("bld_{}", ulid::Ulid::generate()),
    );
    let dir_a = builds_dir.path().join("site-a");
    let dir_b = builds_dir.path().join("site-b");
    for i in 0..files {
        let file = dir_a.join(format!("assets/{:03}/{i}.txt", i % 100));
        std::fs::create_dir_all(file.parent().unwrap())?;
        std::fs::write(file, format!("{a} file {i} {}", "x".repeat(60)))?;
    }
    std::fs::create_dir_all(&dir_b)?;
    std::fs::write(dir_b.join("index.html"), "<h1>b</h1>")?;
    let lines = [
        import_line(json!({"type": "entity.upserted", "eventId": event(),
            "occurredAt": "2026-11-30T00:00:00Z", "workspaceId": WS,
            "entity": {"id": app_id, "kind": "app", "name": "bench", "defaultVersionId": version}})),
        import_line(build(&dir_a, &a)),
        import_line(build(&dir_b, &b)),
    ]
    .concat();
    let feed = deployd::catalog::CatalogFeed::new(
        std::sync::Arc::new(deployd::store::commands::Commands::new(db.clone())),
        deployd::hosting::artifacts::ArtifactRoots::new(
            vec![builds_dir.path().to_path_buf()],
            data_dir.path().to_path_buf(),
        ),
    );
    let report = deployd::catalog::import(&feed, lines.as_bytes(), std::io::stderr()).await?;
    anyhow::ensure!(report.rejected == 0, "the catalog was refused");

    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();
    let first = id(&rig.post("/api/deploys", json!({"buildId": a})).await?);
    let first_seconds = rig.worker_seconds(&first).await?;
    let other = id(&rig.post("/api/deploys", json!({"buildId": b})).await?);
    rig.worker_seconds(&other).await?;

    let mut rollbacks = Vec::new();
    let mut promotions = Vec::new();
    for round in 0..rounds {
        if round > 0 {
            let p = id(&rig
                .post(&format!("/api/deploys/{other}/promote"), json!({}))
                .await?);
            promotions.push(rig.worker_seconds(&p).await?);
        }
        let r = id(&rig
            .post(
                &format!("/api/deploys/{first}/rollback"),
                json!({"reason": "bench"}),
            )
            .await?);
        rollbacks.push(rig.worker_seconds(&r).await?);
    }
    let (p50, p99) = percentiles(&mut rollbacks.clone());
    println!(
        "rollback of a stored {files}-file build ({engine}, {rounds} rounds, load {})",
        loadavg()
    );
    println!("  first deploy of the build: {first_seconds:.3} s of worker time");
    println!(
        "  rollback: p50 {p50:.3} s, max {p99:.3} s of worker time ({:.1}% of the first deploy)",
        100.0 * p50 / first_seconds
    );
    println!("  each rollback: {rollbacks:.3?}");

    shutdown.cancel();
    server.await??;
    if let Some((name, _)) = database {
        let admin = sqlx::PgPool::connect(&server_url()).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await?;
    }
    Ok(())
}
