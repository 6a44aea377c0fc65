//! Serving from the artifact store: throughput of a 1 MiB file fetched
//! from a deploy's preview URL (HTTP, routing, the manifest, conditional
//! and range headers, streaming from the store) against reading the same
//! blob from the store directly (`object_store`'s `get` of the whole
//! object), measured in the same run on the same machine.
//!
//! ```sh
//! cargo bench --bench uploads
//! DEPLOYD_BENCH_ROUNDS=400 DEPLOYD_BENCH_CONCURRENCY=8 cargo bench --bench uploads
//! ```
//!
//! Knobs (environment):
//! - `DEPLOYD_BENCH_ROUNDS` (300): reads of the file in each measurement
//! - `DEPLOYD_BENCH_CONCURRENCY` (4): reads in flight at once
//! - `DEPLOYD_BENCH_BYTES` (1048576): the file's size
//!
//! The build reaches the server through the upload API (create, PUT the
//! blob, finalize) and is deployed by the in-process worker; the engine is
//! the embedded one (serving reads no database row but "completed").

#[path = "common/mod.rs"]
mod common;
use common::{knob, loadavg};

use std::time::{Duration, Instant};

use anyhow::Context;
use deployd::api::ApiSettings;
use deployd::startup::{Application, Settings, TargetSettings};
use deployd::store::db::DbOptions;
use deployd::worker::WorkerSettings;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

/// Reads in flight at once, `rounds` in all; MiB/s.
async fn throughput<F, Fut>(
    rounds: usize,
    concurrency: usize,
    bytes: usize,
    read: F,
) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    let sizes: Vec<anyhow::Result<usize>> = futures::stream::iter(0..rounds)
        .map(|_| read())
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    for size in sizes {
        anyhow::ensure!(size? == bytes, "a read returned the wrong size");
    }
    Ok((rounds * bytes) as f64 / (1024.0 * 1024.0) / elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = knob("DEPLOYD_BENCH_ROUNDS", 300);
    let concurrency: usize = knob("DEPLOYD_BENCH_CONCURRENCY", 4);
    let bytes: usize = knob("DEPLOYD_BENCH_BYTES", 1024 * 1024);
    let data_dir = tempfile::tempdir()?;
    let settings = Settings {
        database_url: None,
        db: DbOptions::default(),
        nats_url: None,
        nats_prefix: "bench".into(),
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
        artifact_roots: Vec::new(),
        artifact_store: None,
    };
    let app = Application::build(settings).await?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_token();
    let db = app.db().clone();
    let server = tokio::spawn(app.run_until_stopped());
    let (_, token) = deployd::store::tokens::create(&db, Some("bench"), &[WS.parse()?]).await?;
    let client = reqwest::Client::new();

    // An entity, and a build of one file uploaded through the API.
    let entity = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let line = json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
        "occurredAt": "2026-11-30T00:00:00Z", "workspaceId": WS,
        "entity": {"id": entity, "kind": "app", "name": "bench", "defaultVersionId": version}});
    let feed = deployd::catalog::CatalogFeed::new(
        std::sync::Arc::new(deployd::store::commands::Commands::new(db.clone())),
        deployd::hosting::artifacts::ArtifactRoots::new(vec![], data_dir.path()),
    );
    deployd::catalog::import(&feed, format!("{line}\n").as_bytes(), std::io::stderr()).await?;
    let content: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
    let sha256: String = Sha256::digest(&content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let call = |r: reqwest::RequestBuilder| {
        let request = r.bearer_auth(&token);
        async move {
            let r = request.send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
            Ok::<Value, anyhow::Error>(r.json().await?)
        }
    };
    let created = call(client.post(format!("{address}/api/builds")).json(&json!({
        "entityId": entity, "files": [{"path": "file.bin", "sha256": sha256, "size": bytes}]
    })))
    .await?;
    let build = created["id"].as_str().context("a build id")?.to_string();
    call(
        client
            .put(format!("{address}/api/blobs/{sha256}"))
            .body(content.clone()),
    )
    .await?;
    call(client.post(format!("{address}/api/builds/{build}/finalize"))).await?;
    let deploy = call(
        client
            .post(format!("{address}/api/deploys"))
            .json(&json!({"buildId": build})),
    )
    .await?["id"]
        .as_str()
        .context("a deploy id")?
        .to_string();
    let preview = loop {
        let d = call(client.get(format!("{address}/api/deploys/{deploy}"))).await?;
        match d["status"].as_str() {
            Some("completed") => break d["previewUrl"].as_str().context("a URL")?.to_string(),
            Some("failed" | "cancelled") => anyhow::bail!("the deploy ended: {d}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let url = format!("{preview}file.bin");
    let fetched = client.get(&url).send().await?.bytes().await?;
    anyhow::ensure!(
        fetched.as_ref() == content.as_slice(),
        "the preview serves other bytes"
    );

    let store =
        object_store::local::LocalFileSystem::new_with_prefix(data_dir.path().join("blobs"))?;
    let key = object_store::path::Path::from(format!("sha256/{sha256}"));
    let direct = || async { Ok(store.get(&key).await?.bytes().await?.len()) };
    let served = || async { Ok(client.get(&url).send().await?.bytes().await?.len()) };
    // Warm both (page cache, connections), then measure each twice,
    // alternating, and keep each one's best.
    throughput(rounds / 4 + 1, concurrency, bytes, direct).await?;
    throughput(rounds / 4 + 1, concurrency, bytes, served).await?;
    let mut best = (0f64, 0f64);
    for _ in 0..2 {
        best.0 = best
            .0
            .max(throughput(rounds, concurrency, bytes, direct).await?);
        best.1 = best
            .1
            .max(throughput(rounds, concurrency, bytes, served).await?);
    }
    println!(
        "serving a {} KiB file ({rounds} reads, {concurrency} at once, load {})",
        bytes / 1024,
        loadavg()
    );
    println!("  from the store directly: {:.0} MiB/s", best.0);
    println!("  from the preview URL:    {:.0} MiB/s", best.1);
    println!("  ratio: {:.2}× (target ≥ 0.5×)", best.1 / best.0);

    shutdown.cancel();
    server.await??;
    Ok(())
}
