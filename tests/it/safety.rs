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
        (r#"{"x": 1e17}"#, "body/metadata/x"),
        (r#"{"x": 1e16}"#, "body/metadata/x"),
        (r#"{"x": -4.5e18}"#, "body/metadata/x"),
        (r#"{"x": 18446744073709551615}"#, "body"),
        (r#"{"x": 123456789012345678901234567890}"#, "body"),
        (r#"{"x": [0, -0.0]}"#, "body/metadata/x/1"),
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
            "max": 1.7976931348623157e308, "min": -1.7976931348623157e308, "big": 1e21,
            "tiny": 5e-324, "edge": 1.8446744073709552e19,
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
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query(
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
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query(sql).execute(pool).await.unwrap().rows_affected());
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
        (json!({"x": 1e17}), "data/metadata/x"),
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

/// Imports one `build.succeeded` of `seeded`'s app with `dir`, through a
/// feed with `roots`; returns the report and what it wrote on errors.
async fn import_build(
    app: &TestApp,
    seeded: &Seeded,
    dir: &str,
    roots: deployd::hosting::artifacts::ArtifactRoots,
) -> (deployd::catalog::ImportReport, String, String) {
    let build = format!("bld_{}", ulid::Ulid::generate());
    let feed = deployd::catalog::CatalogFeed::new(
        std::sync::Arc::new(deployd::store::commands::Commands::new(app.db.clone())),
        roots,
    );
    let doc = build_succeeded_doc(WS, &seeded.app, &seeded.version, &build, dir);
    let mut errors = Vec::new();
    let report = deployd::catalog::import(&feed, format!("{doc}\n").as_bytes(), &mut errors)
        .await
        .unwrap();
    (report, String::from_utf8(errors).unwrap(), build)
}

async fn an_artifact_dir_outside_the_roots_or_near_the_data_dir_is_refused_at_import() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let root = app.artifacts.path();
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    std::os::unix::fs::symlink(app.data_dir.path(), root.join("data-link")).unwrap();
    let data = app.data_dir.path().to_str().unwrap().to_string();
    let refused = [
        "/etc".to_string(),
        "/tmp".to_string(),
        "/".to_string(),
        data.clone(),
        format!("{data}/sites"),
        root.join("etc-link").to_str().unwrap().to_string(),
        root.join("data-link/x").to_str().unwrap().to_string(),
        format!("{}/../..", root.display()),
    ];
    for dir in &refused {
        let (report, errors, build) = import_build(&app, &seeded, dir, app.artifact_roots()).await;
        assert_eq!(report.rejected, 1, "{dir}: {errors}");
        assert!(
            errors.contains("build/artifactDir") && errors.contains(&build),
            "{dir}: {errors}"
        );
    }
    // A root wide enough to hold the data directory still never publishes it.
    let wide = deployd::hosting::artifacts::ArtifactRoots::new(
        vec![std::path::PathBuf::from("/")],
        app.data_dir.path(),
    );
    let (report, errors, _) = import_build(&app, &seeded, &data, wide).await;
    assert_eq!(report.rejected, 1);
    assert!(errors.contains("data directory"), "{errors}");
    // No roots at all: refused, saying how to allow a directory.
    let none = deployd::hosting::artifacts::ArtifactRoots::new(vec![], app.data_dir.path());
    let inside = root.join("site").to_str().unwrap().to_string();
    let (report, errors, _) = import_build(&app, &seeded, &inside, none).await;
    assert_eq!(report.rejected, 1);
    assert!(errors.contains("DEPLOYD_ARTIFACT_ROOTS"), "{errors}");
    // Nothing of those builds was recorded; one inside the roots is.
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Build'"
        )
        .await,
        1
    );
    let (report, _, _) = import_build(&app, &seeded, &inside, app.artifact_roots()).await;
    assert_eq!(report.recorded, 1);
    app.stop().await;
}

async fn a_deploy_checks_the_artifact_dir_again_and_never_follows_a_link_out_of_it() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    // A build whose directory is fine when recorded, and is then replaced
    // by a link to the data directory.
    let swapped = app.artifacts.path().join("swapped");
    std::fs::create_dir_all(&swapped).unwrap();
    std::fs::write(swapped.join("index.html"), "ok").unwrap();
    let (report, _, build) = import_build(
        &app,
        &seeded,
        swapped.to_str().unwrap(),
        app.artifact_roots(),
    )
    .await;
    assert_eq!(report.recorded, 1);
    std::fs::remove_dir_all(&swapped).unwrap();
    std::os::unix::fs::symlink(app.data_dir.path(), &swapped).unwrap();
    let id = app.create(&build).await["id"].as_str().unwrap().to_string();
    let failed = app.wait_status(&id, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("artifactDir refused") && error.contains("data directory"),
        "{error}"
    );

    // Links inside an artifact are not followed out of it.
    let site = app.artifacts.path().join("with-links");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "home").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", site.join("hostname.txt")).unwrap();
    std::os::unix::fs::symlink("/etc", site.join("etc")).unwrap();
    let (_, _, build) =
        import_build(&app, &seeded, site.to_str().unwrap(), app.artifact_roots()).await;
    let id = app.create(&build).await["id"].as_str().unwrap().to_string();
    let done = app.wait_status(&id, "completed").await;
    let preview = done["previewUrl"].as_str().unwrap();
    let get = |path: &str| app.client.get(format!("{preview}{path}")).send();
    assert_eq!(
        get("index.html").await.unwrap().text().await.unwrap(),
        "home"
    );
    assert_eq!(
        get("hostname.txt").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("etc/hostname").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

/// A `DeployCreated` v2 payload of deploy `id`, number `number` of `entity`.
fn created_data(id: &str, entity: &str, number: i64, metadata: Value) -> Value {
    json!({
        "deployId": id, "workspaceId": WS, "entityId": entity,
        "sequenceNumber": number, "buildId": "bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "versionId": "ver_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", "trigger": "manual",
        "sourceEventId": null, "metadata": metadata, "createdBy": "alice",
        "steps": ["prepare", "upload", "promote"], "createdAt": "2026-11-27T10:05:00Z"
    })
}

async fn an_events_import_the_store_refuses_one_line_of_imports_nothing() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let existing = app.create(&seeded.build).await;
    let before = count(&app.db, "SELECT count(*) FROM events").await;
    // 1,500 good lines (more than any batch), then a deploy that takes a
    // number the store already gave another deploy of the entity.
    let fresh = format!("app_{}", ulid::Ulid::generate());
    let mut text = String::new();
    for n in 1..=1500 {
        let id = format!("dep_{}", ulid::Ulid::generate());
        text.push_str(&export_line(
            n,
            &id,
            created_data(&id, &fresh, n, json!({})),
        ));
        text.push('\n');
    }
    let twin = format!("dep_{}", ulid::Ulid::generate());
    text.push_str(&export_line(
        1501,
        &twin,
        created_data(
            &twin,
            &seeded.app,
            existing["sequenceNumber"].as_i64().unwrap(),
            json!({}),
        ),
    ));
    text.push('\n');
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, text).unwrap();
    let source = deployd::audit::import::Source::open(file.to_str().unwrap())
        .await
        .unwrap();
    let failed = deployd::audit::import::import(&app.db, &source, false)
        .await
        .expect_err("the store refuses the last line");
    assert!(
        format!("{:#}", failed.error).contains("line 1501"),
        "{:#}",
        failed.error
    );
    assert_eq!(failed.committed.imported, 0);
    assert_eq!(count(&app.db, "SELECT count(*) FROM events").await, before);
    app.stop().await;
}

async fn nul_anywhere_in_the_list_is_the_same_400_on_both_engines() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    app.create(&seeded.build).await;
    for (param, value, pointer) in [
        (
            "filter",
            r#"{"createdBy": {"eq": "a\u0000"}}"#,
            "filter/createdBy/eq",
        ),
        (
            "filter",
            r#"{"metadata": {"contains": {"k\u0000": 1}}}"#,
            "filter/metadata/contains/k\\u0000",
        ),
        (
            "filter",
            r#"{"metadata": {"contains": {"k": "\u0000"}}}"#,
            "filter/metadata/contains/k",
        ),
        (
            "filter",
            r#"{"metadata": {"hasKey": "\u0000"}}"#,
            "filter/metadata/hasKey",
        ),
        (
            "filter",
            r#"{"status": {"in": ["pending", "\u0000"]}}"#,
            "filter/status/in/1",
        ),
        ("created_by", "a\u{0}b", "created_by"),
    ] {
        let response = app.list(&app.token, &[(param, value.to_string())]).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(pointers(&body), vec![pointer], "{param}={value}");
    }
    app.stop().await;
}

