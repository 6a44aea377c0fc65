use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn create_by_build_answers_201_with_the_projected_row() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let response = app
        .post(
            "/api/deploys",
            &app.token,
            json!({"buildId": seeded.build, "metadata": {"pr": 42}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let row: Value = response.json().await.unwrap();
    assert!(row["id"].as_str().unwrap().starts_with("dep_"));
    // Location names the new deploy, and following it finds it.
    assert_eq!(
        location,
        format!("/api/deploys/{}", row["id"].as_str().unwrap())
    );
    let found = app.get(&location, &app.token).await;
    assert_eq!(found.status(), StatusCode::OK);
    assert_eq!(row["workspaceId"], WS);
    assert_eq!(row["entityId"], seeded.app);
    assert_eq!(row["buildId"], seeded.build);
    assert_eq!(row["sequenceNumber"], 1);
    assert_eq!(row["status"], "pending");
    assert_eq!(row["trigger"], "manual");
    assert_eq!(row["createdBy"], "alice");
    assert_eq!(row["metadata"], json!({"pr": 42}));
    assert_eq!(row["sourceEventId"], Value::Null);

    // The list's row and the detail's row are the same row.
    let detail: Value = app
        .get(
            &format!("/api/deploys/{}", row["id"].as_str().unwrap()),
            &app.token,
        )
        .await
        .json()
        .await
        .unwrap();
    for (key, value) in row.as_object().unwrap() {
        assert_eq!(&detail[key], value, "{key}");
    }
    app.stop().await;
}

async fn create_by_app_deploys_the_latest_successful_build_of_its_default_version() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let newer = format!("bld_{}", ulid::Ulid::generate());
    let failed = format!("bld_{}", ulid::Ulid::generate());
    let mut doc = build_succeeded_doc(WS, &seeded.app, &seeded.version, &newer, "/srv/newer");
    doc["occurredAt"] = json!("2026-11-27T11:00:00Z");
    let mut failed_doc = build_failed_doc(WS, &seeded.app, &seeded.version, &failed);
    failed_doc["occurredAt"] = json!("2026-11-27T12:00:00Z");
    app.import(&[doc, failed_doc]).await;

    let response = app
        .post("/api/deploys", &app.token, json!({"appId": seeded.app}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let row: Value = response.json().await.unwrap();
    assert_eq!(row["buildId"], newer);
    app.stop().await;
}

async fn bad_create_bodies_are_400s_that_name_the_bad_part_and_change_nothing() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["body"]),
        (
            json!({"buildId": seeded.build, "appId": seeded.app}),
            vec!["body"],
        ),
        (json!({"buildId": "bld_nope"}), vec!["body/buildId"]),
        (json!({"buildId": 7}), vec!["body/buildId"]),
        (
            json!({"appId": "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"}),
            vec!["body/appId"],
        ),
        (
            json!({"buildId": seeded.build, "colour": "red"}),
            vec!["body/colour"],
        ),
        (
            json!({"buildId": seeded.build, "metadata": [1]}),
            vec!["body/metadata"],
        ),
        (
            json!({"buildId": seeded.build, "metadata": {"big": "x".repeat(17 * 1024)}}),
            vec!["body/metadata"],
        ),
        (json!([1, 2]), vec!["body"]),
    ];
    for (body, expected) in cases {
        let response = app.post("/api/deploys", &app.token, body.clone()).await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(pointers(&problem), expected, "{body}");
    }
    let not_json = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pointers(&problem(not_json, StatusCode::BAD_REQUEST).await),
        vec!["body"]
    );

    let count = count(
        &app.db,
        "SELECT count(*) FROM events WHERE aggregate_type = 'Deploy'",
    )
    .await;
    assert_eq!(count, 0);
    app.stop().await;
}

