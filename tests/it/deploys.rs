use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn the_detail_shows_the_step_plan_in_order() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let row = app.create(&seeded.build).await;
    let detail: Value = app
        .get(
            &format!("/api/deploys/{}", row["id"].as_str().unwrap()),
            &app.token,
        )
        .await
        .json()
        .await
        .unwrap();
    let steps: Vec<(&str, &str)> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("prepare", "pending"),
            ("upload", "pending"),
            ("promote", "pending")
        ]
    );
    assert_eq!(detail["cancellation"], Value::Null);
    app.stop().await;
}

async fn a_deploy_of_another_workspace_does_not_exist_for_the_caller() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/api/deploys/{id}"),
        format!("/api/deploys/{id}/events"),
    ] {
        problem(
            app.get(&path, &app.other_token).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let cancel = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.other_token,
            json!({}),
        )
        .await;
    let body = problem(cancel, StatusCode::NOT_FOUND).await;
    assert!(!body.to_string().contains(WS));
    // Still pending: the other workspace changed nothing.
    let detail: Value = app
        .get(&format!("/api/deploys/{id}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "pending");
    // Malformed and unknown ids are 404s too.
    problem(
        app.get("/api/deploys/dep_nope", &app.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get("/api/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", &app.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.stop().await;
}

async fn cancel_of_a_pending_deploy_takes_effect_at_once_and_a_second_cancel_is_409() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            json!({"reason": "wrong branch"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"success": true})
    );

    let detail: Value = app
        .get(&format!("/api/deploys/{id}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], "cancelled");
    assert_eq!(detail["cancellation"]["reason"], "wrong branch");
    assert_eq!(detail["cancellation"]["cancelledBy"], "alice");
    assert!(detail["cancellation"]["cancelledAt"].is_string());
    assert!(detail["completedAt"].is_string());
    assert!(detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "skipped"));

    let again = app
        .post(&format!("/api/deploys/{id}/cancel"), &app.token, json!({}))
        .await;
    let body = problem(again, StatusCode::CONFLICT).await;
    assert!(body["detail"].as_str().unwrap().contains("cancelled"));

    // A body is optional; a bad one is a 400 naming the field.
    let bad = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            json!({"reason": 5}),
        )
        .await;
    assert_eq!(
        pointers(&problem(bad, StatusCode::BAD_REQUEST).await),
        vec!["body/reason"]
    );
    app.stop().await;
}

async fn cancel_accepts_an_empty_body_and_an_idempotency_key() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let send = || {
        app.client
            .post(app.url(&format!("/api/deploys/{id}/cancel")))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", "cancel-1")
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // The replay answers as the first time, not with the 409 a new cancel gets.
    let second = send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        second.json::<Value>().await.unwrap(),
        json!({"success": true})
    );
    app.stop().await;
}

async fn the_events_of_a_deploy_explain_its_row() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(
        &format!("/api/deploys/{id}/cancel"),
        &app.token,
        json!({"reason": "r"}),
    )
    .await;

    let events: Vec<Value> = app
        .get(&format!("/api/deploys/{id}/events"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["DeployCreated", "DeployCancelled"]);
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["version"], 3);
    assert_eq!(events[0]["data"]["versionId"], seeded.version);
    assert_eq!(events[0]["actor"], "alice");
    assert_eq!(events[0]["data"]["sequenceNumber"], 1);
    assert_eq!(events[0]["data"]["buildId"], seeded.build);
    assert!(events[0]["eventId"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(events[0]["eventId"].as_str().unwrap().len(), 30);
    assert_eq!(events[1]["data"]["reason"], "r");
    assert_eq!(events[1]["data"]["previousStatus"], "pending");

    let after: Vec<Value> = app
        .get(&format!("/api/deploys/{id}/events?after=1"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["sequence"], 2);
    let bad = app
        .get(&format!("/api/deploys/{id}/events?after=x"), &app.token)
        .await;
    assert_eq!(
        pointers(&problem(bad, StatusCode::BAD_REQUEST).await),
        vec!["after"]
    );
    app.stop().await;
}

async fn unknown_routes_and_methods_answer_problem_json() {
    let app = TestApp::spawn().await;
    problem(
        app.get("/api/nope", &app.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let delete = app
        .client
        .delete(app.url("/api/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    problem(delete, StatusCode::METHOD_NOT_ALLOWED).await;
    let response = app.get("/healthz", &app.token).await;
    assert!(response.headers().contains_key("x-request-id"));
    app.stop().await;
}

crate::backend_tests!(
    the_detail_shows_the_step_plan_in_order,
    a_deploy_of_another_workspace_does_not_exist_for_the_caller,
    cancel_of_a_pending_deploy_takes_effect_at_once_and_a_second_cancel_is_409,
    cancel_accepts_an_empty_body_and_an_idempotency_key,
    the_events_of_a_deploy_explain_its_row,
    unknown_routes_and_methods_answer_problem_json,
);
