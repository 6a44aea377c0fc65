//! Generated JSON thrown at create, cancel and the list (issue 12): odd
//! numbers, NUL and other control characters, deep nesting, unknown keys.
//! Whatever comes in, nothing answers 5xx, the store stays readable (every
//! reader moves, the list and every detail answer), and every accepted
//! value reads back equal.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// A JSON number as text: doubles at every scale, integers beyond 64 bits,
/// negative zero, long exponents.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:e}")),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| serde_json::to_string(&x).unwrap()),
        "-?[1-9][0-9]{18,40}",
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("1e308".to_string()),
        Just("1.7976931348623157e308".to_string()),
        Just("5e-324".to_string()),
        Just("1e16".to_string()),
        "-?[0-9]\\.[0-9]{1,25}e-?[0-9]{1,3}",
    ]
}

/// A JSON string as text, with NUL, control characters and other planes.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,8}",
        "\\PC{0,12}",
        "[\\x00-\\x1f a\u{e9}\u{1F600}]{0,6}",
    ]
    .prop_map(|s| serde_json::to_string(&s).unwrap())
}

/// Any JSON value as text, up to 40 levels deep.
fn json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number(),
        string(),
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(40, 120, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((string(), inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A create body: the build, generated metadata, sometimes an unknown key.
fn create_body(build: String) -> impl Strategy<Value = String> {
    (json(), prop::option::of((string(), json()))).prop_map(move |(metadata, extra)| {
        let extra = extra.map(|(k, v)| format!(",{k}:{v}")).unwrap_or_default();
        format!(r#"{{"buildId":"{build}","metadata":{metadata}{extra}}}"#)
    })
}

async fn post_raw(app: &TestApp, path: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn generated_json_never_breaks_the_api_or_the_store() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            rate_limit_per_second: 0,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let seeded = app.seed_app(WS).await;
    let mut runner = TestRunner::new(Config {
        cases: 60,
        ..Config::default()
    });
    let creates = create_body(seeded.build.clone());
    let mut accepted = Vec::new();
    for _ in 0..60 {
        let body = creates.new_tree(&mut runner).unwrap().current();
        let response = post_raw(&app, "/api/deploys", body.clone()).await;
        let status = response.status();
        assert!(!status.is_server_error(), "create {body}: {status}");
        if status == StatusCode::CREATED {
            let row: Value = response.json().await.unwrap();
            let sent: Value = serde_json::from_str(&body).unwrap();
            // `"metadata": null` is documented as no metadata: `{}`.
            let expected = match &sent["metadata"] {
                Value::Null => Value::Object(Default::default()),
                sent => sent.clone(),
            };
            assert_eq!(row["metadata"], expected, "create {body}");
            accepted.push((row["id"].as_str().unwrap().to_string(), expected));
        } else {
            problem(response, status).await;
        }

        // A cancel of the last accepted deploy with a generated body.
        if let Some((id, _)) = accepted.last() {
            let reason = json().new_tree(&mut runner).unwrap().current();
            let extra = string().new_tree(&mut runner).unwrap().current();
            for body in [
                format!(r#"{{"reason":{reason}}}"#),
                format!(r#"{{{extra}:{reason}}}"#),
            ] {
                let response =
                    post_raw(&app, &format!("/api/deploys/{id}/cancel"), body.clone()).await;
                let status = response.status();
                assert!(!status.is_server_error(), "cancel {body}: {status}");
            }
        }

        // The list with a generated filter and a generated shorthand.
        let filter = json().new_tree(&mut runner).unwrap().current();
        let created_by: String =
            serde_json::from_str(&string().new_tree(&mut runner).unwrap().current()).unwrap();
        for query in [
            vec![("filter", filter.clone())],
            vec![(
                "filter",
                format!(r#"{{"metadata":{{"contains":{filter}}}}}"#),
            )],
            vec![("created_by", created_by.clone())],
        ] {
            let response = app
                .client
                .get(app.url("/api/deploys"))
                .bearer_auth(&app.token)
                .query(&query)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(!status.is_server_error(), "list {query:?}: {status}");
        }
    }

    // Both paths were taken: some values accepted, some refused.
    assert!(
        !accepted.is_empty() && accepted.len() < 60,
        "{} accepted",
        accepted.len()
    );

    // The store is readable: every reader moves, every accepted value
    // reads back equal from the detail and the list.
    eventually(|| async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    })
    .await;
    for (id, metadata) in &accepted {
        assert_eq!(&app.detail(id).await["metadata"], metadata, "{id}");
    }
    let listed = app.get("/api/deploys?limit=100", &app.token).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["pageInfo"]["total"], accepted.len());
    app.stop().await;
}

crate::backend_tests!(generated_json_never_breaks_the_api_or_the_store);
