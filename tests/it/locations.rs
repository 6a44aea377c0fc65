//! Where a deploy is served (issue 12, item 13): events and rows record
//! the location (a path for deployd's own serving), and every answer builds
//! the URL from the answering server's `DEPLOYD_PUBLIC_URL`, so a worker
//! with another (or no) public URL, a server moved to another host, and a
//! log imported elsewhere all answer the current host.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// The payload of a deploy's stored `DeployCompleted`, as stored.
async fn stored_completion(app: &TestApp, id: &str) -> (String, Value) {
    let (version, payload): (String, String) = deployd::on_db!(&app.db, pool => sqlx::query_as(
        "SELECT event_version, CAST(payload AS TEXT) FROM events \
         WHERE aggregate_id = $1 AND event_type = 'DeployCompleted'",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap());
    (version, serde_json::from_str(&payload).unwrap())
}

async fn json_of(app: &TestApp, path: &str) -> Value {
    let r = app.get(path, &app.token).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

/// The `data` of the deploy's `DeployCompleted` as `/api/deploys/{id}/events`
/// answers it.
async fn answered_completion(app: &TestApp, id: &str) -> Value {
    let events = json_of(app, &format!("/api/deploys/{id}/events")).await;
    events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "DeployCompleted")
        .unwrap_or_else(|| panic!("no DeployCompleted in {events}"))["data"]
        .clone()
}

async fn a_worker_with_another_public_url_records_paths_and_the_server_answers_its_own() {
    // PostgreSQL + NATS: the worker runs as `deployd worker` would, in a
    // process role of its own, with a public URL of its own. The embedded
    // engine has no separate worker: serve's worker records the same paths.
    let separate = backend() == Backend::Postgres;
    let app = TestApp::spawn_with(Options {
        worker: !separate,
        public_url: Some("https://deploys.example/".into()),
        ..Options::default()
    })
    .await;
    let stop_worker = CancellationToken::new();
    let worker = separate.then(|| {
        let mut options = app.options.clone();
        options.worker = true;
        options.public_url = Some("http://worker.invalid:9".into());
        let settings = settings(
            Some(app.database_url()),
            &app.prefix,
            app.data_dir.path(),
            app.artifacts.path(),
            &options,
        );
        tokio::spawn(deployd::startup::run_worker(settings, stop_worker.clone()))
    });
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = app.wait_status(&id, "completed").await;
    let preview = format!("https://deploys.example/preview/{id}/");
    let live = format!("https://deploys.example/live/{}/", seeded.app);
    assert_eq!(done["previewUrl"], preview.as_str(), "{done}");
    assert_eq!(done["productionUrl"], live.as_str(), "{done}");

    // Stored: the paths, whatever the worker's public URL was.
    let (version, payload) = stored_completion(&app, &id).await;
    assert_eq!(version, "3");
    assert_eq!(
        payload["DeployCompleted"]["previewUrl"],
        format!("/preview/{id}/")
    );
    assert_eq!(
        payload["DeployCompleted"]["productionUrl"],
        format!("/live/{}/", seeded.app)
    );

    // Every answer carries the server's URLs: the list, the events, the
    // feed.
    let list = json_of(&app, &format!("/api/deploys?ids={id}")).await;
    assert_eq!(list["data"][0]["previewUrl"], preview.as_str());
    // A URL copied from an answer finds its deploy in the list.
    let found: Value = app
        .client
        .get(app.url("/api/deploys"))
        .query(&[("filter", json!({"previewUrl": {"eq": preview}}).to_string())])
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["pageInfo"]["total"], 1, "{found}");
    assert_eq!(found["data"][0]["id"], id.as_str());
    let entity = json_of(&app, &format!("/api/entities/{}", seeded.app)).await;
    assert_eq!(entity["productionUrl"], live.as_str(), "{entity}");
    let entities = json_of(&app, "/api/entities").await;
    assert_eq!(
        entities["data"][0]["productionUrl"],
        live.as_str(),
        "{entities}"
    );
    let completed = answered_completion(&app, &id).await;
    assert_eq!(completed["previewUrl"], preview.as_str());
    assert_eq!(completed["productionUrl"], live.as_str());
    let feed = json_of(&app, "/api/events?types=DeployCompleted").await;
    assert_eq!(
        feed["data"][0]["data"]["previewUrl"],
        preview.as_str(),
        "{feed}"
    );
    let events = json_of(&app, &format!("/api/deploys/{id}/events")).await;
    let promote = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "StepCompleted" && e["data"]["step"] == "promote")
        .unwrap();
    assert_eq!(promote["data"]["output"]["previewUrl"], preview.as_str());

    // The path serves the files on this server.
    let r = app
        .client
        .get(app.url(&format!("/preview/{id}/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    stop_worker.cancel();
    if let Some(worker) = worker {
        worker.await.unwrap().unwrap();
    }
    // The server moves to another host: the same deploy answers it.
    let mut app = app;
    app.options.public_url = Some("https://moved.example".into());
    let app = app.restart().await;
    let moved = app.detail(&id).await;
    assert_eq!(
        moved["previewUrl"],
        format!("https://moved.example/preview/{id}/")
    );
    assert_eq!(
        moved["productionUrl"],
        format!("https://moved.example/live/{}/", seeded.app)
    );
    app.stop().await;
}

async fn an_imported_log_answers_the_new_hosts_urls_even_where_old_events_hold_whole_urls() {
    // The source: a deploy completed by a version that recorded whole URLs
    // (a stored v2 `DeployCompleted` under an old host).
    let source = TestApp::spawn_with(Options {
        public_url: Some("https://a.example".into()),
        ..Options::default()
    })
    .await;
    let seeded = source.seed_app(WS).await;
    let id = source.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = json!({"DeployCompleted": {
        "previewUrl": format!("http://old.example:8080/preview/{id}/"),
        "productionUrl": format!("http://old.example:8080/live/{}/", seeded.app),
        "release": {"live": true, "pinnedBy": null},
        "completedAt": "2026-11-27T10:06:00Z",
    }});
    deployd::on_writer!(source.db.writer().await, pool => sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Deploy', $1, 2, 'DeployCompleted', '2', $2, '{\"actor\": \"system\"}')",
    )
    .bind(&id)
    .bind(&old)
    .execute(pool)
    .await
    .unwrap()
    .rows_affected());
    let done = source.wait_status(&id, "completed").await;
    assert_eq!(
        done["previewUrl"],
        format!("https://a.example/preview/{id}/")
    );
    assert_eq!(
        answered_completion(&source, &id).await["productionUrl"],
        format!("https://a.example/live/{}/", seeded.app)
    );
    // Stored bytes are untouched.
    let (version, payload) = stored_completion(&source, &id).await;
    assert_eq!((version.as_str(), &payload), ("2", &old));

    // Exported as the current version, with the location.
    let mut exported = Vec::new();
    deployd::audit::export::export(&source.db, None, None, &mut exported)
        .await
        .unwrap();
    let text = String::from_utf8(exported).unwrap();
    let line: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["type"] == "DeployCompleted")
        .unwrap();
    assert_eq!(line["version"], 3);
    assert_eq!(line["data"]["previewUrl"], format!("/preview/{id}/"));

    // Imported into a server on another host: its URLs, everywhere.
    let target = TestApp::spawn_with(Options {
        public_url: Some("https://b.example".into()),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, &text).unwrap();
    let from = deployd::audit::import::Source::open(file.to_str().unwrap())
        .await
        .unwrap();
    let summary = deployd::audit::import::import(&target.db, &from, true)
        .await
        .map_err(|f| f.error)
        .unwrap();
    assert!(summary.imported > 0);
    let imported = target.wait_status(&id, "completed").await;
    assert_eq!(
        imported["previewUrl"],
        format!("https://b.example/preview/{id}/")
    );
    assert_eq!(
        imported["productionUrl"],
        format!("https://b.example/live/{}/", seeded.app)
    );
    assert_eq!(
        answered_completion(&target, &id).await["previewUrl"],
        format!("https://b.example/preview/{id}/")
    );
    let feed = json_of(&target, "/api/events?types=DeployCompleted").await;
    assert_eq!(
        feed["data"][0]["data"]["productionUrl"],
        format!("https://b.example/live/{}/", seeded.app),
        "{feed}"
    );
    source.stop().await;
    target.stop().await;
}

crate::backend_tests!(
    a_worker_with_another_public_url_records_paths_and_the_server_answers_its_own,
    an_imported_log_answers_the_new_hosts_urls_even_where_old_events_hold_whole_urls,
);