async fn missing_or_unknown_tokens_are_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let none = app
        .client
        .get(app.url("/api/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("Bearer")
    );
    problem(none, StatusCode::UNAUTHORIZED).await;
    let forged = app
        .post(
            "/api/deploys",
            "dpd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            json!({}),
        )
        .await;
    problem(forged, StatusCode::UNAUTHORIZED).await;
    let not_bearer = app
        .client
        .get(app.url("/api/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    problem(not_bearer, StatusCode::UNAUTHORIZED).await;
    app.stop().await;
}

async fn a_build_outside_the_callers_workspaces_is_404_and_a_failed_one_is_422() {
    let app = TestApp::spawn().await;
    let theirs = app.seed_app(OTHER_WS).await;
    let response = app
        .post("/api/deploys", &app.token, json!({"buildId": theirs.build}))
        .await;
    problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .post("/api/deploys", &app.token, json!({"appId": theirs.app}))
        .await;
    problem(response, StatusCode::NOT_FOUND).await;

    let ours = app.seed_app(WS).await;
    let failed = format!("bld_{}", ulid::Ulid::generate());
    app.import(&[build_failed_doc(WS, &ours.app, &ours.version, &failed)])
        .await;
    let response = app
        .post("/api/deploys", &app.token, json!({"buildId": failed}))
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    let bare = format!("app_{}", ulid::Ulid::generate());
    app.import(&[entity_doc(
        WS,
        &bare,
        Some("ver_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"),
    )])
    .await;
    let response = app
        .post("/api/deploys", &app.token, json!({"appId": bare}))
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let no_version = format!("app_{}", ulid::Ulid::generate());
    app.import(&[entity_doc(WS, &no_version, None)]).await;
    let response = app
        .post("/api/deploys", &app.token, json!({"appId": no_version}))
        .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    app.stop().await;
}

async fn an_idempotent_retry_replays_the_first_answer_and_creates_nothing_more() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let send = |body: Value, key: &'static str| {
        app.client
            .post(app.url("/api/deploys"))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send(json!({"buildId": seeded.build}), "k-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = send(json!({"buildId": seeded.build}), "k-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    // The replay names the deploy too.
    assert_eq!(
        again.headers()["location"].to_str().unwrap(),
        format!("/api/deploys/{}", first["id"].as_str().unwrap())
    );
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let other_body = send(json!({"appId": seeded.app}), "k-1").await.unwrap();
    problem(other_body, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A refused request is replayed as refused.
    let missing = json!({"buildId": "bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"});
    let refused = send(missing.clone(), "k-2").await.unwrap();
    let refused = problem(refused, StatusCode::NOT_FOUND).await;
    let replayed = send(missing, "k-2").await.unwrap();
    assert_eq!(problem(replayed, StatusCode::NOT_FOUND).await, refused);

    // Keys belong to their caller: the same key from another token is new.
    let bad_key = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", "")
        .json(&json!({"buildId": seeded.build}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        pointers(&problem(bad_key, StatusCode::BAD_REQUEST).await),
        vec!["Idempotency-Key"]
    );

    let deploys = count(&app.db, "SELECT count(*) FROM deploys").await;
    assert_eq!(deploys, 1);
    app.stop().await;
}

async fn a_retry_while_the_first_request_is_in_flight_is_409() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let body = json!({"buildId": seeded.build});
    // The first request holds the key (as if it were still running).
    let fingerprint = deployd::api::idempotency::fingerprint("POST", "/api/deploys", &body);
    let alice = deployd::store::tokens::authenticate(&app.db, &app.token)
        .await
        .unwrap()
        .unwrap();
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, request_sha256, resource_id, lease_until) \
         VALUES ($3, 'busy', $1, 'dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M', $2)",
    )
    .bind(&fingerprint)
    .bind(deployd::domain::time::now() + chrono::Duration::minutes(1))
    .bind(alice.idempotency_scope())
    .execute(pool)
    .await
    .unwrap()
    .rows_affected());
    let response = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", "busy")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::CONFLICT).await;

    // Once its lease ran out (the server died), a retry takes over and
    // creates the deploy under the id the first request chose.
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query("UPDATE idempotency_keys SET lease_until = $1")
        .bind(deployd::domain::time::now() - chrono::Duration::seconds(1))
        .execute(pool)
        .await
        .unwrap()
    .rows_affected());
    let response = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", "busy")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let row: Value = response.json().await.unwrap();
    assert_eq!(row["id"], "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M");
    app.stop().await;
}

