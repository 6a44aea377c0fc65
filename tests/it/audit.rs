//! The log as evidence (issue 5): replay, `asOf`, export, the hash chain
//! and the upcaster.

use std::time::Duration;
use tokio::process::Command;

use chrono::{DateTime, Utc};
use deployd::domain::deploy::DeployCommand;
use deployd::store::commands::{CommandMeta, Commands};
use deployd::store::log::{self, LogPosition, LogSignals};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use deployd::store::Db;

/// The binary, on the test server's database: its PostgreSQL URL, or no
/// URL and its data directory (the embedded file).
fn deployd(app: &TestApp) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.kill_on_drop(true);
    match &app.database {
        Some((_, url)) => cmd.env("DATABASE_URL", url),
        None => cmd
            .env_remove("DATABASE_URL")
            .env("DEPLOYD_DATA_DIR", app.data_dir.path()),
    };
    cmd.env("DEPLOYD_LOG", "warn");
    cmd
}

/// Runs the binary without blocking the server and readers of this test.
/// The whole suite (and other suites on the same server) can use up
/// PostgreSQL's connections for a moment: a command that could not connect
/// is run again.
async fn run(app: &TestApp, args: &[&str]) -> std::process::Output {
    for _ in 0..40 {
        let out = deployd(app).args(args).output().await.unwrap();
        if !String::from_utf8_lossy(&out.stderr).contains("too many clients") {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("deployd {args:?}: PostgreSQL kept refusing connections");
}

/// Waits until the `deploys` projection has applied `head`.
async fn projected(app: &TestApp, head: LogPosition) {
    let done = log::wait_for_checkpoint(
        &app.db,
        &LogSignals::polling_only(),
        "deploys",
        head,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(done, "the deploys projection did not reach {head:?}");
}

/// Runs worker commands on a deploy, one after the other.
async fn drive(app: &TestApp, id: &str, commands: Vec<DeployCommand>) -> LogPosition {
    let c = Commands::new(app.db.clone());
    let mut head = LogPosition::START;
    for command in commands {
        head = c
            .deploy(id, command, &CommandMeta::system("req_test"))
            .await
            .unwrap();
    }
    projected(app, head).await;
    head
}

fn now() -> DateTime<Utc> {
    deployd::domain::time::now()
}

fn start() -> DeployCommand {
    DeployCommand::Start { at: now() }
}

fn step(name: &str, done: bool) -> DeployCommand {
    let step = name.to_string();
    if done {
        DeployCommand::CompleteStep {
            step,
            output: None,
            at: now(),
        }
    } else {
        DeployCommand::StartStep { step, at: now() }
    }
}

/// Deploys in every state: pending, running mid-step, completed, failed,
/// cancelled while pending, cancelled while a step ran (then discarded),
/// a later completion that took `live` from the first, and a completed
/// rollback to the first (live again, production pinned).
async fn histories(app: &TestApp) -> Vec<String> {
    let seeded = app.seed_app(WS).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(
            app.create(&seeded.build).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    drive(app, &ids[1], vec![start(), step("prepare", false)]).await;
    let mut all = vec![start()];
    for s in deployd::domain::deploy::STEPS {
        all.push(step(s, false));
        all.push(step(s, true));
    }
    all.push(DeployCommand::Complete {
        production_url: Some("https://prod.example".into()),
        preview_url: None,
        pinned_by: None,
        at: now(),
    });
    drive(app, &ids[2], all.clone()).await;
    drive(app, &ids[6], all.clone()).await;
    let rollback = app
        .post(
            &format!("/api/deploys/{}/rollback", ids[2]),
            &app.token,
            json!({"reason": "bad release"}),
        )
        .await;
    assert_eq!(rollback.status(), StatusCode::CREATED);
    let rollback: Value = rollback.json().await.unwrap();
    let rollback = rollback["id"].as_str().unwrap().to_string();
    drive(app, &rollback, all).await;
    ids.push(rollback);
    drive(
        app,
        &ids[3],
        vec![
            start(),
            step("prepare", false),
            DeployCommand::FailStep {
                step: "prepare".into(),
                error: "disk full".into(),
                at: now(),
            },
            DeployCommand::Fail {
                error: "prepare failed".into(),
                at: now(),
            },
        ],
    )
    .await;
    let cancel = |reason: &str| DeployCommand::Cancel {
        reason: Some(reason.into()),
        by: "alice".into(),
        at: now(),
    };
    drive(app, &ids[4], vec![cancel("wrong branch")]).await;
    drive(
        app,
        &ids[5],
        vec![
            start(),
            step("prepare", false),
            cancel("stop"),
            step("prepare", true),
        ],
    )
    .await;
    ids
}

/// Every row of the read model, ordered, as the engine renders it in JSON.
async fn dump(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("deploys", "id"),
        ("deploy_steps", "deploy_id, ordinal"),
        ("entities", "id"),
        ("builds", "id"),
        ("releases", "entity_id"),
    ] {
        let sql = match &app.db {
            Db::Postgres(_) => {
                format!("SELECT '{table} ' || to_jsonb(t)::text FROM {table} t ORDER BY {order}")
            }
            Db::Sqlite(e) => {
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(&e.pool)
                        .await
                        .unwrap();
                let pairs: Vec<String> = columns.iter().map(|c| format!("'{c}', {c}")).collect();
                format!(
                    "SELECT '{table} ' || json_object({}) FROM {table} ORDER BY {order}",
                    pairs.join(", ")
                )
            }
        };
        let rows: Vec<String> = deployd::on_db!(&app.db, pool => sqlx::query_scalar(&sql)
            .fetch_all(pool)
            .await
            .unwrap());
        out.extend(rows);
    }
    out
}

/// The names and definitions of the read model's tables, indexes and
/// constraints.
async fn shape(app: &TestApp) -> Vec<String> {
    let sql = app.db.pick(
        "SELECT c.relname || ' ' || i.relname || ' ' || pg_get_indexdef(i.oid) FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid \
         WHERE c.relname IN ('deploys', 'deploy_steps', 'entities', 'builds', 'releases') \
         UNION ALL SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE conrelid::regclass::text IN ('deploys', 'deploy_steps', 'entities', 'builds', 'releases') \
         ORDER BY 1",
        "SELECT tbl_name || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master \
         WHERE tbl_name IN ('deploys', 'deploy_steps', 'entities', 'builds', 'releases') ORDER BY 1",
    );
    deployd::on_db!(&app.db, pool => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap())
}

async fn list_and_details(app: &TestApp, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    let list = app.get("/api/deploys?limit=100", &app.token).await;
    assert_eq!(list.status(), StatusCode::OK);
    out.push(list.json::<Value>().await.unwrap());
    for id in ids {
        let r = app.get(&format!("/api/deploys/{id}"), &app.token).await;
        assert_eq!(r.status(), StatusCode::OK);
        out.push(r.json::<Value>().await.unwrap());
    }
    out
}

async fn replay_rebuilds_the_read_model_byte_for_byte_while_the_api_keeps_serving() {
    // The reader below asks as fast as it can; the per-token rate limit
    // (tested in ops.rs) is off so that every answer must be a 200.
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            rate_limit_per_second: 0,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let ids = histories(&app).await;
    let before = dump(&app).await;
    let shape_before = shape(&app).await;
    let answers_before = list_and_details(&app, &ids).await;

    // Readers hammer the API for the whole replay; every answer is a 200.
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = {
        let (client, url, token, id, stop) = (
            app.client.clone(),
            app.url(&format!("/api/deploys/{}", ids[2])),
            app.token.clone(),
            ids[2].clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "detail of {id} during replay");
                n += 1;
            }
            n
        })
    };

    let out = run(&app, &["replay"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("events/s"), "no progress line: {stderr}");
    assert!(
        stderr.contains("replay done: projections catalog, deploys"),
        "{stderr}"
    );

    // Twice more, one projection by name: names of indexes and
    // constraints survive repeated swaps.
    let out = run(&app, &["replay", "--projection", "deploys"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&app, &["replay", "--projection", "deploys"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&app, &["replay", "--projection", "nope"]).await;
    assert!(!out.status.success());

    stop.cancel();
    assert!(reader.await.unwrap() > 0);

    assert_eq!(dump(&app).await, before);
    assert_eq!(shape(&app).await, shape_before);
    assert_eq!(list_and_details(&app, &ids).await, answers_before);
    if let Db::Postgres(pool) = &app.db {
        // no rebuild schema left behind
        let leftovers: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'deployd\\_%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(leftovers, 0);
    }

    // The live projector carries on with the new tables.
    let seeded = app.seed_app(WS).await;
    let created = app.create(&seeded.build).await;
    let id = created["id"].as_str().unwrap();
    drive(&app, id, vec![start()]).await;
    let r: Value = app
        .get(&format!("/api/deploys/{id}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "running");
    app.stop().await;
}

async fn events_appended_during_a_replay_are_in_the_rebuilt_tables() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let first = app.create(&seeded.build).await;
    let db = app.db.clone();
    let projections = deployd::read_model::projections();
    // Append while the replay runs: its progress callback creates deploys.
    let mut created = Vec::new();
    let summary = {
        let replay = deployd::audit::replay::replay(&db, &projections, |_| {});
        let writes = async {
            for _ in 0..5 {
                created.push(
                    app.create(&seeded.build).await["id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        };
        let (summary, ()) = tokio::join!(replay, writes);
        summary.unwrap()
    };
    assert!(summary.events + summary.caught_up >= 3);
    let live = dump(&app).await;
    // Every deploy is there once the projector settles.
    for id in created
        .iter()
        .chain([first["id"].as_str().unwrap().to_string()].iter())
    {
        let r = app.get(&format!("/api/deploys/{id}"), &app.token).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // A fresh replay of a quiet log gives the same rows.
    deployd::audit::replay::replay(&db, &projections, |_| {})
        .await
        .unwrap();
    assert_eq!(dump(&app).await, live);
    app.stop().await;
}

async fn a_replay_in_tiny_batches_folds_each_deploy_across_batches_to_the_same_rows() {
    let app = TestApp::spawn().await;
    histories(&app).await;
    let before = dump(&app).await;
    let mut reports = 0;
    let summary = deployd::audit::replay::replay_in_batches(
        &app.db,
        &deployd::read_model::projections(),
        2,
        |_| reports += 1,
    )
    .await
    .unwrap();
    assert!(reports >= 1);
    let events = count(&app.db, "SELECT count(*) FROM events").await;
    assert_eq!((summary.events + summary.caught_up) as i64, events);
    assert_eq!(dump(&app).await, before);
    app.stop().await;
}

async fn recorded_at(app: &TestApp, id: &str) -> Vec<DateTime<Utc>> {
    deployd::on_db!(&app.db, pool => sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE aggregate_type = 'Deploy' AND aggregate_id = $1 \
         ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap())
}

async fn as_of(app: &TestApp, id: &str, at: DateTime<Utc>) -> reqwest::Response {
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    app.client
        .get(app.url(&format!("/api/deploys/{id}")))
        .query(&[("asOf", at)])
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
}

async fn as_of_answers_the_deploy_as_it_stood_at_each_instant() {
    let app = TestApp::spawn().await;
    let ids = histories(&app).await;
    let cancelled_running = &ids[5];
    let times = recorded_at(&app, cancelled_running).await;
    assert_eq!(times.len(), 5);

    // Before it existed: 404.
    let r = as_of(
        &app,
        cancelled_running,
        times[0] - chrono::Duration::microseconds(1),
    )
    .await;
    problem(r, StatusCode::NOT_FOUND).await;

    // Just created: pending, every step pending.
    let d: Value = as_of(&app, cancelled_running, times[0])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["status"], "pending");
    assert_eq!(d["startedAt"], Value::Null);
    assert!(d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "pending"));
    assert_eq!(d["cancellation"], Value::Null);

    // Started, first step running.
    let d: Value = as_of(&app, cancelled_running, times[2])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["status"], "running");
    assert_eq!(d["steps"][0]["status"], "running");
    assert_eq!(d["steps"][1]["status"], "pending");

    // Cancelled: pending steps skipped, the running one still running.
    let d: Value = as_of(&app, cancelled_running, times[3])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["status"], "cancelled");
    assert_eq!(d["cancellation"]["reason"], "stop");
    assert_eq!(d["steps"][0]["status"], "running");
    assert_eq!(d["steps"][1]["status"], "skipped");

    // After everything: exactly what the projection serves, for every
    // history (the fold and the projection SQL agree).
    for id in &ids {
        let live: Value = app
            .get(&format!("/api/deploys/{id}"), &app.token)
            .await
            .json()
            .await
            .unwrap();
        let folded: Value = as_of(&app, id, now()).await.json().await.unwrap();
        assert_eq!(folded, live, "deploy {id}");
    }

    // Outside the caller's workspaces: 404 at any instant.
    let r = app
        .client
        .get(app.url(&format!("/api/deploys/{}", ids[0])))
        .query(&[("asOf", "2100-01-01T00:00:00Z")])
        .bearer_auth(&app.other_token)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND).await;

    // A bad timestamp: 400 naming asOf.
    let r = app
        .get(
            &format!("/api/deploys/{}?asOf=yesterday", ids[0]),
            &app.token,
        )
        .await;
    let body = problem(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(pointers(&body), vec!["asOf"]);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("received \"yesterday\""),
        "{body}"
    );

    // A + offset typed into the URL unencoded arrives as a space: it is
    // read as the + it was, the same instant as UTC.
    let at = times[3];
    let plus = (at + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%S%.6f+02:00")
        .to_string();
    let typed: Value = app
        .get(
            &format!("/api/deploys/{cancelled_running}?asOf={plus}"),
            &app.token,
        )
        .await
        .json()
        .await
        .unwrap();
    let encoded: Value = as_of(&app, cancelled_running, at)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(typed["status"], "cancelled", "{typed}");
    assert_eq!(typed, encoded);
    app.stop().await;
}

async fn export(app: &TestApp, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["events", "export"];
    args.extend_from_slice(extra);
    let out = run(app, &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn export_writes_every_event_once_in_log_order_with_its_hash() {
    let app = TestApp::spawn().await;
    histories(&app).await;
    let other = app.seed_app(OTHER_WS).await;
    let r = app
        .post(
            "/api/deploys",
            &app.other_token,
            json!({"buildId": other.build}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let lines = export(&app, &[]).await;
    let sql = app.db.pick(
        "SELECT position, tx_id::text::bigint, encode(hash, 'hex') FROM events ORDER BY tx_id, position",
        "SELECT position, tx_id, lower(hex(hash)) FROM events ORDER BY tx_id, position",
    );
    let stored: Vec<(i64, i64, String)> =
        deployd::on_db!(&app.db, pool => sqlx::query_as(sql).fetch_all(pool).await.unwrap());
    let exported: Vec<(i64, i64, String)> = lines
        .iter()
        .map(|l| {
            (
                l["position"].as_i64().unwrap(),
                l["tx"].as_i64().unwrap(),
                l["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(exported, stored);
    let first = &lines[0];
    for field in [
        "eventId",
        "stream",
        "sequence",
        "type",
        "version",
        "recordedAt",
        "metadata",
        "data",
    ] {
        assert!(!first[field].is_null(), "{field} missing in {first}");
    }
    let created = lines.iter().find(|l| l["type"] == "DeployCreated").unwrap();
    assert_eq!(created["version"], 3);
    assert_eq!(created["stream"]["type"], "Deploy");
    assert_eq!(created["metadata"]["actor"], "alice");

    // Resuming after a line gives exactly the rest.
    let cut = &lines[lines.len() / 2];
    let from = format!("{}:{}", cut["tx"], cut["position"]);
    assert_eq!(
        export(&app, &["--from", &from]).await,
        lines[lines.len() / 2 + 1..]
    );
    let bare = cut["position"].to_string();
    assert_eq!(
        export(&app, &["--from", &bare]).await,
        lines[lines.len() / 2 + 1..]
    );

    // One workspace: its streams, every event of them (later deploy events
    // carry no workspaceId of their own).
    let mine = export(&app, &["--workspace", OTHER_WS]).await;
    let expected: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            let id = l["stream"]["id"].as_str().unwrap();
            id == other.app
                || id == other.build
                || lines
                    .iter()
                    .any(|c| c["stream"]["id"] == id && c["data"]["workspaceId"] == OTHER_WS)
        })
        .collect();
    assert_eq!(mine.iter().collect::<Vec<_>>(), expected);
    assert_eq!(mine.len(), 3, "entity, build, one deploy: {mine:?}");
    app.stop().await;
}

async fn audit_verify_names_a_tampered_payload_and_a_deleted_event() {
    let app = TestApp::spawn().await;
    let ids = histories(&app).await;
    let out = run(&app, &["audit", "verify"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());

    // Someone edits a payload in place.
    let tamper = app.db.pick(
        "UPDATE events SET payload = jsonb_set(payload, '{DeployCompleted,productionUrl}', '\"https://evil.example\"') \
         WHERE aggregate_id = $1 AND event_type = 'DeployCompleted'",
        "UPDATE events SET payload = json_set(payload, '$.DeployCompleted.productionUrl', 'https://evil.example') \
         WHERE aggregate_id = $1 AND event_type = 'DeployCompleted'",
    );
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query(tamper).bind(&ids[2]).execute(pool).await.unwrap()
    .rows_affected());
    let completed_seq: i64 = deployd::on_db!(&app.db, pool => sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_id = $1 AND event_type = 'DeployCompleted'",
    )
    .bind(&ids[2])
    .fetch_one(pool)
    .await
    .unwrap());
    // Someone deletes an event from the middle of another stream.
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query(
        "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2",
    )
    .bind(&ids[3])
    .execute(pool)
    .await
    .unwrap()
    .rows_affected());

    let out = run(&app, &["audit", "verify"]).await;
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    lines.sort();
    let mut expected = vec![
        format!(
            "Deploy/{} sequence {completed_seq}: hash does not match",
            ids[2]
        ),
        format!("Deploy/{} sequence 2: missing", ids[3]),
        // the next event was chained to the deleted one
        format!("Deploy/{} sequence 3: hash does not match", ids[3]),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    app.stop().await;
}

async fn a_stored_v1_deploy_created_is_read_as_the_current_version_everywhere() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = format!("dep_{}", ulid::Ulid::generate());
    // A DeployCreated as version 1 wrote it: no versionId.
    let v1 = json!({"DeployCreated": {
        "deployId": id, "workspaceId": WS, "entityId": seeded.app, "sequenceNumber": 0,
        "buildId": seeded.build, "trigger": "manual", "sourceEventId": null,
        "metadata": {}, "createdBy": "alice", "steps": ["prepare", "upload", "promote"],
        "createdAt": "2026-11-27T10:05:00Z"
    }});
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Deploy', $1, 1, 'DeployCreated', '1', $2, '{\"actor\": \"alice\"}')",
    )
    .bind(&id)
    .bind(&v1)
    .execute(pool)
    .await
    .unwrap()
    .rows_affected());

    // The log reader (projection, replay, export, asOf) sees v3: v1 → v2
    // (`versionId`) → v3 (`target` and the release fields).
    let events = log::read_stream(&app.db, "Deploy", &id, 0, 10)
        .await
        .unwrap();
    assert_eq!(events[0].event_version, "3");
    assert_eq!(events[0].data()["versionId"], Value::Null);
    assert_eq!(events[0].data()["target"], "production");
    assert_eq!(events[0].data()["rollbackOf"], Value::Null);
    assert_eq!(events[0].data()["buildId"], seeded.build);
    // The API's audit view and the export too.
    let mut found = Value::Null;
    for _ in 0..200 {
        let r = app
            .get(&format!("/api/deploys/{id}/events"), &app.token)
            .await;
        if r.status() == StatusCode::OK {
            found = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found[0]["version"], 3);
    assert_eq!(found[0]["data"]["versionId"], Value::Null);
    let line = export(&app, &[])
        .await
        .into_iter()
        .find(|l| l["stream"]["id"] == id.as_str())
        .unwrap();
    assert_eq!(line["version"], 3);
    assert!(line["data"].as_object().unwrap().contains_key("versionId"));

    // The aggregate loads it through cqrs-es's upcaster and decides on it.
    let r = app
        .post(&format!("/api/deploys/{id}/cancel"), &app.token, json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = app
        .get(&format!("/api/deploys/{id}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["status"], "cancelled");
    assert_eq!(d["sequenceNumber"], 1);
    assert_eq!(d["target"], "production");
    assert_eq!(d["live"], false);

    // Stored bytes are untouched: still v1, and the chain holds.
    let stored: String = deployd::on_db!(&app.db, pool => sqlx::query_scalar(
        "SELECT event_version FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&id)
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(stored, "1");
    assert!(run(&app, &["audit", "verify"]).await.status.success());
    app.stop().await;
}

crate::backend_tests!(
    replay_rebuilds_the_read_model_byte_for_byte_while_the_api_keeps_serving,
    events_appended_during_a_replay_are_in_the_rebuilt_tables,
    a_replay_in_tiny_batches_folds_each_deploy_across_batches_to_the_same_rows,
    as_of_answers_the_deploy_as_it_stood_at_each_instant,
    export_writes_every_event_once_in_log_order_with_its_hash,
    audit_verify_names_a_tampered_payload_and_a_deleted_event,
    a_stored_v1_deploy_created_is_read_as_the_current_version_everywhere,
);