async fn errors_below_the_handlers_are_problem_json_too() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            body_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    // A body over the limit: 413.
    let big = "x".repeat(70 * 1024);
    let response = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"metadata": {{"a": "{big}"}}}}"#))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    // A path that is not UTF-8: 400 (or the 404 of a malformed id).
    let response = app.get("/api/deploys/dep_%FF%FE", &app.token).await;
    assert!(response.status().is_client_error());
    let status = response.status();
    problem(response, status).await;
    // A body that stops arriving: 408.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/deploys HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"buildId\"",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    app.stop().await;
}

async fn lenient_parsing_that_hid_mistakes_is_a_named_400() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    app.create(&seeded.build).await;
    // A typo in a parameter name lists nothing, it names the parameter.
    for (query, pointer) in [
        ("entityId=app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", "entityId"),
        ("status=pending&status=failed", "status"),
        ("created_by=%FF", "created_by"),
        ("filter=%7B%22status%22%3A%7B%7D%7D", "filter/status"),
        (
            "filter=%7B%22status%22%3A%7B%22eq%22%3A%22pending%22%2C%22eq%22%3A%22failed%22%7D%7D",
            "filter/status/eq",
        ),
    ] {
        let response = app.get(&format!("/api/deploys?{query}"), &app.token).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(pointers(&body), vec![pointer], "{query}");
    }
    let response = app
        .get(
            "/api/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M?asof=2026-01-01T00:00:00Z",
            &app.token,
        )
        .await;
    assert_eq!(
        pointers(&problem(response, StatusCode::BAD_REQUEST).await),
        vec!["asof"]
    );

    let send = |content_type: &'static str, body: String, key: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/api/deploys"))
            .bearer_auth(&app.token)
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };
    let build = &seeded.build;
    // A key twice: which one would win is a guess.
    let twice = format!(r#"{{"buildId": "{build}", "buildId": "{build}"}}"#);
    let response = send("application/json", twice, None).await.unwrap();
    assert_eq!(
        pointers(&problem(response, StatusCode::BAD_REQUEST).await),
        vec!["body/buildId"]
    );
    // Not declared as JSON: 415.
    let response = send("text/plain", format!(r#"{{"buildId": "{build}"}}"#), None)
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // The same JSON with its keys in another order replays.
    let first = format!(r#"{{"buildId": "{build}", "metadata": {{"a": 1, "b": 2}}}}"#);
    let reordered = format!(r#"{{"metadata": {{"b": 2, "a": 1}}, "buildId": "{build}"}}"#);
    let one = send("application/json", first, Some("order"))
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::CREATED);
    let one: Value = one.json().await.unwrap();
    let two = send("application/json", reordered, Some("order"))
        .await
        .unwrap();
    assert_eq!(two.status(), StatusCode::CREATED);
    assert_eq!(two.json::<Value>().await.unwrap()["id"], one["id"]);
    // appId takes apps only.
    let response = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"appId": "fn_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"}),
        )
        .await;
    assert_eq!(
        pointers(&problem(response, StatusCode::BAD_REQUEST).await),
        vec!["body/appId"]
    );
    app.stop().await;
}

