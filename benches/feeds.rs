//! The feeds under load, each against a baseline in the same run:
//!
//! 1. SSE fan-out: `DEPLOYD_BENCH_SSE_CLIENTS` (200) clients follow the
//!    workspace's feed (`GET /api/events`, `text/event-stream`) while
//!    `DEPLOYD_BENCH_DEPLOYS` (100) deploys run end to end; the delay from
//!    an event's `recordedAt` (its transaction's start, as in the saga
//!    bench) to its arrival at each client, beside the same events' delay
//!    to a JetStream subscriber, and the server's RSS with the streams open.
//! 2. Webhooks: `DEPLOYD_BENCH_WEBHOOK_EVENTS` (2000) events delivered to a
//!    local receiver, from a backlog (events imported while the server is
//!    stopped), against a plain sequential HTTP POST loop of the same
//!    bodies to the same receiver.
//!
//! ```sh
//! cargo bench --bench feeds
//! ```
//!
//! The server is the `deployd` binary (a child process, so its RSS is its
//! own) on a fresh PostgreSQL database and NATS prefix, both removed at the
//! end. Finds PostgreSQL as the tests do (`DEPLOYD_TEST_DATABASE_URL`) and
//! NATS through `NATS_URL`.

#[path = "common/mod.rs"]
mod common;
use common::{knob, loadavg, percentiles, server_url};

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

struct Server {
    child: Child,
    base: String,
}

fn deployd(dir: &Path, database_url: &str, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url())
        .env("DEPLOYD_NATS_PREFIX", prefix)
        .env("DEPLOYD_DATA_DIR", dir.join("data"))
        .env("DEPLOYD_LOG", "warn")
        .env("DEPLOYD_RATE_LIMIT", "0")
        .env("DEPLOYD_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("DEPLOYD_ARTIFACT_ROOTS", dir.join("builds"));
    cmd
}

impl Server {
    async fn start(dir: &Path, database_url: &str, prefix: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = deployd(dir, database_url, prefix)
            .arg("serve")
            .env("DEPLOYD_LISTEN", format!("127.0.0.1:{port}"))
            .env("DEPLOYD_DB_POOL_SIZE", "32")
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..400 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                return Server { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not come up");
    }

    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .unwrap_or(f64::NAN)
            / 1024.0
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Entities with one successful build each (a few files), as catalog lines.
fn catalog(dir: &Path, entities: usize) -> (Vec<String>, String) {
    let mut apps = Vec::new();
    let mut lines = String::new();
    for i in 0..entities {
        let app = format!("app_{}", ulid::Ulid::generate());
        let version = format!("ver_{}", ulid::Ulid::generate());
        let build = format!("bld_{}", ulid::Ulid::generate());
        let site = dir.join("builds").join(format!("site-{build}"));
        std::fs::create_dir_all(&site).unwrap();
        for f in 0..5 {
            std::fs::write(site.join(format!("{f}.html")), format!("{app} {f}")).unwrap();
        }
        for doc in [
            json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": WS,
                   "entity": {"id": app, "kind": "app", "name": format!("app{i}"),
                              "defaultVersionId": version, "autoDeploy": false}}),
            json!({"type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": WS,
                   "build": {"id": build, "entityId": app, "versionId": version,
                             "artifactDir": site.to_str().unwrap(), "commitSha": "abc123",
                             "branch": "main"}}),
        ] {
            lines.push_str(&format!("{doc}\n"));
        }
        apps.push(app);
    }
    (apps, lines)
}

