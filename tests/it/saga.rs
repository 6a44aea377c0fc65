//! The saga worker end to end: real PostgreSQL, real NATS, local hosting.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use tokio_util::sync::CancellationToken;

use crate::helpers::*;

fn steps(detail: &Value) -> Vec<(String, String)> {
    detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn step_status(detail: &Value, name: &str) -> String {
    steps(detail)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

async fn fetch(app: &TestApp, url: &str) -> (StatusCode, String, String) {
    let response = app.client.get(url).send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

async fn a_deploy_completes_and_its_urls_serve_the_builds_files() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let build = app
        .seed_build(
            &seeded,
            &[
                ("index.html", "<h1>home</h1>"),
                ("css/site.css", "body{}"),
                ("docs/index.html", "docs"),
            ],
        )
        .await;
    let id = app.create(&build).await["id"].as_str().unwrap().to_string();
    let done = app.wait_status(&id, "completed").await;
    assert!(steps(&done).iter().all(|(_, s)| s == "completed"), "{done}");
    assert!(done["startedAt"].is_string() && done["completedAt"].is_string());
    let preview = done["previewUrl"].as_str().unwrap().to_string();
    let production = done["productionUrl"].as_str().unwrap().to_string();
    assert_eq!(preview, app.url(&format!("/preview/{id}/")));
    assert_eq!(production, app.url(&format!("/live/{}/", seeded.app)));

    for base in [&preview, &production] {
        let (status, content_type, body) = fetch(&app, base).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>home</h1>"));
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let (status, content_type, _) = fetch(&app, &format!("{base}css/site.css")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/css"));
        assert_eq!(fetch(&app, &format!("{base}docs")).await.2, "docs");
        assert_eq!(
            fetch(&app, &format!("{base}missing.js")).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            fetch(&app, &format!("{base}%2e%2e/secret")).await.0,
            StatusCode::NOT_FOUND
        );
    }
    // Each step completed exactly once, in order.
    let types = app.event_types(&id).await;
    assert_eq!(
        types,
        vec![
            "DeployCreated",
            "DeployStarted",
            "StepStarted",
            "StepCompleted",
            "StepStarted",
            "StepCompleted",
            "StepStarted",
            "StepCompleted",
            "DeployCompleted"
        ]
    );
    app.stop().await;
}

async fn a_second_deploy_switches_production_and_leaves_the_first_preview_intact() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let one = app.seed_build(&seeded, &[("index.html", "one")]).await;
    let two = app.seed_build(&seeded, &[("index.html", "two")]).await;
    let first = app.create(&one).await["id"].as_str().unwrap().to_string();
    let first = app.wait_status(&first, "completed").await;
    let production = first["productionUrl"].as_str().unwrap().to_string();
    assert_eq!(fetch(&app, &production).await.2, "one");

    let second = app.create(&two).await["id"].as_str().unwrap().to_string();
    let second = app.wait_status(&second, "completed").await;
    assert_eq!(second["sequenceNumber"], 2);
    assert_eq!(fetch(&app, &production).await.2, "two");
    assert_eq!(
        fetch(&app, first["previewUrl"].as_str().unwrap()).await.2,
        "one"
    );
    assert_eq!(
        fetch(&app, second["previewUrl"].as_str().unwrap()).await.2,
        "two"
    );
    app.stop().await;
}

async fn a_deploy_waits_for_the_running_one_of_its_entity_and_a_pending_cancel_sticks() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let big = app.seed_big_build(&seeded, 5_000).await;
    let small = app.seed_build(&seeded, &[("index.html", "small")]).await;
    let running = app.create(&big).await["id"].as_str().unwrap().to_string();
    app.wait_status(&running, "running").await;
    let waiting = app.create(&small).await["id"].as_str().unwrap().to_string();
    let third = app.create(&small).await["id"].as_str().unwrap().to_string();
    // It waits its turn: still pending while the first runs, so the cancel
    // finds it pending (its events below show it never started). The cancel
    // comes at once: the first deploy's 5,000 files are the only window.
    assert_eq!(app.detail(&waiting).await["status"], "pending");
    let cancel = app
        .post(
            &format!("/api/deploys/{waiting}/cancel"),
            &app.token,
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_eq!(app.detail(&waiting).await["status"], "cancelled");

    app.wait_status(&running, "completed").await;
    app.wait_status(&third, "completed").await;
    let cancelled = app.detail(&waiting).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(steps(&cancelled).iter().all(|(_, s)| s == "skipped"));
    assert_eq!(
        app.event_types(&waiting).await,
        vec!["DeployCreated", "DeployCancelled"]
    );
    // The deploys ran in order: the third started after the first ended.
    let first = app.detail(&running).await;
    let last = app.detail(&third).await;
    assert!(last["startedAt"].as_str().unwrap() >= first["completedAt"].as_str().unwrap());
    app.stop().await;
}

async fn cancel_during_a_20000_file_upload_stays_cancelled_and_never_goes_live() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let big = app.seed_big_build(&seeded, 20_000).await;
    let id = app.create(&big).await["id"].as_str().unwrap().to_string();
    app.wait_for(&id, "upload running", |d| {
        step_status(d, "upload") == "running"
    })
    .await;
    let cancel = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            json!({"reason": "stop"}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::OK);
    // At once in the log; the upload in flight goes on.
    let now = app.detail(&id).await;
    assert_eq!(now["status"], "cancelled");
    assert_eq!(step_status(&now, "upload"), "running");
    assert_eq!(step_status(&now, "promote"), "skipped");

    let after = app
        .wait_for(&id, "upload discarded", |d| {
            step_status(d, "upload") == "discarded"
        })
        .await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["productionUrl"], Value::Null);
    let types = app.event_types(&id).await;
    assert!(types.contains(&"StepDiscarded".to_string()), "{types:?}");
    assert!(!types.contains(&"DeployCompleted".to_string()), "{types:?}");
    let (status, _, _) = fetch(&app, &app.url(&format!("/live/{}/", seeded.app))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(&app, &app.url(&format!("/preview/{id}/"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn a_build_that_cannot_be_read_fails_the_deploy_with_a_clear_error() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let gone = format!("bld_{}", ulid::Ulid::generate());
    app.import(&[build_succeeded_doc(
        WS,
        &seeded.app,
        &seeded.version,
        &gone,
        app.artifacts
            .path()
            .join("nonexistent/site")
            .to_str()
            .unwrap(),
    )])
    .await;
    let id = app.create(&gone).await["id"].as_str().unwrap().to_string();
    let failed = app.wait_status(&id, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("prepare: ") && error.contains("nonexistent/site does not exist"),
        "{error}"
    );
    assert_eq!(
        steps(&failed),
        vec![
            ("prepare".to_string(), "failed".to_string()),
            ("upload".to_string(), "skipped".to_string()),
            ("promote".to_string(), "skipped".to_string()),
        ]
    );
    app.stop().await;
}

async fn a_step_that_keeps_timing_out_is_retried_then_fails_the_deploy() {
    let app = TestApp::spawn_with(Options {
        worker: true,
        worker_settings: deployd::worker::WorkerSettings {
            step_timeout: Duration::from_millis(1),
            attempts: 2,
            retry_backoff: Duration::from_millis(10),
            sweep_interval: Duration::from_millis(300),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let seeded = app.seed_app(WS).await;
    let big = app.seed_big_build(&seeded, 2_000).await;
    let id = app.create(&big).await["id"].as_str().unwrap().to_string();
    let failed = app.wait_status(&id, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("timed out") && error.contains("after 2 attempts"),
        "{error}"
    );
    app.stop().await;
}

async fn a_successful_build_of_an_auto_deploy_entity_deploys_once_per_upstream_event() {
    let app = TestApp::spawn().await;
    let app_id = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let build = format!("bld_{}", ulid::Ulid::generate());
    let mut entity = entity_doc(WS, &app_id, Some(&version));
    entity["entity"]["autoDeploy"] = json!(true);
    let built = build_succeeded_doc(WS, &app_id, &version, &build, "/srv/site");
    // Delivered twice by import and once more over NATS (when there is NATS).
    app.import(&[entity, built.clone(), built.clone()]).await;
    if let Some(url) = &app.options.nats_url {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        async_nats::jetstream::new(client)
            .publish(
                format!("{}.catalog.{WS}.build", app.prefix),
                built.to_string().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A build of another version deploys nothing.
    let other = build_succeeded_doc(
        WS,
        &app_id,
        "ver_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        &format!("bld_{}", ulid::Ulid::generate()),
        "/srv/x",
    );
    app.import(&[other]).await;

    let page: Value = app
        .get("/api/deploys", &app.token)
        .await
        .json()
        .await
        .unwrap();
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{page}");
    assert_eq!(rows[0]["trigger"], "auto");
    assert_eq!(rows[0]["sourceEventId"], built["eventId"]);
    assert_eq!(rows[0]["createdBy"], "system");
    assert_eq!(rows[0]["buildId"], build);
    app.stop().await;
}

/// Issue 12, item 4: a burst of deploys of one entity is that entity's
/// queue, not everyone's. With the burst queued first (on PostgreSQL + NATS
/// before any worker runs, so every message waits in JetStream ahead of the
/// idle entity's), the idle entity's deploy completes while most of the
/// burst has not, and the bus redelivers in proportion to the work, not
/// once per second per waiting message. The sweeper is off: the bus alone
/// must bring every deploy, parked ones included, to a drive.
async fn a_burst_on_one_entity_does_not_hold_up_a_deploy_of_another() {
    use futures::StreamExt;
    const BURST: usize = 80;
    let options = Options {
        // The embedded engine has no separate worker: it runs in the server
        // while the burst is created.
        worker: backend() == Backend::Sqlite,
        worker_settings: deployd::worker::WorkerSettings {
            sweep_interval: Duration::from_secs(3600),
            ..Options::default().worker_settings
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(options.clone()).await;
    let busy = app.seed_app(WS).await;
    let idle = app.seed_app(WS).await;
    let heavy = app.seed_big_build(&busy, 100).await;
    let burst: Vec<String> = futures::stream::iter(0..BURST)
        .map(|_| async { app.create(&heavy).await["id"].as_str().unwrap().to_string() })
        .buffer_unordered(8)
        .collect()
        .await;
    let lone = app.create(&idle.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let worker = CancellationToken::new();
    let separate = (backend() == Backend::Postgres).then(|| {
        let settings = settings(
            Some(app.database_url()),
            &app.prefix,
            app.data_dir.path(),
            app.artifacts.path(),
            &options,
        );
        tokio::spawn(deployd::startup::run_worker(settings, worker.clone()))
    });

    app.wait_status(&lone, "completed").await;
    // By the log's order: the burst's completions before the idle entity's.
    let sql = app.db.pick(
        "SELECT count(*) FROM events WHERE event_type = 'DeployCompleted' AND aggregate_id <> $1 \
         AND position < (SELECT position FROM events WHERE aggregate_id = $1 AND event_type = 'DeployCompleted')",
        "SELECT count(*) FROM events WHERE event_type = 'DeployCompleted' AND aggregate_id <> $1 \
         AND position < (SELECT position FROM events WHERE aggregate_id = $1 AND event_type = 'DeployCompleted')",
    );
    let before: i64 = deployd::on_db!(&app.db, pool => sqlx::query_scalar(sql).bind(&lone).fetch_one(pool).await.unwrap());
    assert!(
        (before as usize) < BURST / 2,
        "{before} of the {BURST} deploys of the busy entity completed before the idle entity's one"
    );
    for id in &burst {
        app.wait_status(id, "completed").await;
    }
    // Each deploy of the burst ran once, in the entity's order.
    let completed_steps = count(
        &app.db,
        "SELECT count(*) FROM events WHERE event_type = 'StepCompleted'",
    )
    .await;
    assert_eq!(completed_steps as usize, 3 * (BURST + 1));
    if let Some(nats) = &app.options.nats_url {
        let js = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
        let consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_stream(format!("{}_events", app.prefix))
            .await
            .unwrap()
            .get_consumer(&format!("{}_worker", app.prefix))
            .await
            .unwrap();
        let info = consumer.get_info().await.unwrap();
        assert!(
            info.num_redelivered < BURST / 4,
            "{} redeliveries for {} deploys",
            info.num_redelivered,
            BURST + 1
        );
        assert_eq!(info.num_ack_pending, 0);
    }
    worker.cancel();
    if let Some(separate) = separate {
        separate.await.unwrap().unwrap();
    }
    app.stop().await;
}

crate::backend_tests!(
    a_deploy_completes_and_its_urls_serve_the_builds_files,
    a_second_deploy_switches_production_and_leaves_the_first_preview_intact,
    a_deploy_waits_for_the_running_one_of_its_entity_and_a_pending_cancel_sticks,
    cancel_during_a_20000_file_upload_stays_cancelled_and_never_goes_live,
    a_build_that_cannot_be_read_fails_the_deploy_with_a_clear_error,
    a_step_that_keeps_timing_out_is_retried_then_fails_the_deploy,
    a_successful_build_of_an_auto_deploy_entity_deploys_once_per_upstream_event,
    a_burst_on_one_entity_does_not_hold_up_a_deploy_of_another,
);
