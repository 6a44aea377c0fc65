//! The OpenAPI document describes the live server: every documented
//! operation exists, answers only documented statuses, and its schemas
//! match what it sends.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn every_documented_operation_is_live_and_answers_only_documented_statuses() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/deploys",
        "/api/deploys/{id}",
        "/api/deploys/{id}/cancel",
        "/api/deploys/{id}/events",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut checked = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let url = app.url(&path.replace("{id}", &id));
            // A good request, and a bad one where the operation takes input.
            let requests = match method.as_str() {
                "get" => vec![
                    app.client.get(&url).bearer_auth(&app.token),
                    app.client
                        .get(format!("{url}?limit=0"))
                        .bearer_auth(&app.token),
                    app.client.get(&url),
                ],
                "post" => vec![
                    app.client
                        .post(&url)
                        .bearer_auth(&app.token)
                        .json(&json!({"buildId": seeded.build})),
                    app.client
                        .post(&url)
                        .bearer_auth(&app.token)
                        .json(&json!({"nope": 1})),
                    app.client.post(&url).json(&json!({})),
                ],
                other => panic!("undocumented method kind {other}"),
            };
            let documented: Vec<String> = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} documents no responses"))
                .keys()
                .cloned()
                .collect();
            for request in requests {
                let status = request.send().await.unwrap().status();
                assert!(
                    documented.contains(&status.as_u16().to_string()),
                    "{method} {path} answered {status}, documented {documented:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20);
    app.stop().await;
}

async fn the_documented_deploy_schema_is_the_shape_the_server_sends() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let row = app.create(&seeded.build).await;
    let doc = document(&app).await;
    let schema = &doc["components"]["schemas"]["DeployRow"];
    let mut documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let mut sent: Vec<&String> = row.as_object().unwrap().keys().collect();
    documented.sort();
    sent.sort();
    assert_eq!(documented, sent);
    let problem_schema = &doc["components"]["schemas"]["ProblemDetails"]["properties"];
    for field in ["type", "title", "status", "detail", "errors"] {
        assert!(
            problem_schema.get(field).is_some(),
            "ProblemDetails lacks {field}"
        );
    }
    app.stop().await;
}

async fn the_api_reference_page_works_offline() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("/api/openapi.json"));
    // Scripts and styles are inline: no script, stylesheet or font is
    // loaded from elsewhere (the bundle mentions links, it loads none).
    let tags = |name: &str| -> Vec<String> {
        html.split(&format!("<{name}"))
            .skip(1)
            .map(|rest| rest.split('>').next().unwrap_or("").to_string())
            .collect()
    };
    assert!(!tags("script").is_empty());
    for script in tags("script") {
        assert!(
            !script.contains("src="),
            "a script is loaded: <script{script}>"
        );
    }
    for link in tags("link") {
        assert!(!link.contains("http"), "something is loaded: <link{link}>");
    }
    assert!(html.len() > 100_000, "the reference app is inline");
    app.stop().await;
}

crate::backend_tests!(
    every_documented_operation_is_live_and_answers_only_documented_statuses,
    the_documented_deploy_schema_is_the_shape_the_server_sends,
    the_api_reference_page_works_offline,
);