async fn failed_authentications_are_limited_per_client_address() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            auth_failure_rate: 1,
            auth_failure_burst: 3,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let wrong = "dpd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for _ in 0..3 {
        let response = app.get("/api/deploys", wrong).await;
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let response = app.get("/api/deploys", wrong).await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("failed authentications"));
    // While the address is out of failures, nothing from it is looked up.
    let response = app.get("/api/deploys", &app.token).await;
    problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    app.stop().await;
}

/// Sends `request` as raw bytes and reads the whole answer (the server
/// closes the connection after an error it made itself).
async fn raw_exchange(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head: {answer:?}"));
    let status: u16 = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    (status, head.to_ascii_lowercase(), body)
}

async fn errors_hyper_makes_before_any_request_are_problem_json_too() {
    let app = TestApp::spawn().await;
    let address = app.address.trim_start_matches("http://").to_string();
    let ids = (0..10_000)
        .map(|_| format!("dep_{}", ulid::Ulid::generate()))
        .collect::<Vec<_>>()
        .join(",");
    let long = format!(
        "GET /api/deploys?ids={ids} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\r\n",
        app.token
    );
    // 10,000 ids: longer than hyper reads; its 414 is problem+json.
    let (status, head, body) = raw_exchange(&app, long.as_bytes()).await;
    assert_eq!(status, 414, "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(body["status"], 414);
    assert!(body["detail"].as_str().unwrap().contains("URI"), "{body}");
    // Below hyper's bound, above deployd's: the router's 414.
    let ids = (0..1_500)
        .map(|_| format!("dep_{}", ulid::Ulid::generate()))
        .collect::<Vec<_>>()
        .join(",");
    let response = app
        .get(&format!("/api/deploys?ids={ids}"), &app.token)
        .await;
    let body = problem(response, StatusCode::URI_TOO_LONG).await;
    assert!(body["detail"].as_str().unwrap().contains("bytes"), "{body}");
    // More headers than hyper reads: 431.
    let mut many = format!("GET /api/deploys HTTP/1.1\r\nHost: {address}\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-filler-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let (status, head, body) = raw_exchange(&app, many.as_bytes()).await;
    assert_eq!(status, 431, "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(body["status"], 431);
    // Not HTTP at all: 400.
    let (status, head, body) = raw_exchange(&app, b"HELLO THERE\r\n\r\n").await;
    assert_eq!(status, 400, "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(body["status"], 400);
    // The server still answers normally.
    let response = app.get("/api/deploys", &app.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

async fn a_webhook_fan_out_that_cannot_write_makes_readyz_503_naming_it() {
    let app = TestApp::spawn_with(Options {
        webhooks: deployd::webhooks::WebhookSettings {
            allow_private: true,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let seeded = app.seed_app(WS).await;
    let response = app
        .post(
            "/api/webhooks",
            &app.token,
            json!({"url": "http://127.0.0.1:9/hook", "description": "unreachable"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The fan-out's writes fail from now on (as a full disk or a broken
    // table would make them), and nothing else's.
    let refuse = app.db.pick(
        "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'deliveries refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON webhook_deliveries \
         FOR EACH ROW EXECUTE FUNCTION refuse_deliveries()",
        "CREATE TRIGGER refuse BEFORE INSERT ON webhook_deliveries \
         BEGIN SELECT RAISE(ABORT, 'deliveries refused by the test'); END",
    );
    deployd::on_writer!(app.db.writer().await, pool => sqlx::raw_sql(refuse).execute(pool).await.unwrap().rows_affected());
    // The fan-out has read everything so far.
    let mut before = -1;
    for _ in 0..200 {
        before = count(
            &app.db,
            "SELECT coalesce((SELECT position FROM checkpoints WHERE name = 'webhooks'), -1)",
        )
        .await;
        if before == count(&app.db, "SELECT max(position) FROM events").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.create(&seeded.build).await;
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
    let reader = last["readers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reader"] == "webhooks")
        .unwrap_or_else(|| panic!("no webhooks reader: {last}"))
        .clone();
    assert_eq!(reader["status"], "failing", "{last}");
    assert_eq!(reader["position"].as_i64().unwrap(), before, "{last}");
    assert!(reader["error"]
        .as_str()
        .unwrap()
        .contains("deliveries refused by the test"));
    let problems = last["problems"].to_string();
    assert!(
        problems.contains(&format!("webhooks failing after position {before}")),
        "{problems}"
    );
    // The projections are not held back by it.
    for r in last["readers"].as_array().unwrap() {
        if r["reader"] != "webhooks" {
            assert_eq!(r["status"], "ok", "{last}");
        }
    }
    // Once its writes go through again, it catches up and readyz is 200.
    let allow = app.db.pick(
        "DROP TRIGGER refuse ON webhook_deliveries",
        "DROP TRIGGER refuse",
    );
    deployd::on_writer!(app.db.writer().await, pool => sqlx::raw_sql(allow).execute(pool).await.unwrap().rows_affected());
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..200 {
        status = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

crate::backend_tests!(
    numbers_that_would_not_read_back_exactly_are_refused_at_create,
    accepted_numbers_read_back_exactly_from_every_path,
    a_reader_that_cannot_apply_an_event_makes_readyz_503_naming_it_and_its_position,
    a_reader_stalled_beyond_the_bound_makes_readyz_503,
    events_import_refuses_values_the_store_would_not_read_back,
    an_artifact_dir_outside_the_roots_or_near_the_data_dir_is_refused_at_import,
    a_deploy_checks_the_artifact_dir_again_and_never_follows_a_link_out_of_it,
    an_events_import_the_store_refuses_one_line_of_imports_nothing,
    nul_anywhere_in_the_list_is_the_same_400_on_both_engines,
    errors_below_the_handlers_are_problem_json_too,
    lenient_parsing_that_hid_mistakes_is_a_named_400,
    failed_authentications_are_limited_per_client_address,
    errors_hyper_makes_before_any_request_are_problem_json_too,
    a_webhook_fan_out_that_cannot_write_makes_readyz_503_naming_it,
);
