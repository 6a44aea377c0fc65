//! Releases end to end (`spec/releases.md`): targets, the one live deploy
//! of an entity, rollback, promotion and the deploy policy, through the
//! real server on both engines.

use std::time::Duration;

use chrono::Utc;
use deployd::domain::deploy::DeployCommand;
use deployd::store::commands::{CommandMeta, Commands};
use deployd::store::log::{self, LogPosition, LogSignals};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

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

/// Runs a deploy through start and every step, short of `Complete`.
async fn run_steps(commands: &Commands, id: &str) {
    let meta = CommandMeta::system("req_test");
    let mut all = vec![DeployCommand::Start { at: Utc::now() }];
    for s in deployd::domain::deploy::STEPS {
        let step = s.to_string();
        all.push(DeployCommand::StartStep {
            step: step.clone(),
            at: Utc::now(),
        });
        all.push(DeployCommand::CompleteStep {
            step,
            output: None,
            at: Utc::now(),
        });
    }
    for command in all {
        commands.deploy(id, command, &meta).await.unwrap();
    }
}

fn complete() -> DeployCommand {
    DeployCommand::Complete {
        production_url: Some("https://prod.example/".into()),
        preview_url: None,
        pinned_by: None,
        at: Utc::now(),
    }
}

/// The deploys of `entity` the list shows live now.
async fn live_ids(app: &TestApp, entity: &str) -> Vec<String> {
    let filter = json!({"live": {"eq": true}, "entityId": {"eq": entity}}).to_string();
    let page: Value = app
        .client
        .get(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .query(&[("filter", filter.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

async fn two_production_deploys_completing_at_once_leave_exactly_one_live() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let commands = Commands::new(app.db.clone());
    for _round in 0..3 {
        let a = app.create(&seeded.build).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let b = app.create(&seeded.build).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        run_steps(&commands, &a).await;
        run_steps(&commands, &b).await;
        let meta = CommandMeta::system("req_test");
        // Two workers (no lease here) complete both at the same instant.
        let (ra, rb) = tokio::join!(
            commands.deploy(&a, complete(), &meta),
            commands.deploy(&b, complete(), &meta)
        );
        let head = ra.unwrap().max(rb.unwrap());
        projected(&app, head).await;
        // The one whose completion the log has last is live, alone.
        let last: String = deployd::on_db!(&app.db, pool => sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE event_type = 'DeployCompleted' \
               AND aggregate_id IN ($1, $2) ORDER BY tx_id DESC, position DESC LIMIT 1",
        )
        .bind(&a)
        .bind(&b)
        .fetch_one(pool)
        .await
        .unwrap());
        assert_eq!(live_ids(&app, &seeded.app).await, vec![last.clone()]);
        let (da, db) = (app.detail(&a).await, app.detail(&b).await);
        assert_eq!(
            [da["live"].as_bool(), db["live"].as_bool()],
            [Some(last == a), Some(last == b)]
        );
        assert_eq!(da["target"], "production");
    }
    let rows = count(
        &app.db,
        &format!(
            "SELECT count(*) FROM deploys WHERE entity_id = '{}' AND live",
            seeded.app
        ),
    )
    .await;
    assert_eq!(rows, 1);
    app.stop().await;
}

async fn a_completed_production_deploy_replaces_the_live_one_and_old_previews_keep_serving() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let first = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_done = app.wait_status(&first, "completed").await;
    assert_eq!(first_done["live"], true);
    let build = app
        .seed_build(&seeded, &[("index.html", "<h1>second</h1>")])
        .await;
    let second = app.create(&build).await["id"].as_str().unwrap().to_string();
    let second_done = app.wait_status(&second, "completed").await;
    assert_eq!(second_done["live"], true);
    assert_eq!(app.detail(&first).await["live"], false);
    // One production URL across deploys: the entity's.
    let production = app.url(&format!("/live/{}/", seeded.app));
    assert_eq!(first_done["productionUrl"], production.as_str());
    assert_eq!(second_done["productionUrl"], production.as_str());
    let body = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(body(production.clone()).await, "<h1>second</h1>");
    // The first keeps its own preview.
    assert_eq!(
        body(first_done["previewUrl"].as_str().unwrap().to_string()).await,
        format!("<h1>{}</h1>", seeded.build)
    );
    assert_eq!(live_ids(&app, &seeded.app).await, vec![second.clone()]);
    app.stop().await;
}

async fn a_preview_deploy_never_goes_live_and_target_is_set_at_create_or_defaulted() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    // A build of another version defaults to preview.
    let other_version = format!("ver_{}", ulid::Ulid::generate());
    let other_build = format!("bld_{}", ulid::Ulid::generate());
    let dir = app.artifacts.path().join(format!("site-{other_build}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>other</h1>").unwrap();
    let report = app
        .import(&[build_succeeded_doc(
            WS,
            &seeded.app,
            &other_version,
            &other_build,
            dir.to_str().unwrap(),
        )])
        .await;
    assert_eq!(report.rejected, 0);
    let preview = app.create(&other_build).await;
    assert_eq!(preview["target"], "preview");
    let explicit = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"buildId": seeded.build, "target": "preview"}),
        )
        .await;
    assert_eq!(explicit.status(), StatusCode::CREATED);
    let explicit: Value = explicit.json().await.unwrap();
    assert_eq!(explicit["target"], "preview");
    for id in [&preview["id"], &explicit["id"]] {
        let done = app.wait_status(id.as_str().unwrap(), "completed").await;
        assert_eq!(done["live"], false);
        assert!(done["productionUrl"].is_null(), "{done}");
        assert!(done["previewUrl"].is_string());
    }
    assert!(live_ids(&app, &seeded.app).await.is_empty());
    // An unknown target is a 400 naming it, and nothing is recorded.
    let before = count(&app.db, "SELECT count(*) FROM events").await;
    let bad = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"buildId": seeded.build, "target": "staging"}),
        )
        .await;
    let body = problem(bad, StatusCode::BAD_REQUEST).await;
    assert_eq!(pointers(&body), vec!["body/target"]);
    assert_eq!(count(&app.db, "SELECT count(*) FROM events").await, before);
    // Filter and order by target.
    let page: Value = app
        .client
        .get(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .query(&[
            ("target", "preview"),
            ("orderBy", r#"[{"target": "asc"}, {"live": "desc"}]"#),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["pageInfo"]["total"], 2, "{page}");
    app.stop().await;
}

/// The text the URL serves.
async fn body(app: &TestApp, url: &str) -> String {
    app.client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Blobs in the artifact store (a directory, `<data>/blobs/sha256/`).
fn blobs(app: &TestApp) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&app.data_dir.path().join("blobs/sha256"))
}

/// The entity's release row: (live deploy, pinned by).
async fn release_row(app: &TestApp, entity: &str) -> (Option<String>, Option<String>) {
    deployd::on_db!(&app.db, pool => sqlx::query_as(
        "SELECT live_deploy_id, pinned_by FROM releases WHERE entity_id = $1",
    )
    .bind(entity)
    .fetch_one(pool)
    .await
    .unwrap())
}

async fn a_rollback_goes_live_and_pins_production_until_a_promotion() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let first = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&first, "completed").await;
    let second_build = app
        .seed_build(&seeded, &[("index.html", "<h1>second</h1>")])
        .await;
    let second = app.create(&second_build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&second, "completed").await;
    let production = app.url(&format!("/live/{}/", seeded.app));
    assert_eq!(body(&app, &production).await, "<h1>second</h1>");
    let stored = blobs(&app);

    // Back to the first.
    let r = app
        .post(
            &format!("/api/deploys/{first}/rollback"),
            &app.token,
            json!({"reason": "bad release"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let rollback: Value = r.json().await.unwrap();
    assert_eq!(rollback["trigger"], "rollback");
    assert_eq!(rollback["target"], "production");
    assert_eq!(rollback["rollbackOf"], first.as_str());
    assert_eq!(rollback["buildId"], seeded.build.as_str());
    assert_eq!(rollback["createdBy"], "alice");
    let rollback = rollback["id"].as_str().unwrap().to_string();
    let done = app.wait_status(&rollback, "completed").await;
    assert_eq!(done["live"], true);
    assert_eq!(app.detail(&second).await["live"], false);
    assert_eq!(
        body(&app, &production).await,
        format!("<h1>{}</h1>", seeded.build)
    );
    // Its files were stored already: nothing was copied again.
    assert_eq!(blobs(&app), stored);
    assert_eq!(
        release_row(&app, &seeded.app).await,
        (Some(rollback.clone()), Some(rollback.clone()))
    );
    // Who and why are in the events.
    let events: Vec<Value> = app
        .get(&format!("/api/deploys/{rollback}/events"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["actor"], "alice");
    assert_eq!(events[0]["data"]["reason"], "bad release");
    assert_eq!(events[0]["data"]["rollbackOf"], first.as_str());
    let completed = events.last().unwrap();
    assert_eq!(completed["type"], "DeployCompleted");
    assert_eq!(
        completed["data"]["release"],
        json!({"live": true, "pinnedBy": rollback})
    );

    // Auto-deploys keep arriving: they complete without going live.
    let mut entity = entity_doc(WS, &seeded.app, Some(&seeded.version));
    entity["occurredAt"] = json!("2026-11-27T10:00:30Z");
    entity["entity"]["autoDeploy"] = json!(true);
    assert_eq!(app.import(&[entity]).await.rejected, 0);
    let third_build = app
        .seed_build(&seeded, &[("index.html", "<h1>third</h1>")])
        .await;
    let auto = app
        .wait_list(&[("trigger", "auto"), ("build_id", third_build.as_str())])
        .await;
    let auto_done = app.wait_status(&auto, "completed").await;
    assert_eq!(auto_done["live"], false);
    assert_eq!(auto_done["productionUrl"], production.as_str());
    assert_eq!(
        body(&app, &production).await,
        format!("<h1>{}</h1>", seeded.build)
    );
    assert_eq!(
        release_row(&app, &seeded.app).await,
        (Some(rollback.clone()), Some(rollback.clone()))
    );

    // A promotion of it goes live and unpins.
    let r = app
        .post(
            &format!("/api/deploys/{auto}/promote"),
            &app.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let promoted: Value = r.json().await.unwrap();
    assert_eq!(promoted["trigger"], "manual");
    assert_eq!(promoted["promotedFrom"], auto.as_str());
    assert_eq!(promoted["buildId"], third_build.as_str());
    let promoted = promoted["id"].as_str().unwrap().to_string();
    assert_eq!(app.wait_status(&promoted, "completed").await["live"], true);
    assert_eq!(body(&app, &production).await, "<h1>third</h1>");
    assert_eq!(
        release_row(&app, &seeded.app).await,
        (Some(promoted.clone()), None)
    );
    assert_eq!(live_ids(&app, &seeded.app).await, vec![promoted]);
    app.stop().await;
}

/// Drives a deploy to completion without a worker.
async fn complete_now(app: &TestApp, id: &str) {
    let commands = Commands::new(app.db.clone());
    run_steps(&commands, id).await;
    let head = commands
        .deploy(id, complete(), &CommandMeta::system("req_test"))
        .await
        .unwrap();
    projected(app, head).await;
}

async fn refused_rollbacks_and_promotions_say_why_and_record_nothing() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let pending = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = || count(&app.db, "SELECT count(*) FROM events");
    let before = events().await;
    let conflict = |action: &'static str, id: String, why: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post(
                    &format!("/api/deploys/{id}/{action}"),
                    &app.token,
                    json!({}),
                )
                .await;
            let body = problem(r, StatusCode::CONFLICT).await;
            let detail = body["detail"].as_str().unwrap();
            assert!(detail.contains(why), "{action} {id}: {detail}");
        }
    };
    conflict("rollback", pending.clone(), "is pending").await;
    conflict("promote", pending.clone(), "is pending").await;
    assert_eq!(events().await, before);

    complete_now(&app, &pending).await;
    let before = events().await;
    conflict("rollback", pending.clone(), "live already").await;
    conflict("promote", pending.clone(), "live already").await;

    let preview = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"buildId": seeded.build, "target": "preview"}),
        )
        .await;
    let preview: Value = preview.json().await.unwrap();
    let preview = preview["id"].as_str().unwrap().to_string();
    complete_now(&app, &preview).await;
    let before_preview = events().await;
    conflict("rollback", preview.clone(), "preview").await;
    assert_eq!(events().await, before_preview);
    assert!(before_preview > before);

    // Another workspace's deploy, a malformed id: 404. A bad body: 400.
    let r = app
        .post(
            &format!("/api/deploys/{pending}/rollback"),
            &app.other_token,
            json!({}),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    let r = app
        .post("/api/deploys/dep_nope/promote", &app.token, json!({}))
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    let r = app
        .post(
            &format!("/api/deploys/{pending}/rollback"),
            &app.token,
            json!({"reason": 7, "why": "x"}),
        )
        .await;
    let body = problem(r, StatusCode::BAD_REQUEST).await;
    let mut bad = pointers(&body);
    bad.sort();
    assert_eq!(bad, vec!["body/reason", "body/why"]);
    assert_eq!(events().await, before_preview);

    // The preview can be promoted.
    let r = app
        .post(
            &format!("/api/deploys/{preview}/promote"),
            &app.token,
            json!({"reason": "ship it"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    app.stop().await;
}

/// Sets the entity's deploy policy (a newer upstream document).
fn with_policy(seeded: &Seeded, policy: &str) -> Value {
    let mut entity = entity_doc(WS, &seeded.app, Some(&seeded.version));
    entity["occurredAt"] = json!("2026-11-27T10:00:30Z");
    entity["entity"]["deployPolicy"] = json!(policy);
    entity
}

async fn under_latest_older_pending_deploys_of_the_target_are_superseded_and_running_ones_are_not()
{
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    assert_eq!(
        app.import(&[with_policy(&seeded, "latest")]).await.rejected,
        0
    );
    let id = |v: Value| v["id"].as_str().unwrap().to_string();
    let running = id(app.create(&seeded.build).await);
    let head = Commands::new(app.db.clone())
        .deploy(
            &running,
            DeployCommand::Start { at: Utc::now() },
            &CommandMeta::system("req_test"),
        )
        .await
        .unwrap();
    projected(&app, head).await;
    let older = id(app.create(&seeded.build).await);
    let preview = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"buildId": seeded.build, "target": "preview"}),
        )
        .await;
    assert_eq!(preview.status(), StatusCode::CREATED);
    let preview = id(preview.json().await.unwrap());
    let newest = id(app.create(&seeded.build).await);

    let superseded = app.detail(&older).await;
    assert_eq!(superseded["status"], "cancelled");
    assert_eq!(superseded["supersededBy"], newest.as_str());
    assert_eq!(superseded["cancellation"]["cancelledBy"], "system");
    assert_eq!(
        superseded["cancellation"]["reason"],
        format!("superseded by {newest}")
    );
    assert_eq!(app.detail(&running).await["status"], "running");
    assert_eq!(app.detail(&preview).await["status"], "pending");
    assert_eq!(app.detail(&newest).await["status"], "pending");
    let events: Vec<Value> = app
        .get(&format!("/api/deploys/{older}/events"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    let cancelled = events.last().unwrap();
    assert_eq!(cancelled["type"], "DeployCancelled");
    assert_eq!(cancelled["actor"], "system");
    assert_eq!(cancelled["data"]["supersededBy"], newest.as_str());
    // Filterable.
    let page: Value = app
        .client
        .get(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .query(&[(
            "filter",
            json!({"supersededBy": {"eq": newest}}).to_string(),
        )])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["pageInfo"]["total"], 1, "{page}");
    let page: Value = app
        .client
        .get(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .query(&[(
            "filter",
            json!({"entity": {"deployPolicy": {"eq": "latest"}}}).to_string(),
        )])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["pageInfo"]["total"], 4, "{page}");

    // Under queue (the default) nothing is superseded.
    assert_eq!(
        app.import(&[{
            let mut doc = with_policy(&seeded, "queue");
            doc["occurredAt"] = json!("2026-11-27T10:00:40Z");
            doc
        }])
        .await
        .rejected,
        0
    );
    let after = id(app.create(&seeded.build).await);
    assert_eq!(app.detail(&newest).await["status"], "pending");
    assert_eq!(app.detail(&after).await["status"], "pending");

    // An unknown policy is refused, naming it.
    let mut bad = with_policy(&seeded, "sometimes");
    bad["occurredAt"] = json!("2026-11-27T10:00:50Z");
    let feed = deployd::catalog::CatalogFeed::new(
        std::sync::Arc::new(Commands::new(app.db.clone())),
        app.artifact_roots(),
    );
    let mut errors = Vec::new();
    let report = deployd::catalog::import(&feed, format!("{bad}\n").as_bytes(), &mut errors)
        .await
        .unwrap();
    assert_eq!(report.rejected, 1);
    let errors = String::from_utf8(errors).unwrap();
    assert!(errors.contains("entity/deployPolicy"), "{errors}");
    app.stop().await;
}

async fn a_worker_starts_a_pending_production_deploy_before_an_older_preview() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let preview = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"buildId": seeded.build, "target": "preview"}),
        )
        .await;
    let preview: Value = preview.json().await.unwrap();
    let preview = preview["id"].as_str().unwrap().to_string();
    let production = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut app = app;
    app.options.worker = true;
    let app = app.restart().await;
    let production = app.wait_status(&production, "completed").await;
    let preview = app.wait_status(&preview, "completed").await;
    assert!(
        production["completedAt"].as_str().unwrap() <= preview["startedAt"].as_str().unwrap(),
        "{production} {preview}"
    );
    app.stop().await;
}

