//! Crashes and outages: a worker killed mid-deploy, NATS restarted, and what
//! subscribers see.

use std::process::{Child, Command};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::Value;

use crate::helpers::*;

/// A `deployd worker` process on the test's database, NATS prefix and data.
fn spawn_worker(app: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg("worker")
        .env("DATABASE_URL", app.database_url())
        .env("NATS_URL", app.options.nats_url.as_deref().unwrap())
        .env("DEPLOYD_NATS_PREFIX", &app.prefix)
        .env("DEPLOYD_DATA_DIR", app.data_dir.path())
        .env("DEPLOYD_ARTIFACT_ROOTS", app.artifacts.path())
        .env("DEPLOYD_PUBLIC_URL", &app.address)
        .env("DEPLOYD_SWEEP_INTERVAL_MS", "300")
        .env("DEPLOYD_LOG", "warn")
        .spawn()
        .expect("the deployd binary runs")
}

async fn count_events(app: &TestApp, id: &str, event_type: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload -> event_type ->> 'step' FROM events \
         WHERE aggregate_id = $1 AND event_type = $2 ORDER BY sequence",
    )
    .bind(id)
    .bind(event_type)
    .fetch_all(app.pg())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_deploy_is_replaced_and_no_step_completes_twice() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let big = app.seed_big_build(&seeded, 20_000).await;
    let mut first = spawn_worker(&app);
    let id = app.create(&big).await["id"].as_str().unwrap().to_string();
    app.wait_for(&id, "upload running", |d| {
        d["steps"][1]["status"] == "running"
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let killed_at = app.detail(&id).await;
    assert_eq!(killed_at["status"], "running");

    let mut second = spawn_worker(&app);
    let done = app.wait_status(&id, "completed").await;
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(
        count_events(&app, &id, "StepStarted").await,
        vec!["prepare", "upload", "promote"]
    );
    assert_eq!(
        count_events(&app, &id, "StepCompleted").await,
        vec!["prepare", "upload", "promote"]
    );
    let preview = done["previewUrl"].as_str().unwrap();
    let body = app
        .client
        .get(format!("{preview}assets/19999.txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, format!("{big} 19999"));
    app.stop().await;
}

/// A NATS server of the test's own, so it can be stopped and restarted
/// without disturbing other tests.
struct PrivateNats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = PrivateNats {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nats-server is installed (scripts/services installs it)");
        self.child = Some(
            Command::new(binary)
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(self.store.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn stream_message_ids(nats_url: &str, prefix: &str) -> Vec<String> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(format!("{prefix}_events")).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let pending = stream.get_info().await.unwrap().state.messages as usize;
    let mut messages = consumer.messages().await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < pending {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("the stream delivers what it holds")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().unwrap();
        ids.push(headers.get("Nats-Msg-Id").unwrap().to_string());
    }
    ids
}

async fn all_event_ids(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM events ORDER BY tx_id, position")
        .fetch_all(app.pg())
        .await
        .unwrap()
}

#[tokio::test]
async fn nats_restarted_during_a_run_loses_nothing() {
    let mut nats = PrivateNats::start();
    let app = TestApp::spawn_with(Options {
        worker: true,
        nats_url: Some(nats.url()),
        ..Options::default()
    })
    .await;
    let seeded = app.seed_app(WS).await;
    let before = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&before, "completed").await;

    nats.stop();
    // The API and the worker go on; PostgreSQL holds everything.
    let during = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart();
    let after = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for id in [&during, &after] {
        app.wait_status(id, "completed").await;
    }
    // Every event reached the stream, once.
    let expected = all_event_ids(&app).await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = stream_message_ids(&nats.url(), &app.prefix).await;
        if seen.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, expected);
    app.stop().await;
}

#[tokio::test]
async fn a_subscriber_sees_each_event_once_in_order_even_after_a_republish() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.create(&seeded.build).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        app.wait_status(id, "completed").await;
    }
    let expected = all_event_ids(&app).await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = stream_message_ids(&nats_url(), &app.prefix).await;
        if seen.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, expected);

    // Republish everything from the first position: JetStream drops the
    // duplicates by Nats-Msg-Id.
    let first: i64 = sqlx::query_scalar("SELECT min(position) FROM events")
        .fetch_one(app.pg())
        .await
        .unwrap();
    deployd::readers::relay::rewind(&app.db, first)
        .await
        .unwrap();
    let relay_done = || async {
        let cp = deployd::store::log::checkpoint(&app.db, deployd::readers::relay::NAME)
            .await
            .unwrap();
        let last: (i64, i64) = sqlx::query_as("SELECT tx_id::text::bigint, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1")
            .fetch_one(app.pg())
            .await
            .unwrap();
        cp.tx == last.0 && cp.position == last.1
    };
    for _ in 0..100 {
        if relay_done().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(relay_done().await, "the relay republished");
    assert_eq!(stream_message_ids(&nats_url(), &app.prefix).await, expected);

    // Subjects let a subscriber choose by workspace and type.
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .get_stream(format!("{}_events", app.prefix))
        .await
        .unwrap();
    let completed = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.events.{WS}.Deploy.DeployCompleted", app.prefix),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = completed.messages().await.unwrap();
    let mut completed_ids = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["type"], "DeployCompleted");
        assert_eq!(body["workspaceId"], WS);
        // The version is a number in the body, text in the header.
        assert_eq!(body["version"], 3);
        let header = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Deployd-Event-Version"));
        assert_eq!(header.map(|v| v.as_str()), Some("3"));
        completed_ids.push(body["aggregateId"].as_str().unwrap().to_string());
    }
    assert_eq!(completed_ids, ids);
    app.stop().await;
}