fn import(dir: &Path, database_url: &str, prefix: &str, lines: &str) {
    let file = dir.join(format!("catalog-{}.jsonl", ulid::Ulid::generate()));
    std::fs::write(&file, lines).unwrap();
    let out = deployd(dir, database_url, prefix)
        .args(["catalog", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Milliseconds from the event's `recordedAt` to now.
fn delay_ms(event: &Value) -> Option<f64> {
    let recorded = chrono::DateTime::parse_from_rfc3339(event["recordedAt"].as_str()?).ok()?;
    Some(
        (chrono::Utc::now() - recorded.with_timezone(&chrono::Utc)).num_microseconds()? as f64
            / 1000.0,
    )
}

/// One SSE client: records the delay of every event recorded after
/// `since` (the load's start), counting them in `seen`.
async fn sse_client(
    base: String,
    token: String,
    since: chrono::DateTime<chrono::Utc>,
    delays: Arc<Mutex<Vec<f64>>>,
    seen: Arc<AtomicU64>,
) {
    let mut response = reqwest::Client::new()
        .get(format!("{base}/api/events"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let mut mine = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                let event: Value = serde_json::from_str(data).unwrap();
                let recorded =
                    chrono::DateTime::parse_from_rfc3339(event["recordedAt"].as_str().unwrap())
                        .unwrap();
                if recorded >= since {
                    if let Some(d) = delay_ms(&event) {
                        mine.push(d);
                    }
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if mine.len() >= 64 {
            delays.lock().unwrap().append(&mut mine);
        }
    }
    delays.lock().unwrap().append(&mut mine);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients: usize = knob("DEPLOYD_BENCH_SSE_CLIENTS", 200);
    let deploys: usize = knob("DEPLOYD_BENCH_DEPLOYS", 100);
    let webhook_events: usize = knob("DEPLOYD_BENCH_WEBHOOK_EVENTS", 2000);
    let name = format!(
        "deployd_bench_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let prefix = format!("bench{}", ulid::Ulid::generate().to_string().to_lowercase());
    let mut url = url::Url::parse(&server_url())?;
    url.set_path(&name);
    let database_url = url.to_string();
    let dir = tempfile::tempdir()?;
    println!("load average before: {}", loadavg());

    let migrate = deployd(dir.path(), &database_url, &prefix)
        .arg("migrate")
        .output()?;
    anyhow::ensure!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let token = String::from_utf8(
        deployd(dir.path(), &database_url, &prefix)
            .args(["token", "create", "--workspace", WS, "--name", "bench"])
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();
    let (apps, lines) = catalog(dir.path(), 20);
    import(dir.path(), &database_url, &prefix, &lines);

    // 1. SSE fan-out beside JetStream.
    let server = Server::start(dir.path(), &database_url, &prefix).await;
    let rss_idle = server.rss_mib();
    let since = chrono::Utc::now();
    let delays = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..clients {
        readers.push(tokio::spawn(sse_client(
            server.base.clone(),
            token.clone(),
            since,
            delays.clone(),
            seen.clone(),
        )));
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await?);
    let stream = js.get_stream(format!("{prefix}_events")).await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let js_delays = Arc::new(Mutex::new(Vec::new()));
    let js_task = {
        let js_delays = js_delays.clone();
        let mut messages = consumer.messages().await?;
        tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let event: Value = serde_json::from_slice(&message.payload).unwrap();
                if let Some(d) = delay_ms(&event) {
                    js_delays.lock().unwrap().push(d);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = server.rss_mib();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..deploys {
        let created: Value = http
            .post(format!("{}/api/deploys", server.base))
            .bearer_auth(&token)
            .json(&json!({"appId": apps[i % apps.len()]}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let mut rss_peak = server.rss_mib();
    loop {
        let page: Value = http
            .get(format!(
                "{}/api/deploys?status=completed&limit=1",
                server.base
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        rss_peak = rss_peak.max(server.rss_mib());
        if page["pageInfo"]["total"].as_u64().unwrap_or(0) as usize >= deploys {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "deploys did not complete"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = js_delays.lock().unwrap().len();
    // Every client has every event (or 30 s pass).
    for _ in 0..300 {
        if seen.load(Ordering::Relaxed) as usize >= events * clients {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = server.rss_mib();
    server.stop();
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    js_task.abort();
    let (sse_p50, sse_p99) = percentiles(&mut delays.lock().unwrap());
    let (js_p50, js_p99) = percentiles(&mut js_delays.lock().unwrap());
    println!(
        "SSE fan-out: {clients} clients, {deploys} deploys end to end ({events} events) in {elapsed:.1} s; \
         {} deliveries to clients ({} expected)",
        seen.load(Ordering::Relaxed),
        events * clients
    );
    println!("| path | p50 ms | p99 ms |\n|---|---|---|");
    println!("| commit → JetStream subscriber | {js_p50:.1} | {js_p99:.1} |");
    println!("| commit → SSE client ({clients} streams) | {sse_p50:.1} | {sse_p99:.1} |");
    println!("p99 ratio SSE ÷ JetStream: {:.2}", sse_p99 / js_p99);
    println!(
        "server RSS: {rss_idle:.1} MiB idle, {rss_open:.1} MiB with {clients} streams open, \
         {rss_peak:.1} MiB peak under load, {rss_end:.1} MiB after"
    );

    // 2. Webhooks from a backlog, beside a plain POST loop.
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    let receiver = {
        let (received, last) = (received.clone(), last.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |_body: axum::body::Bytes| {
                let (received, last) = (received.clone(), last.clone());
                async move {
                    received.fetch_add(1, Ordering::Relaxed);
                    *last.lock().unwrap() = Instant::now();
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let body = serde_json::to_string(&json!({
        "eventId": format!("evt_{}", ulid::Ulid::generate()), "position": 1, "workspaceId": WS,
        "aggregateType": "Entity", "aggregateId": apps[0], "sequence": 1, "type": "EntityUpserted",
        "version": "1", "recordedAt": "2026-11-30T03:00:00.000000Z", "metadata": {"actor": "bench"},
        "data": {"workspaceId": WS, "entityId": apps[0], "kind": "app", "name": "web",
                 "defaultVersionId": null, "autoDeploy": false,
                 "sourceEventId": format!("evt_{}", ulid::Ulid::generate()),
                 "occurredAt": "2026-11-30T03:00:00Z"}
    }))?;
    let plain = reqwest::Client::new();
    let t = Instant::now();
    for _ in 0..webhook_events {
        let r = plain
            .post(&hook_url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success());
    }
    let plain_rate = webhook_events as f64 / t.elapsed().as_secs_f64();

    let server = Server::start(dir.path(), &database_url, &prefix).await;
    let hook: Value = http
        .post(format!("{}/api/webhooks", server.base))
        .bearer_auth(&token)
        .json(&json!({"url": hook_url, "events": ["EntityUpserted"]}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(hook["id"].is_string(), "{hook}");
    server.stop();
    // The backlog: entity updates recorded while no server runs.
    let mut lines = String::new();
    for i in 0..webhook_events {
        lines.push_str(&format!(
            "{}\n",
            json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": format!("2026-11-30T03:{:02}:{:02}Z", (i / 60) % 60, i % 60), "workspaceId": WS,
                   "entity": {"id": format!("app_{}", ulid::Ulid::generate()), "kind": "app",
                              "name": format!("bench{i}"), "defaultVersionId": null, "autoDeploy": false}})
        ));
    }
    import(dir.path(), &database_url, &prefix, &lines);
    received.store(0, Ordering::Relaxed);
    let server = Server::start(dir.path(), &database_url, &prefix).await;
    let t = Instant::now();
    while (received.load(Ordering::Relaxed) as usize) < webhook_events {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "deliveries did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hook_secs = last.lock().unwrap().duration_since(t).as_secs_f64();
    let hook_rate = webhook_events as f64 / hook_secs;
    server.stop();
    println!(
        "webhooks: {webhook_events} deliveries from a backlog in {hook_secs:.2} s (server start included): \
         {hook_rate:.0}/s; plain sequential POST loop: {plain_rate:.0}/s; ratio {:.2}",
        hook_rate / plain_rate
    );
    println!("load average after: {}", loadavg());

    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await?);
    for suffix in ["catalog", "events"] {
        let _ = js.delete_stream(format!("{prefix}_{suffix}")).await;
    }
    if let Ok(pool) = sqlx::PgPool::connect(&server_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
    Ok(())
}