async fn get_json(app: &TestApp, path: &str, token: &str, query: &[(&str, &str)]) -> Value {
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path} {query:?}");
    r.json().await.unwrap()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Walks a list forward page by page, then back from the end; returns the
/// ids in order, checked to be the same both ways.
async fn walk(app: &TestApp, path: &str, query: &[(&str, &str)]) -> Vec<String> {
    let mut forward = Vec::new();
    let mut after: Option<String> = None;
    let mut last: Value;
    loop {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "2"));
        if let Some(a) = &after {
            q.push(("after", a));
        }
        let page = get_json(app, path, &app.token, &q).await;
        assert_eq!(
            page["pageInfo"]["hasPreviousPage"],
            after.is_some(),
            "{page}"
        );
        forward.extend(ids_of(&page));
        let next = page["pageInfo"]["hasNextPage"].as_bool().unwrap();
        last = page.clone();
        if !next {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    let mut backward = Vec::new();
    let mut before = last["pageInfo"]["startCursor"].as_str().map(str::to_string);
    backward.extend(ids_of(&last).into_iter().rev());
    while let Some(b) = before.clone() {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "2"));
        q.push(("before", &b));
        let page = get_json(app, path, &app.token, &q).await;
        backward.extend(ids_of(&page).into_iter().rev());
        before = if page["pageInfo"]["hasPreviousPage"] == true {
            page["pageInfo"]["startCursor"].as_str().map(str::to_string)
        } else {
            None
        };
    }
    backward.reverse();
    assert_eq!(forward, backward);
    forward
}

