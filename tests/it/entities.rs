//! `POST /api/entities`: apps and functions made without an upstream
//! catalog, recorded as the catalog's own `EntityUpserted` events.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn an_app_is_created_with_a_default_version_and_found_by_its_name() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api/entities",
            &app.token,
            json!({"kind": "app", "name": "hello", "deployPolicy": "latest"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("app_"), "{created}");
    assert_eq!(location, format!("/api/entities/{id}"));
    assert_eq!(created["workspaceId"], WS);
    assert_eq!(created["kind"], "app");
    assert_eq!(created["name"], "hello");
    assert_eq!(created["autoDeploy"], false);
    assert_eq!(created["deployPolicy"], "latest");
    assert_eq!(created["live"], Value::Null);
    let version = created["defaultVersionId"].as_str().unwrap();
    assert!(version.starts_with("ver_"), "{created}");

    // Visible at once, by id and by name; the same event type as the
    // catalog's, with the caller as its actor.
    let fetched: Value = app.get(&location, &app.token).await.json().await.unwrap();
    assert_eq!(fetched, created);
    let page: Value = app
        .get("/api/entities?name=hello", &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["data"][0]["id"], id);
    assert_eq!(page["pageInfo"]["total"], 1);
    let (types, actor): (Vec<String>, Vec<String>) = deployd::on_db!(&app.db, pool => {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT event_type, CAST(metadata AS TEXT) FROM events \
             WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        rows.into_iter().unzip()
    });
    assert_eq!(types, ["EntityUpserted"]);
    let meta: Value = serde_json::from_str(&actor[0]).unwrap();
    assert_eq!(meta["actor"], "alice", "{meta}");

    // Not in another workspace: there the name is free and the id unknown.
    assert_eq!(
        app.get(&location, &app.other_token).await.status(),
        StatusCode::NOT_FOUND
    );
    let theirs = app
        .post(
            "/api/entities",
            &app.other_token,
            json!({"kind": "function", "name": "hello"}),
        )
        .await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    let theirs: Value = theirs.json().await.unwrap();
    assert!(
        theirs["id"].as_str().unwrap().starts_with("fn_"),
        "{theirs}"
    );
    assert_eq!(theirs["workspaceId"], OTHER_WS);
    app.stop().await;
}

async fn a_name_is_taken_once_per_workspace_even_by_creates_at_the_same_time() {
    let app = TestApp::spawn().await;
    let attempts = (0..6).map(|_| {
        app.post(
            "/api/entities",
            &app.token,
            json!({"kind": "app", "name": "site"}),
        )
    });
    let answers = futures::future::join_all(attempts).await;
    let mut created = 0;
    for response in answers {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let body = problem(response, StatusCode::CONFLICT).await;
                assert!(
                    body["detail"].as_str().unwrap().contains("\"site\""),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM events WHERE aggregate_type = 'Entity'"
        )
        .await,
        1
    );
    app.stop().await;
}

async fn bad_input_is_refused_naming_the_field_and_records_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": "x"}), "body/kind"),
        (json!({"kind": "site", "name": "x"}), "body/kind"),
        (json!({"kind": "app"}), "body/name"),
        (json!({"kind": "app", "name": ""}), "body/name"),
        (json!({"kind": "app", "name": " x"}), "body/name"),
        (json!({"kind": "app", "name": "a\u{7}b"}), "body/name"),
        (json!({"kind": "app", "name": "n".repeat(101)}), "body/name"),
        (
            json!({"kind": "app", "name": format!("app_{}", ulid::Ulid::generate())}),
            "body/name",
        ),
        (json!({"kind": "app", "name": 3}), "body/name"),
        (
            json!({"kind": "app", "name": "x", "autoDeploy": "yes"}),
            "body/autoDeploy",
        ),
        (
            json!({"kind": "app", "name": "x", "deployPolicy": "newest"}),
            "body/deployPolicy",
        ),
        (
            json!({"kind": "app", "name": "x", "workspaceId": OTHER_WS}),
            "body/workspaceId",
        ),
        (
            json!({"kind": "app", "name": "x", "id": "app_1"}),
            "body/id",
        ),
    ];
    for (body, pointer) in cases {
        let response = app.post("/api/entities", &app.token, body.clone()).await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(pointers(&problem), [pointer], "{body}: {problem}");
    }
    let not_json = app
        .client
        .post(app.url("/api/entities"))
        .bearer_auth(&app.token)
        .body(r#"{"kind": "app", "name": "x"}"#)
        .send()
        .await
        .unwrap();
    problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let anonymous = app
        .client
        .post(app.url("/api/entities"))
        .json(&json!({"kind": "app", "name": "x"}))
        .send()
        .await
        .unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED).await;
    assert_eq!(count(&app.db, "SELECT count(*) FROM events").await, 0);
    app.stop().await;
}

async fn a_token_of_several_workspaces_names_the_one_it_creates_in() {
    let app = TestApp::spawn().await;
    let both = make_token(&app.db, "ops", &[WS, OTHER_WS]).await;
    let response = app
        .post("/api/entities", &both, json!({"kind": "app", "name": "x"}))
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(pointers(&body), ["body/workspaceId"]);
    let response = app
        .post(
            "/api/entities",
            &both,
            json!({"kind": "app", "name": "x", "workspaceId": OTHER_WS}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["workspaceId"], OTHER_WS);
    app.stop().await;
}

/// A catalog build of the created app's default version deploys to
/// production, as any catalog entity's would.
async fn a_created_app_takes_builds_of_its_default_version() {
    let app = TestApp::spawn_with_worker().await;
    let created: Value = app
        .post(
            "/api/entities",
            &app.token,
            json!({"kind": "app", "name": "web"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let seeded = Seeded {
        app: created["id"].as_str().unwrap().to_string(),
        version: created["defaultVersionId"].as_str().unwrap().to_string(),
        build: String::new(),
    };
    app.seed_build(&seeded, &[("index.html", "<h1>made here</h1>")])
        .await;
    let response = app
        .post("/api/deploys", &app.token, json!({"appId": seeded.app}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let row: Value = response.json().await.unwrap();
    assert_eq!(row["target"], "production");
    let done = app
        .wait_status(row["id"].as_str().unwrap(), "completed")
        .await;
    let live = app
        .client
        .get(done["productionUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(live, "<h1>made here</h1>");
    app.stop().await;
}

crate::backend_tests!(
    an_app_is_created_with_a_default_version_and_found_by_its_name,
    a_name_is_taken_once_per_workspace_even_by_creates_at_the_same_time,
    bad_input_is_refused_naming_the_field_and_records_nothing,
    a_token_of_several_workspaces_names_the_one_it_creates_in,
    a_created_app_takes_builds_of_its_default_version,
);
