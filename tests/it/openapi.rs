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

/// A schema of the document, with a `$ref` followed into `components`.
fn resolve<'d>(doc: &'d Value, schema: &'d Value) -> &'d Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// What the problem of `response` names, and its status.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Vec<String>, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, pointers(&body), body.to_string())
}

/// The document against the server, mechanically: for every authenticated
/// operation, each documented query parameter is taken and an undocumented
/// one refused, `limit` is enforced at exactly its documented bounds, a
/// body schema refuses unknown keys exactly when the server does, the
/// create body's `oneOf` is what the server enforces, and every status the
/// server answered to good and bad requests is documented for that
/// operation.
async fn the_document_says_exactly_what_each_operation_takes_and_answers() {
    let mut options = Options::default();
    options.api.rate_limit_per_second = 100_000;
    options.api.rate_limit_burst = 100_000;
    options.api.auth_failure_rate = 100_000;
    options.api.auth_failure_burst = 100_000;
    options.api.body_limit = 16 * 1024;
    options.webhooks.allow_private = true;
    let app = TestApp::spawn_with(options).await;
    let seeded = app.seed_app(WS).await;
    let deploy = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let hook: Value = app
        .post(
            "/api/webhooks",
            &app.token,
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let hook = hook["id"].as_str().unwrap().to_string();
    let doc = document(&app).await;

    // A body each operation takes, to add one bad thing to.
    let good_body = |path: &str, method: &str| -> Value {
        match (path, method) {
            ("/api/deploys", "post") => json!({"buildId": seeded.build}),
            ("/api/entities", "post") => {
                json!({"kind": "app", "name": format!("n{}", ulid::Ulid::generate())})
            }
            ("/api/webhooks", "post") => json!({"url": "http://127.0.0.1:9/other"}),
            ("/api/webhooks/{id}", "patch") => json!({"disabled": false}),
            _ => json!({}),
        }
    };
    let mut checked_operations = 0;
    let mut documented_params = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            if operation["security"]
                .as_array()
                .is_none_or(|s| s.is_empty())
            {
                continue;
            }
            // DELETE last would need a second webhook: it is checked with
            // the webhook of its own below.
            let id = if path.starts_with("/api/webhooks") {
                hook.as_str()
            } else if path.starts_with("/api/entities") {
                seeded.app.as_str()
            } else if path.starts_with("/api/builds") {
                seeded.build.as_str()
            } else {
                deploy.as_str()
            };
            let target = if method == "delete" {
                let other: Value = app
                    .post(
                        "/api/webhooks",
                        &app.token,
                        json!({"url": "http://127.0.0.1:9/gone"}),
                    )
                    .await
                    .json()
                    .await
                    .unwrap();
                other["id"].as_str().unwrap().to_string()
            } else {
                id.to_string()
            };
            let url = app.url(
                &path
                    .replace("{id}", &target)
                    .replace("{deliveryId}", "whd_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"),
            );
            let documented: Vec<String> = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} documents no responses"))
                .keys()
                .cloned()
                .collect();
            let has_body = operation.get("requestBody").is_some();
            let request = |query: &str| {
                let url = if query.is_empty() {
                    url.clone()
                } else {
                    format!("{url}?{query}")
                };
                let builder = app
                    .client
                    .request(method.to_uppercase().parse().unwrap(), url)
                    .bearer_auth(&app.token);
                if has_body {
                    builder.json(&good_body(path, method))
                } else {
                    builder
                }
            };
            let mut seen = Vec::new();

            // The request as it should be, and without or with a bad token.
            seen.push(answer(request("")).await);
            seen.push(
                answer(
                    app.client
                        .request(method.to_uppercase().parse().unwrap(), &url),
                )
                .await,
            );
            seen.push(
                answer(
                    app.client
                        .request(method.to_uppercase().parse().unwrap(), &url)
                        .bearer_auth("dpd_nope"),
                )
                .await,
            );

            // An undocumented parameter is refused, naming it.
            let (status, named, body) = answer(request("zz_unknown=1")).await;
            assert_eq!(
                status, 400,
                "{method} {path} took an undocumented parameter: {body}"
            );
            assert!(
                named.contains(&"zz_unknown".to_string()),
                "{method} {path}: {body}"
            );
            seen.push((status, named, body));

            // Each documented one is taken (a bad value may be refused,
            // never as an unknown parameter).
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for parameter in parameters.iter().filter(|p| p["in"] == "query") {
                let name = parameter["name"].as_str().unwrap();
                documented_params += 1;
                assert!(
                    parameter["description"]
                        .as_str()
                        .is_some_and(|d| d.len() > 10),
                    "{method} {path}: {name} is not described"
                );
                let (status, named, body) = answer(request(&format!("{name}=x"))).await;
                assert!(
                    !body.contains("unknown parameter"),
                    "{method} {path} refused its documented {name}: {body}"
                );
                seen.push((status, named, body));
                // `limit`: taken at its documented bounds, refused past them.
                let schema = &parameter["schema"];
                if name == "limit" {
                    let (min, max) = (
                        schema["minimum"]
                            .as_i64()
                            .unwrap_or_else(|| panic!("{method} {path}: limit has no minimum")),
                        schema["maximum"]
                            .as_i64()
                            .unwrap_or_else(|| panic!("{method} {path}: limit has no maximum")),
                    );
                    for (value, taken) in
                        [(min, true), (max, true), (min - 1, false), (max + 1, false)]
                    {
                        let (status, named, body) =
                            answer(request(&format!("limit={value}"))).await;
                        assert_eq!(
                            !named.contains(&"limit".to_string()),
                            taken,
                            "{method} {path} limit={value}: {body}"
                        );
                        seen.push((status, named, body));
                    }
                }
            }

            if has_body {
                let schema = resolve(
                    &doc,
                    &operation["requestBody"]["content"]["application/json"]["schema"],
                );
                assert_eq!(
                    schema["additionalProperties"],
                    json!(false),
                    "{method} {path}: the server refuses unknown keys, the schema does not say so"
                );
                let mut body = good_body(path, method);
                body["zz_unknown"] = json!(1);
                let with = |body: reqwest::Body, content_type: &str| {
                    app.client
                        .request(method.to_uppercase().parse().unwrap(), &url)
                        .bearer_auth(&app.token)
                        .header("content-type", content_type)
                        .body(body)
                };
                let (status, named, text) =
                    answer(with(body.to_string().into(), "application/json")).await;
                assert_eq!(status, 400, "{method} {path}: {text}");
                assert!(
                    named.contains(&"body/zz_unknown".to_string()),
                    "{method} {path}: {text}"
                );
                seen.push((status, named, text));
                seen.push(answer(with("{".into(), "application/json")).await);
                seen.push(answer(with("{\"a\":1,\"a\":2}".into(), "application/json")).await);
                seen.push(
                    answer(with(
                        good_body(path, method).to_string().into(),
                        "text/plain",
                    ))
                    .await,
                );
                seen.push(answer(with(vec![b' '; 64 * 1024].into(), "application/json")).await);
            }

            for (status, _, body) in &seen {
                assert!(
                    documented.contains(&status.to_string()),
                    "{method} {path} answered {status}, documented {documented:?}: {body}"
                );
            }
            for status in [400, 401, 415, 413] {
                if seen.iter().any(|(s, ..)| *s == status) {
                    let schema = &operation["responses"][status.to_string()]["content"]
                        ["application/problem+json"]["schema"];
                    assert!(
                        schema.is_object(),
                        "{method} {path} {status} is not a problem"
                    );
                }
            }
            checked_operations += 1;
        }
    }
    assert!(checked_operations >= 20, "{checked_operations}");
    assert!(documented_params >= 25, "{documented_params}");

    // The create body: exactly one of buildId and appId, as the server
    // enforces.
    let create = resolve(
        &doc,
        &doc["paths"]["/api/deploys"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    let branches: Vec<Value> = create["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("no oneOf: {create}"))
        .iter()
        .map(|b| b["required"].clone())
        .collect();
    assert_eq!(branches, vec![json!(["buildId"]), json!(["appId"])]);
    for (body, status) in [
        (json!({"buildId": seeded.build}), 201),
        (json!({"appId": seeded.app}), 201),
        (json!({"buildId": seeded.build, "appId": seeded.app}), 400),
        (json!({}), 400),
        (json!({"buildId": null, "appId": seeded.app}), 201),
    ] {
        let r = app.post("/api/deploys", &app.token, body.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
    }
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
    the_document_says_exactly_what_each_operation_takes_and_answers,
    the_documented_deploy_schema_is_the_shape_the_server_sends,
    the_api_reference_page_works_offline,
    each_list_parameter_has_its_own_schema_and_the_filter_language_its_own_section,
);