async fn idempotency_keys_belong_to_the_token_not_to_its_name() {
    let app = TestApp::spawn().await;
    // Two tokens of different workspaces, both named "ci".
    let a = make_token(&app.db, "ci", &[WS]).await;
    let b = make_token(&app.db, "ci", &[OTHER_WS]).await;
    let seeded_a = app.seed_app(WS).await;
    let seeded_b = app.seed_app(OTHER_WS).await;
    let send = |token: &str, body: Value| {
        app.client
            .post(app.url("/api/deploys"))
            .bearer_auth(token)
            .header("Idempotency-Key", "shared-key")
            .json(&body)
            .send()
    };
    let first = send(&a, json!({"buildId": seeded_a.build})).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    // B replaying A's key and body is B's own request: A's build is not
    // visible to B, and A's answer is never shown.
    let replayed = send(&b, json!({"buildId": seeded_a.build})).await.unwrap();
    let replayed = problem(replayed, StatusCode::NOT_FOUND).await;
    assert!(!replayed.to_string().contains(first["id"].as_str().unwrap()));

    // B's own deploy under the same key is made, in B's workspace.
    let own = send(&b, json!({"buildId": seeded_b.build})).await.unwrap();
    assert_eq!(own.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let other_key = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&b)
        .header("Idempotency-Key", "b-key")
        .json(&json!({"buildId": seeded_b.build}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_key.status(), StatusCode::CREATED);
    let own: Value = other_key.json().await.unwrap();
    assert_eq!(own["workspaceId"], OTHER_WS);

    // A's key still replays A's answer to A alone.
    let again = send(&a, json!({"buildId": seeded_a.build})).await.unwrap();
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    // A third token of A's workspace with the same name has its own keys.
    let a2 = make_token(&app.db, "ci", &[WS]).await;
    let fresh = send(&a2, json!({"buildId": seeded_a.build})).await.unwrap();
    assert_eq!(fresh.status(), StatusCode::CREATED);
    assert_ne!(fresh.json::<Value>().await.unwrap()["id"], first["id"]);
    app.stop().await;
}

async fn twenty_concurrent_creates_for_one_entity_are_numbered_1_to_20() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let creates = (0..20).map(|_| app.create(&seeded.build));
    let rows = futures::future::join_all(creates).await;
    let mut numbers: Vec<i64> = rows
        .iter()
        .map(|r| r["sequenceNumber"].as_i64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
    // The stored events carry the same numbers.
    let sql = app.db.pick(
        "SELECT (payload -> 'DeployCreated' ->> 'sequenceNumber')::bigint FROM events \
         WHERE event_type = 'DeployCreated'",
        "SELECT json_extract(payload, '$.DeployCreated.sequenceNumber') FROM events \
         WHERE event_type = 'DeployCreated'",
    );
    let mut stored: Vec<i64> =
        deployd::on_db!(&app.db, pool => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap());
    stored.sort();
    assert_eq!(stored, numbers);
    // Another entity counts from 1.
    let second = app.seed_app(WS).await;
    assert_eq!(app.create(&second.build).await["sequenceNumber"], 1);
    app.stop().await;
}

async fn nothing_acknowledged_is_lost_across_a_restart() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let first = app.create(&seeded.build).await;
    let id = first["id"].as_str().unwrap().to_string();
    let cancelled = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            json!({"reason": "oops"}),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);

    let app = app.restart().await;
    let detail: Value = app
        .get(&format!("/api/deploys/{id}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "cancelled");
    assert_eq!(detail["cancellation"]["reason"], "oops");
    let second = app.create(&seeded.build).await;
    assert_eq!(second["sequenceNumber"], 2);
    app.stop().await;
}

crate::backend_tests!(
    create_by_build_answers_201_with_the_projected_row,
    create_by_app_deploys_the_latest_successful_build_of_its_default_version,
    bad_create_bodies_are_400s_that_name_the_bad_part_and_change_nothing,
    missing_or_unknown_tokens_are_401_with_a_bearer_challenge,
    a_build_outside_the_callers_workspaces_is_404_and_a_failed_one_is_422,
    an_idempotent_retry_replays_the_first_answer_and_creates_nothing_more,
    a_retry_while_the_first_request_is_in_flight_is_409,
    idempotency_keys_belong_to_the_token_not_to_its_name,
    twenty_concurrent_creates_for_one_entity_are_numbered_1_to_20,
    nothing_acknowledged_is_lost_across_a_restart,
);
