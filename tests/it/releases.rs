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
    let dir = app.data_dir.path().join(format!("site-{other_build}"));
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

crate::backend_tests!(
    two_production_deploys_completing_at_once_leave_exactly_one_live,
    a_completed_production_deploy_replaces_the_live_one_and_old_previews_keep_serving,
    a_preview_deploy_never_goes_live_and_target_is_set_at_create_or_defaulted,
);
