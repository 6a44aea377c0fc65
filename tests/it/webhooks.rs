//! Webhooks delivered to real HTTP receivers that check the signatures
//! with their own implementation of Standard Webhooks
//! (`webhook_receiver.py`: Python's hmac and hashlib).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use crate::helpers::*;

/// A receiver process on a loopback port.
pub struct Receiver {
    _child: tokio::process::Child,
    pub url: String,
    http: reqwest::Client,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/webhook_receiver.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the receiver");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        let port: u16 = line.trim().parse().expect("the receiver prints its port");
        Receiver {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    async fn put(&self, path: &str, value: Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.url))
            .json(&value)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// The secrets it verifies with.
    pub async fn trust(&self, secrets: &[&str]) {
        self.put("/_secrets", json!(secrets)).await;
    }

    /// Answer 500 to the next `n` deliveries.
    pub async fn fail(&self, n: u32) {
        self.put("/_fail", json!(n)).await;
    }

    /// Hold deliveries unanswered (true) or answer them (false).
    pub async fn hold(&self, on: bool) {
        self.put("/_hold", json!(on)).await;
    }

    /// Every delivery as it arrived.
    pub async fn received(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_received", self.url))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    }

    /// Waits until `check` holds for what arrived (30 s at most).
    pub async fn wait_until(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..600 {
            let got = self.received().await;
            if check(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "receiver: {what} did not happen: {:?}",
            self.received().await
        );
    }
}

/// The ids of the deliveries that were answered 200, in arrival order.
pub fn accepted(received: &[Value]) -> Vec<String> {
    received
        .iter()
        .filter(|r| r["answered"] == 200)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn private_ok() -> Options {
    Options {
        webhooks: deployd::webhooks::WebhookSettings {
            allow_private: true,
            retry_schedule: vec![Duration::from_millis(200); 10],
            timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Options::default()
    }
}

async fn make_webhook(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/api/webhooks", token, body).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The ids of the caller's workspace's events, from the feed.
async fn feed_ids(app: &TestApp, query: &str) -> Vec<String> {
    let page: Value = app
        .get(&format!("/api/events?limit=1000{query}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect()
}

async fn cancel(app: &TestApp, id: &str) {
    let response = app
        .post(&format!("/api/deploys/{id}/cancel"), &app.token, json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn each_receiver_gets_its_workspaces_events_signed_in_order_and_no_other() {
    let app = TestApp::spawn_with(private_ok()).await;
    let (mine, only_cancels, theirs) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let hook = make_webhook(
        &app,
        &app.token,
        json!({"url": mine.url, "description": "all"}),
    )
    .await;
    assert!(hook["id"].as_str().unwrap().starts_with("whk_"));
    assert_eq!(hook["workspaceId"], WS);
    assert!(hook["events"].is_null());
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    mine.trust(&[&secret]).await;
    let cancels = make_webhook(
        &app,
        &app.token,
        json!({"url": only_cancels.url, "events": ["DeployCancelled"]}),
    )
    .await;
    only_cancels
        .trust(&[cancels["secret"].as_str().unwrap()])
        .await;
    let other = make_webhook(&app, &app.other_token, json!({"url": theirs.url})).await;
    assert_eq!(other["workspaceId"], OTHER_WS);

    let seeded = app.seed_app(WS).await;
    let d1 = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    cancel(&app, &d1).await;
    app.create(&seeded.build).await;

    let expected = feed_ids(&app, "").await;
    assert_eq!(expected.len(), 5);
    let got = mine
        .wait_until("every event", |r| accepted(r).len() >= expected.len())
        .await;
    assert_eq!(accepted(&got), expected, "in log order, each once");
    for r in &got {
        assert_eq!(r["verified"], json!([true]), "signature: {r}");
        assert_eq!(r["contentType"], "application/json");
        assert_eq!(r["body"]["eventId"], r["id"]);
        assert_eq!(r["body"]["workspaceId"], WS);
        let sent: i64 = r["timestamp"].as_str().unwrap().parse().unwrap();
        assert!((sent - chrono::Utc::now().timestamp()).abs() < 300);
    }
    let got = only_cancels
        .wait_until("the cancel", |r| !accepted(r).is_empty())
        .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["type"], "DeployCancelled");
    assert_eq!(got[0]["verified"], json!([true]));

    // The fan-out has passed every event: the other workspace's webhook
    // has no delivery at all, and its receiver heard nothing.
    let theirs_log: Value = app
        .get(
            &format!("/api/webhooks/{}/deliveries", other["id"].as_str().unwrap()),
            &app.other_token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs_log["data"], json!([]));
    assert!(theirs.received().await.is_empty());

    // The deliveries log, newest first, paged, once the sender has
    // recorded the answers the receiver gave.
    let all = format!(
        "/api/webhooks/{}/deliveries?limit=100",
        hook["id"].as_str().unwrap()
    );
    eventually(|| async {
        let page: Value = app.get(&all, &app.token).await.json().await.unwrap();
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "succeeded")
    })
    .await;
    let path = format!(
        "/api/webhooks/{}/deliveries?limit=3",
        hook["id"].as_str().unwrap()
    );
    let page: Value = app.get(&path, &app.token).await.json().await.unwrap();
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(rows[0]["eventId"], json!(expected[4]));
    assert_eq!(rows[0]["status"], "succeeded");
    assert_eq!(rows[0]["attempt"], 1);
    assert_eq!(rows[0]["responseStatus"], 200);
    let next = format!(
        "{path}&after={}",
        page["pageInfo"]["endCursor"].as_str().unwrap()
    );
    let page: Value = app.get(&next, &app.token).await.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);

    // Listing and reading show no secret; another workspace sees nothing.
    let list: Value = app
        .get("/api/webhooks", &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(list["data"][0].get("secret").is_none());
    let one = format!("/api/webhooks/{}", hook["id"].as_str().unwrap());
    assert!(app
        .get(&one, &app.token)
        .await
        .json::<Value>()
        .await
        .unwrap()["secret"]
        .is_null());
    problem(app.get(&one, &app.other_token).await, StatusCode::NOT_FOUND).await;
    let response = app
        .client
        .delete(app.url(&one))
        .bearer_auth(&app.other_token)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .client
        .delete(app.url(&one))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(app.get(&one, &app.token).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn a_failing_endpoint_is_retried_until_it_recovers_and_never_holds_up_another() {
    let app = TestApp::spawn_with(private_ok()).await;
    let (stuck, healthy) = (Receiver::start().await, Receiver::start().await);
    let a = make_webhook(&app, &app.token, json!({"url": stuck.url})).await;
    let b = make_webhook(&app, &app.token, json!({"url": healthy.url})).await;
    stuck.trust(&[a["secret"].as_str().unwrap()]).await;
    healthy.trust(&[b["secret"].as_str().unwrap()]).await;
    // The first endpoint holds every request unanswered (its attempts time
    // out), then fails twice more once it answers.
    stuck.hold(true).await;
    let seeded = app.seed_app(WS).await;
    let expected = feed_ids(&app, "").await;
    // The healthy one gets everything while the other is stuck.
    let got = healthy
        .wait_until("both events", |r| accepted(r).len() >= expected.len())
        .await;
    assert_eq!(accepted(&got), expected);
    assert!(accepted(&stuck.received().await).is_empty());
    stuck.fail(2).await;
    stuck.hold(false).await;
    let got = stuck
        .wait_until("every event, at last", |r| {
            expected.iter().all(|id| accepted(r).contains(id))
        })
        .await;
    assert!(got.iter().all(|r| r["verified"] == json!([true])));
    let path = format!("/api/webhooks/{}/deliveries", a["id"].as_str().unwrap());
    let mut log = Value::Null;
    for _ in 0..200 {
        log = app.get(&path, &app.token).await.json().await.unwrap();
        if log["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "succeeded")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = log["data"].as_array().unwrap();
    assert!(rows.iter().all(|d| d["status"] == "succeeded"), "{log}");
    assert!(
        rows.iter().any(|d| d["attempt"].as_i64().unwrap() > 1),
        "some delivery was retried: {log}"
    );
    // A manual retry sends a delivered event again, same webhook-id.
    let first = rows.last().unwrap();
    let response = app
        .post(
            &format!(
                "/api/webhooks/{}/deliveries/{}/retry",
                a["id"].as_str().unwrap(),
                first["id"].as_str().unwrap()
            ),
            &app.token,
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let before = accepted(&got).len();
    let again = stuck
        .wait_until("the retry", |r| accepted(r).len() > before)
        .await;
    assert_eq!(
        accepted(&again).last().unwrap(),
        first["eventId"].as_str().unwrap()
    );
    drop(seeded);
    app.stop().await;
}

async fn bad_webhooks_are_refused_naming_the_field() {
    // Private addresses are refused by default.
    let app = TestApp::spawn().await;
    for (body, pointer) in [
        (json!({"url": "ftp://example.com/hook"}), "body/url"),
        (json!({"url": "http://127.0.0.1:9/hook"}), "body/url"),
        (json!({"url": "http://[::1]:9/hook"}), "body/url"),
        (json!({"url": "http://10.0.0.8/hook"}), "body/url"),
        (json!({"url": "http://localhost:9/hook"}), "body/url"),
        (json!({}), "body/url"),
        (
            json!({"url": "https://93.184.216.34/hook", "events": ["DeployCreated", "Nope"]}),
            "body/events/1",
        ),
        (
            json!({"url": "https://93.184.216.34/hook", "workspaceId": OTHER_WS}),
            "body/workspaceId",
        ),
        (
            json!({"url": "https://93.184.216.34/hook", "colour": 1}),
            "body/colour",
        ),
    ] {
        let body = problem(
            app.post("/api/webhooks", &app.token, body.clone()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(pointers(&body), vec![pointer], "{body}");
    }
    let list: Value = app
        .get("/api/webhooks", &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]), "nothing was made");
    app.stop().await;
}

async fn a_rotated_secret_signs_beside_the_old_one_for_a_day() {
    let app = TestApp::spawn_with(private_ok()).await;
    let receiver = Receiver::start().await;
    let hook = make_webhook(&app, &app.token, json!({"url": receiver.url})).await;
    let old = hook["secret"].as_str().unwrap().to_string();
    let response = app
        .post(
            &format!(
                "/api/webhooks/{}/rotate-secret",
                hook["id"].as_str().unwrap()
            ),
            &app.token,
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new = response.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    receiver.trust(&[&old, &new]).await;
    app.seed_app(WS).await;
    let got = receiver
        .wait_until("an event", |r| !accepted(r).is_empty())
        .await;
    assert_eq!(got[0]["verified"], json!([true, true]), "{}", got[0]);
    assert_eq!(got[0]["signatures"].as_str().unwrap().split(' ').count(), 2);
    app.stop().await;
}

async fn a_webhook_failing_for_three_days_is_disabled_and_patch_enables_it() {
    let app = TestApp::spawn_with(private_ok()).await;
    let receiver = Receiver::start().await;
    let hook = make_webhook(&app, &app.token, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap().to_string();
    receiver.trust(&[hook["secret"].as_str().unwrap()]).await;
    // It has been failing for four days when the next failure comes.
    receiver.fail(1000).await;
    let four_days_ago = chrono::Utc::now() - chrono::Duration::days(4);
    deployd::on_writer!(app.db.writer().await, pool => sqlx::query("UPDATE webhooks SET failing_since = $1 WHERE id = $2")
        .bind(four_days_ago)
        .bind(&id)
        .execute(pool)
        .await
        .map(|_| ())
        .unwrap());
    let seeded = app.seed_app(WS).await;
    let path = format!("/api/webhooks/{id}");
    let mut disabled = Value::Null;
    for _ in 0..400 {
        disabled = app.get(&path, &app.token).await.json().await.unwrap();
        if disabled["disabled"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(disabled["disabled"], true, "{disabled}");
    assert!(disabled["disabledReason"]
        .as_str()
        .unwrap()
        .contains("72 hours"));
    // Disabled: no more events are fanned out to it.
    let before = receiver.received().await.len();
    app.create(&seeded.build).await;
    // Re-enabled (and the endpoint fixed): the next events arrive.
    receiver.fail(0).await;
    let response = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&app.token)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let enabled: Value = response.json().await.unwrap();
    assert_eq!(enabled["disabled"], false);
    assert!(enabled["disabledReason"].is_null());
    let d2 = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = receiver
        .wait_until("the deploy made after re-enabling", |r| {
            r.iter()
                .any(|x| x["answered"] == 200 && x["body"]["aggregateId"] == d2.as_str())
        })
        .await;
    assert!(got.len() > before);
    let body = problem(
        app.client
            .patch(app.url(&path))
            .bearer_auth(&app.token)
            .json(&json!({"disabled": "no"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(pointers(&body), vec!["body/disabled"]);
    app.stop().await;
}

crate::backend_tests!(
    each_receiver_gets_its_workspaces_events_signed_in_order_and_no_other,
    a_failing_endpoint_is_retried_until_it_recovers_and_never_holds_up_another,
    bad_webhooks_are_refused_naming_the_field,
    a_rotated_secret_signs_beside_the_old_one_for_a_day,
    a_webhook_failing_for_three_days_is_disabled_and_patch_enables_it,
);
