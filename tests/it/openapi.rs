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
        "/api/events",
        "/api/webhooks",
        "/api/webhooks/{id}",
        "/api/webhooks/{id}/rotate-secret",
        "/api/webhooks/{id}/deliveries",
        "/api/webhooks/{id}/deliveries/{deliveryId}/retry",
        "/api/builds/{id}/finalize",
        "/api/blobs/{sha256}",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut checked = 0;
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let url = app.url(
                &path
                    .replace("{id}", &id)
                    .replace("{deliveryId}", "whd_nope")
                    .replace("{sha256}", &"0".repeat(64)),
            );
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
                "patch" => vec![
                    app.client
                        .patch(&url)
                        .bearer_auth(&app.token)
                        .json(&json!({"disabled": false})),
                    app.client
                        .patch(&url)
                        .bearer_auth(&app.token)
                        .json(&json!({"nope": 1})),
                    app.client.patch(&url).json(&json!({})),
                ],
                "put" => vec![
                    app.client.put(&url).bearer_auth(&app.token).body("bytes"),
                    app.client.put(&url).body("bytes"),
                ],
                "delete" => vec![
                    app.client.delete(&url).bearer_auth(&app.token),
                    app.client.delete(&url),
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
    // Scalar's default fonts are off, and the page names no font host: it
    // uses the system's fonts and fetches nothing from the internet.
    assert!(html.contains("withDefaultFonts: false"));
    assert!(!html.contains("fonts.scalar.com"));
    // The page's own markup, before the inline bundle, loads nothing
    // (the bundle holds links to its documentation, which it only shows).
    let markup = html.split("<script").next().unwrap();
    for quoted in ["src=", "href=", "url(", "@import"] {
        assert!(
            !markup.contains(quoted),
            "the page loads something: {quoted}"
        );
    }
    app.stop().await;
}

async fn each_list_parameter_has_its_own_schema_and_the_filter_language_its_own_section() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let parameters = doc["paths"]["/api/deploys"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| -> Value {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .clone()
    };
    for p in parameters {
        let description = p["description"].as_str().unwrap_or("");
        assert!(description.len() > 10, "{} undescribed: {p}", p["name"]);
        assert_eq!(p["required"], Value::Null, "{p}");
    }
    let limit = &param("limit")["schema"];
    assert_eq!(
        (&limit["type"], &limit["minimum"], &limit["maximum"]),
        (&json!("integer"), &json!(1), &json!(100))
    );
    assert_eq!(
        param("status")["schema"]["enum"],
        json!(["pending", "running", "completed", "failed", "cancelled"])
    );
    assert_eq!(
        param("trigger")["schema"]["enum"],
        json!(["auto", "manual", "rollback"])
    );
    assert!(param("workspace_id")["schema"]["pattern"]
        .as_str()
        .unwrap()
        .starts_with("^ws_"));
    assert!(param("build_id")["schema"]["pattern"]
        .as_str()
        .unwrap()
        .starts_with("^bld_"));
    assert!(param("ids")["schema"]["pattern"]
        .as_str()
        .unwrap()
        .starts_with("^dep_"));
    let filter = &param("filter")["schema"];
    assert_eq!(filter["contentMediaType"], "application/json");
    assert_eq!(
        filter["contentSchema"]["$ref"],
        "#/components/schemas/DeployFilter"
    );
    assert!(doc["components"]["schemas"]["DeployFilter"].is_object());
    assert_eq!(
        param("orderBy")["schema"]["contentMediaType"],
        "application/json"
    );
    // No two parameters share one schema, but the free-text ones (the two
    // cursors and createdBy).
    let mut schemas: Vec<(String, String)> = parameters
        .iter()
        .map(|p| {
            let mut schema = p["schema"].clone();
            schema.as_object_mut().unwrap().remove("description");
            (p["name"].as_str().unwrap().to_string(), schema.to_string())
        })
        .collect();
    schemas.retain(|(name, _)| !["after", "before", "created_by"].contains(&name.as_str()));
    for (i, (name, schema)) in schemas.iter().enumerate() {
        for (other, same) in &schemas[i + 1..] {
            assert!(schema != same, "{name} and {other} share {schema}");
        }
    }

    // The filter language is a section of the reference.
    let description = doc["info"]["description"].as_str().unwrap();
    for heading in [
        "# The list's query language",
        "## Filter",
        "### Comparators",
        "## Order",
        "## Pages",
    ] {
        assert!(
            description.contains(heading),
            "no {heading:?} in the description"
        );
    }

    // A 201 says where the new deploy is.
    let created = &doc["paths"]["/api/deploys"]["post"]["responses"]["201"];
    assert!(created["headers"]["Location"].is_object(), "{created}");
    app.stop().await;
}

crate::backend_tests!(
    every_documented_operation_is_live_and_answers_only_documented_statuses,
    the_documented_deploy_schema_is_the_shape_the_server_sends,
    the_api_reference_page_works_offline,
    each_list_parameter_has_its_own_schema_and_the_filter_language_its_own_section,
);
