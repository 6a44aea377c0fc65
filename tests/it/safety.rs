//! Safe by default (issue 12): no input stops the pipeline, leaks across
//! workspaces or publishes the server's own files.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Creates a deploy of `build` with `metadata` as alice.
async fn create_with(app: &TestApp, build: &str, metadata: Value) -> reqwest::Response {
    app.post(
        "/api/deploys",
        &app.token,
        json!({"buildId": build, "metadata": metadata}),
    )
    .await
}

async fn numbers_that_would_not_read_back_exactly_are_refused_at_create() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    for (metadata, pointer) in [
        (r#"{"x": 1.7976931348623157e308}"#, "body/metadata/x"),
        (r#"{"x": 1e16}"#, "body/metadata/x"),
        (r#"{"x": 18446744073709551615}"#, "body/metadata/x"),
        (r#"{"x": [0, -0.0]}"#, "body/metadata/x/1"),
        (r#"{"x": 5e-324}"#, "body/metadata/x"),
        (r#"{"x\u0000": 1}"#, "body/metadata/x\\u0000"),
        (r#"{"x": "a\u0000b"}"#, "body/metadata/x"),
    ] {
        let body = format!(
            r#"{{"buildId": "{}", "metadata": {metadata}}}"#,
            seeded.build
        );
        let response = app
            .client
            .post(app.url("/api/deploys"))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(pointers(&problem), vec![pointer], "{metadata}");
    }
    // Nesting deeper than the store can hand back.
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "a": deep });
    }
    let response = create_with(&app, &seeded.build, deep).await;
    problem(response, StatusCode::BAD_REQUEST).await;
    // A cancel reason with NUL.
    let row = app.create(&seeded.build).await;
    let id = row["id"].as_str().unwrap();
    let response = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            json!({"reason": "a\u{0}b"}),
        )
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(pointers(&body), vec!["body/reason"]);
    assert_eq!(count(&app.db, "SELECT count(*) FROM deploys").await, 1);
    // The pipeline still moves: another workspace's create is answered.
    let other = app.seed_app(OTHER_WS).await;
    let response = app
        .post(
            "/api/deploys",
            &app.other_token,
            json!({"buildId": other.build}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.stop().await;
}

async fn accepted_numbers_read_back_exactly_from_every_path() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let metadata: Value = serde_json::from_str(
        r#"{"int": 9223372036854775807, "neg": -9223372036854775808, "half": 0.5,
            "tenth": 0.1, "small": 1.2345678901234567e-16, "large": 9999999999999998.0,
            "whole": 3.0, "exp": 1.5e-7, "zero": 0, "fzero": 0.0, "s": "ünï\u0001",
            "nested": [[[{"a": [1, 2.5, null, true, "x"]}]]]}"#,
    )
    .unwrap();
    let response = create_with(&app, &seeded.build, metadata.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let row: Value = response.json().await.unwrap();
    assert_eq!(row["metadata"], metadata);
    let id = row["id"].as_str().unwrap().to_string();
    assert_eq!(app.detail(&id).await["metadata"], metadata);
    let events: Value = app
        .get(&format!("/api/deploys/{id}/events"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["data"]["metadata"], metadata);
    let listed: Value = app
        .get(&format!("/api/deploys?ids={id}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["metadata"], metadata);
    app.stop().await;
}

/// On PostgreSQL a `jsonb` double comes back as `numeric` prints it: the
/// largest double as 309 digits. Events stored before the boundary refused
/// such values must still be read (else every reader stops at them).
#[tokio::test]
async fn a_stored_huge_number_still_decodes_as_postgresql_prints_it() {
    let app = TestApp::spawn().await;
    let printed: Value = sqlx::query_scalar("SELECT '{\"x\": 1.7976931348623157e308}'::jsonb")
        .fetch_one(app.pg())
        .await
        .unwrap();
    assert_eq!(printed["x"].as_f64(), Some(f64::MAX));
    app.stop().await;
}

/// Inserts an event no projection can apply (a `DeployCancelled` that is
/// not one), as a store written by another build might hold.
async fn insert_unreadable_event(app: &TestApp) -> String {
    let id = format!("dep_{}", ulid::Ulid::generate());
    deployd::on_db!(&app.db, pool => sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Deploy', $1, 1, 'DeployCancelled', '1', '{\"DeployCancelled\": {\"nonsense\": true}}', '{}')",
    )
    .bind(&id)
    .execute(pool)
    .await
    .unwrap()
    .rows_affected());
    id
}

async fn a_reader_that_cannot_apply_an_event_makes_readyz_503_naming_it_and_its_position() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    app.create(&seeded.build).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert!(body["readers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["reader"] == "deploys" && r["status"] == "ok"));
    let before: i64 = count(
        &app.db,
        "SELECT position FROM checkpoints WHERE name = 'deploys'",
    )
    .await;
    insert_unreadable_event(&app).await;
    let mut last = Value::Null;
    for _ in 0..200 {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        let status = ready.status();
        last = ready.json().await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["ready"], false, "{last}");
    let deploys = last["readers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reader"] == "deploys")
        .unwrap()
        .clone();
    assert_eq!(deploys["status"], "failing", "{last}");
    assert!(deploys["position"].as_i64().unwrap() >= before, "{last}");
    assert!(deploys["error"]
        .as_str()
        .unwrap()
        .contains("DeployCancelled"));
    let problems = last["problems"].to_string();
    assert!(
        problems.contains("deploys failing after position"),
        "{problems}"
    );
    // Counted for alerting.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("deployd_reader_failures_total{reader=\"deploys\"}"),
        "{metrics}"
    );
    app.stop().await;
}

async fn a_reader_stalled_beyond_the_bound_makes_readyz_503() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            ready_max_lag: Duration::ZERO,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    // A checkpoint no reader of this server moves, with events after it
    // (as a relay or projection of a stopped process would leave).
    let seeded = app.seed_app(WS).await;
    app.create(&seeded.build).await;
    let sql = app.db.pick(
        "INSERT INTO checkpoints (name, position, updated_at) VALUES ('elsewhere', 0, now() - interval '1 hour')",
        "INSERT INTO checkpoints (name, position, updated_at) VALUES ('elsewhere', 0, '2020-01-01T00:00:00Z')",
    );
    deployd::on_db!(&app.db, pool => sqlx::query(sql).execute(pool).await.unwrap().rows_affected());
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("elsewhere stalled after position 0"),
        "{body}"
    );
    app.stop().await;
}

/// An export line as `deployd events export` writes it, with `data`.
fn export_line(position: i64, id: &str, data: Value) -> String {
    json!({
        "position": position, "tx": 0, "eventId": format!("evt_{}", ulid::Ulid::generate()),
        "stream": {"type": "Deploy", "id": id}, "sequence": 1, "type": "DeployCreated",
        "version": "2", "recordedAt": "2026-11-27T10:05:00.000000Z",
        "metadata": {"actor": "alice"}, "data": data, "hash": null
    })
    .to_string()
}

async fn events_import_refuses_values_the_store_would_not_read_back() {
    let app = TestApp::spawn().await;
    let id = format!("dep_{}", ulid::Ulid::generate());
    let data = |metadata: Value| {
        json!({
            "deployId": id, "workspaceId": WS, "entityId": "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
            "sequenceNumber": 1, "buildId": "bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
            "versionId": "ver_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", "trigger": "manual",
            "sourceEventId": null, "metadata": metadata, "createdBy": "alice",
            "steps": ["prepare", "upload", "promote"], "createdAt": "2026-11-27T10:05:00Z"
        })
    };
    let dir = tempfile::tempdir().unwrap();
    for (metadata, expected) in [
        (json!({"x": 1e300}), "data/metadata/x"),
        (json!({"x": "a\u{0}"}), "data/metadata/x"),
    ] {
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, export_line(1, &id, data(metadata)) + "\n").unwrap();
        let source = deployd::audit::import::Source::open(file.to_str().unwrap())
            .await
            .unwrap();
        let failed = deployd::audit::import::import(&app.db, &source, false)
            .await
            .expect_err("refused");
        let message = format!("{:#}", failed.error);
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Deploy'"
        )
        .await,
        0
    );
    // The same line with ordinary metadata goes in.
    let file = dir.path().join("good.jsonl");
    std::fs::write(&file, export_line(1, &id, data(json!({"pr": 42}))) + "\n").unwrap();
    let source = deployd::audit::import::Source::open(file.to_str().unwrap())
        .await
        .unwrap();
    let summary = deployd::audit::import::import(&app.db, &source, false)
        .await
        .map_err(|f| f.error)
        .unwrap();
    assert_eq!(summary.imported, 1);
    app.stop().await;
}

crate::backend_tests!(
    numbers_that_would_not_read_back_exactly_are_refused_at_create,
    accepted_numbers_read_back_exactly_from_every_path,
    a_reader_that_cannot_apply_an_event_makes_readyz_503_naming_it_and_its_position,
    a_reader_stalled_beyond_the_bound_makes_readyz_503,
    events_import_refuses_values_the_store_would_not_read_back,
);