async fn entities_and_builds_are_listed_in_keyset_pages_and_an_entity_says_what_was_live_when() {
    let app = TestApp::spawn_with_worker().await;
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(app.seed_app(WS).await);
    }
    let other = app.seed_app(OTHER_WS).await;
    let seeded = &apps[0];
    let extra = app
        .seed_build(seeded, &[("index.html", "<h1>two</h1>")])
        .await;

    // Entities: in id order, only the caller's, walked both ways.
    let mut expected: Vec<String> = apps.iter().map(|a| a.app.clone()).collect();
    expected.sort();
    assert_eq!(walk(&app, "/api/entities", &[]).await, expected);
    let page = get_json(&app, "/api/entities", &app.token, &[("kind", "app")]).await;
    assert_eq!(page["pageInfo"]["total"], 3);
    let page = get_json(&app, "/api/entities", &app.token, &[("kind", "function")]).await;
    assert_eq!(page["pageInfo"]["total"], 0);

    // Builds: newest first, by entity, walked both ways.
    let builds = walk(&app, "/api/builds", &[("entity_id", seeded.app.as_str())]).await;
    assert_eq!(builds.len(), 2);
    assert!(builds.contains(&extra) && builds.contains(&seeded.build));
    let all = walk(&app, "/api/builds", &[]).await;
    assert_eq!(all.len(), 4);
    let build = get_json(&app, &format!("/api/builds/{extra}"), &app.token, &[]).await;
    assert_eq!(build["entityId"], seeded.app.as_str());
    assert_eq!(build["status"], "succeeded");
    assert_eq!(build["branch"], "main");

    // What is live, now and at an instant.
    let entity = get_json(
        &app,
        &format!("/api/entities/{}", seeded.app),
        &app.token,
        &[],
    )
    .await;
    assert!(entity["live"].is_null(), "{entity}");
    assert_eq!(entity["pinned"], false);
    assert_eq!(entity["deployPolicy"], "queue");
    let first = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&first, "completed").await;
    let between = Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = app.create(&extra).await["id"].as_str().unwrap().to_string();
    app.wait_status(&second, "completed").await;
    let rollback: Value = app
        .post(
            &format!("/api/deploys/{first}/rollback"),
            &app.token,
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rollback = rollback["id"].as_str().unwrap().to_string();
    app.wait_status(&rollback, "completed").await;
    let now = get_json(
        &app,
        &format!("/api/entities/{}", seeded.app),
        &app.token,
        &[],
    )
    .await;
    assert_eq!(now["live"]["deployId"], rollback.as_str());
    assert_eq!(now["live"]["buildId"], seeded.build.as_str());
    assert_eq!(now["pinned"], true);
    assert_eq!(now["pinnedBy"], rollback.as_str());
    assert_eq!(
        now["productionUrl"],
        app.url(&format!("/live/{}/", seeded.app)).as_str()
    );
    let then = get_json(
        &app,
        &format!("/api/entities/{}", seeded.app),
        &app.token,
        &[("asOf", between.as_str())],
    )
    .await;
    assert_eq!(then["live"]["deployId"], first.as_str(), "{then}");
    assert_eq!(then["pinned"], false);
    // asOf now folds to the read model's answer.
    let folded = get_json(
        &app,
        &format!("/api/entities/{}", seeded.app),
        &app.token,
        &[("asOf", Utc::now().to_rfc3339().as_str())],
    )
    .await;
    assert_eq!(folded, now);
    // The deploy detail's asOf agrees on what was live.
    let first_then = get_json(
        &app,
        &format!("/api/deploys/{first}"),
        &app.token,
        &[("asOf", between.as_str())],
    )
    .await;
    assert_eq!(first_then["live"], true);
    assert_eq!(app.detail(&first).await["live"], false);
    let live = get_json(
        &app,
        "/api/deploys",
        &app.token,
        &[("filter", r#"{"live":{"eq":true}}"#)],
    )
    .await;
    assert_eq!(ids_of(&live), vec![rollback.clone()]);

    // Scope and bad input.
    for path in [
        format!("/api/entities/{}", other.app),
        format!("/api/builds/{}", other.build),
        "/api/entities/app_nope".to_string(),
        "/api/builds/nope".to_string(),
    ] {
        problem(app.get(&path, &app.token).await, StatusCode::NOT_FOUND).await;
    }
    let before_it = get_json(
        &app,
        "/api/entities",
        &app.token,
        &[("workspace_id", OTHER_WS)],
    )
    .await;
    assert_eq!(before_it["pageInfo"]["total"], 0);
    let r = app
        .get("/api/entities?kind=robot&limit=0&after=garbage", &app.token)
        .await;
    let body = problem(r, StatusCode::BAD_REQUEST).await;
    let mut bad = pointers(&body);
    bad.sort();
    assert_eq!(bad, vec!["after", "kind", "limit"]);
    let r = app.get("/api/builds?status=maybe", &app.token).await;
    assert_eq!(
        pointers(&problem(r, StatusCode::BAD_REQUEST).await),
        vec!["status"]
    );
    // A cursor of another workspace scope does not open it up.
    let page = get_json(&app, "/api/entities", &app.token, &[("limit", "1")]).await;
    let cursor = page["pageInfo"]["endCursor"].as_str().unwrap();
    let r = app
        .get(&format!("/api/entities?after={cursor}"), &app.other_token)
        .await;
    problem(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .get(
            &format!("/api/entities/{}?asOf=2000-01-01T00:00:00Z", seeded.app),
            &app.token,
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

crate::backend_tests!(
    two_production_deploys_completing_at_once_leave_exactly_one_live,
    a_completed_production_deploy_replaces_the_live_one_and_old_previews_keep_serving,
    a_preview_deploy_never_goes_live_and_target_is_set_at_create_or_defaulted,
    a_rollback_goes_live_and_pins_production_until_a_promotion,
    refused_rollbacks_and_promotions_say_why_and_record_nothing,
    under_latest_older_pending_deploys_of_the_target_are_superseded_and_running_ones_are_not,
    a_worker_starts_a_pending_production_deploy_before_an_older_preview,
    entities_and_builds_are_listed_in_keyset_pages_and_an_entity_says_what_was_live_when,
);
