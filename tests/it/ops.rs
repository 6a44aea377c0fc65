//! What operators rely on: health, readiness, metrics, request ids, limits.

use std::time::Duration;

use deployd::api::ApiSettings;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let mut body: Value = ready.json().await.unwrap();
    // Every reader of the log moves (safety.rs tests one that does not).
    let readers = body.as_object_mut().unwrap().remove("readers").unwrap();
    assert!(readers
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "ok"));
    assert_eq!(
        body.as_object_mut().unwrap().remove("problems"),
        Some(json!([]))
    );
    let expected = match app.backend {
        Backend::Postgres => {
            json!({"ready": true, "engine": "postgres", "database": "ok", "nats": "ok"})
        }
        Backend::Sqlite => json!({
            "ready": true,
            "engine": "sqlite",
            "database": "ok",
            "nats": "off: in-process bus (no NATS_URL); events are not published to subscribers",
        }),
    };
    assert_eq!(body, expected);
    app.stop().await;
}

async fn metrics_count_requests_by_route_and_status_and_report_the_read_model() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    app.create(&seeded.build).await;
    app.get("/api/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M", &app.token)
        .await;
    let mut text = String::new();
    // The database gauges are refreshed every 5 s.
    for _ in 0..120 {
        text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("deployd_reader_seconds_behind{reader=\"relay\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in [
        "deployd_http_requests_total{method=\"POST\",route=\"/api/deploys\",status=\"201\"}",
        "deployd_http_requests_total{method=\"GET\",route=\"/api/deploys/{id}\",status=\"404\"}",
        "deployd_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/deploys\",status=\"201\"",
        "deployd_commands_total{aggregate=\"Deploy\",outcome=\"ok\"}",
        "deployd_deploys{status=\"pending\"}",
        "deployd_reader_events_behind{reader=\"deploys\"}",
        "deployd_reader_seconds_behind{reader=\"relay\"}",
        "deployd_log_head_position",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    app.stop().await;
}

async fn the_request_id_is_answered_and_carried_into_the_events() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let response = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("x-request-id", "req-from-the-client")
        .json(&json!({"buildId": seeded.build}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-from-the-client");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events: Vec<Value> = app
        .get(&format!("/api/deploys/{id}/events"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["requestId"], "req-from-the-client");
    let metadata: Value = deployd::on_db!(&app.db, pool => sqlx::query_scalar(
        "SELECT metadata FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&id)
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(metadata["actor"], "alice");
    assert_eq!(metadata["correlationId"], "req-from-the-client");
    assert_eq!(metadata["causationId"], "req-from-the-client");
    // Without one, the server makes one.
    let response = app.get("/healthz", &app.token).await;
    assert!(response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    app.stop().await;
}

async fn a_token_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let app = TestApp::spawn_with(Options {
        api: ApiSettings {
            rate_limit_per_second: 1,
            rate_limit_burst: 3,
            ..ApiSettings::default()
        },
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.get("/api/deploys", &app.token).await.status());
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    let limited = app.get("/api/deploys", &app.token).await;
    assert_eq!(limited.headers()["retry-after"], "1");
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        app.get("/api/deploys", &app.other_token).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

async fn a_body_over_the_limit_is_refused() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.stop().await;
}

crate::backend_tests!(
    health_and_readiness_answer,
    metrics_count_requests_by_route_and_status_and_report_the_read_model,
    the_request_id_is_answered_and_carried_into_the_events,
    a_token_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected,
    a_body_over_the_limit_is_refused,
);
