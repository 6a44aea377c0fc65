//! Server-Sent Events read over a real socket, and the JSON feed
//! (`spec/feeds.md`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// One message as a test reads it: (id, event, data).
type Message = (String, String, Value);

/// An SSE connection, parsed here (not with deployd's own reader).
struct Stream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen (heartbeats).
    comments: usize,
}

impl Stream {
    async fn open(app: &TestApp, path: &str, token: &str, last: Option<&str>) -> Stream {
        let mut request = app
            .client
            .get(app.url(path))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Stream {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next message; `None` once the server closed the stream. Fails
    /// the test after 20 s of nothing.
    async fn next(&mut self) -> Option<Message> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                let mut fields = 0;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    fields += 1;
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.into();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if fields > 0 {
                    let data = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("a message that is not JSON ({e}): {block:?}"));
                    return Some((id, event, data));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("the stream said nothing for 20 s")
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` messages.
    async fn take(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.next().await.expect("the stream ended early"));
        }
        out
    }

    /// Every message until the server closes the stream.
    async fn rest(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.next().await {
            out.push(m);
        }
        out
    }
}

/// The feed's whole JSON, page by page.
async fn all_pages(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page: Value = app
            .get(&format!("/api/events?limit=2&after={after}{query}"), token)
            .await
            .json()
            .await
            .unwrap();
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        after = page["pageInfo"]["endCursor"].as_str().unwrap().to_string();
        if page["pageInfo"]["hasNextPage"] == false {
            return out;
        }
    }
}

fn ids(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|(_, _, d)| d["eventId"].as_str().unwrap().to_string())
        .collect()
}

async fn cancel(app: &TestApp, id: &str) {
    let response = app
        .post(&format!("/api/deploys/{id}/cancel"), &app.token, json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn a_deploys_stream_sends_every_event_in_order_and_ends_after_the_terminal_one() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/deploys/{id}/events");
    let mut stream = Stream::open(&app, &path, &app.token, None).await;
    let messages = stream.rest().await;
    let sequences: Vec<String> = messages.iter().map(|m| m.0.clone()).collect();
    let expected: Vec<String> = (1..=messages.len()).map(|i| i.to_string()).collect();
    assert_eq!(sequences, expected, "ids are the sequences, with no gap");
    assert_eq!(messages[0].1, "DeployCreated");
    assert_eq!(messages.last().unwrap().1, "DeployCompleted");
    for (_, event, data) in &messages {
        assert_eq!(&data["type"], event);
        assert_eq!(data["workspaceId"], WS);
        assert_eq!(data["aggregateId"], id.as_str());
        assert!(data["position"].as_i64().unwrap() > 0);
        assert!(data["eventId"].as_str().unwrap().starts_with("evt_"));
    }
    // The same events as the JSON answer.
    let audit: Value = app.get(&path, &app.token).await.json().await.unwrap();
    let audit_ids: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids(&messages), audit_ids);
    // Resumed after the terminal event, the stream closes at once.
    let last = messages.last().unwrap().0.clone();
    let mut resumed = Stream::open(&app, &path, &app.token, Some(&last)).await;
    assert!(resumed.rest().await.is_empty());
    app.stop().await;
}

async fn a_deploys_stream_resumed_with_last_event_id_misses_nothing_and_repeats_nothing() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/deploys/{id}/events");
    let mut first = Stream::open(&app, &path, &app.token, None).await;
    let before = first.take(1).await;
    drop(first);
    // The deploy moves on while nobody listens.
    cancel(&app, &id).await;
    let mut second = Stream::open(&app, &path, &app.token, Some(&before[0].0)).await;
    let after = second.rest().await;
    let seen: Vec<&str> = before.iter().chain(&after).map(|m| m.1.as_str()).collect();
    assert_eq!(seen, vec!["DeployCreated", "DeployCancelled"]);
    // `after` does the same as the header.
    let mut third = Stream::open(&app, &format!("{path}?after=1"), &app.token, None).await;
    assert_eq!(ids(&third.rest().await), ids(&after));
    // Another workspace's token finds no such deploy.
    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&app.other_token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

async fn the_feed_stream_resumes_by_position_without_gaps_or_repeats_and_shows_no_other_workspace()
{
    let app = TestApp::spawn().await;
    let mine = app.seed_app(WS).await;
    let theirs = app.seed_app(OTHER_WS).await;
    let their_deploy = app
        .post(
            "/api/deploys",
            &app.other_token,
            json!({"buildId": theirs.build}),
        )
        .await;
    assert_eq!(their_deploy.status(), StatusCode::CREATED);
    let d1 = app.create(&mine.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut live = Stream::open(&app, "/api/events", &app.token, None).await;
    // entity, build, deploy created
    let first = live.take(3).await;
    let resume_at = first.last().unwrap().0.clone();
    drop(live);
    // Meanwhile: more of mine and more of theirs.
    cancel(&app, &d1).await;
    let d2 = app.create(&mine.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .post(
            "/api/deploys",
            &app.other_token,
            json!({"buildId": theirs.build}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut resumed = Stream::open(&app, "/api/events", &app.token, Some(&resume_at)).await;
    let second = resumed.take(2).await;
    let mut seen = ids(&first);
    seen.extend(ids(&second));
    // Exactly the JSON pages' events: nothing missed, nothing twice.
    let pages = all_pages(&app, &app.token, "").await;
    let expected: Vec<String> = pages
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(second[1].2["aggregateId"], d2.as_str());
    for (id, _, data) in first.iter().chain(&second) {
        assert_eq!(data["workspaceId"], WS);
        assert!(id.contains(':'), "ids are position tokens: {id}");
    }
    // The stream is still open while the server stops: stopping ends it.
    app.stop().await;
    assert!(resumed.next().await.is_none());
}

async fn the_feed_pages_filter_and_name_bad_values() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let d1 = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d2 = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    cancel(&app, &d1).await;

    let all = all_pages(&app, &app.token, "").await;
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "EntityUpserted",
            "BuildSucceeded",
            "DeployCreated",
            "DeployCreated",
            "DeployCancelled"
        ]
    );
    let positions: Vec<i64> = all
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    let of_d1 = all_pages(&app, &app.token, &format!("&deploy_id={d1}")).await;
    assert_eq!(of_d1.len(), 2);
    assert!(of_d1.iter().all(|e| e["aggregateId"] == d1.as_str()));
    let created = all_pages(&app, &app.token, "&types=DeployCreated").await;
    let created: Vec<&str> = created
        .iter()
        .map(|e| e["aggregateId"].as_str().unwrap())
        .collect();
    assert_eq!(created, vec![d1.as_str(), d2.as_str()]);
    // An entity's feed holds its own, its builds' and its deploys' events.
    let of_app = all_pages(&app, &app.token, &format!("&entity_id={}", seeded.app)).await;
    assert_eq!(of_app.len(), all.len());
    let elsewhere = format!("&entity_id=app_{}", ulid::Ulid::generate());
    assert!(all_pages(&app, &app.token, &elsewhere).await.is_empty());
    // Another workspace sees none of it, even asking for this one.
    assert!(all_pages(&app, &app.other_token, "").await.is_empty());
    let asked = format!("&workspace_id={WS}");
    assert!(all_pages(&app, &app.other_token, &asked).await.is_empty());

    for (query, pointer) in [
        ("types=DeployCreated,Nope", "types"),
        ("after=yesterday", "after"),
        ("limit=0", "limit"),
        ("entity_id=nope", "entity_id"),
        ("deploy_id=dep_nope", "deploy_id"),
        ("workspace_id=1", "workspace_id"),
    ] {
        let body = problem(
            app.get(&format!("/api/events?{query}"), &app.token).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(pointers(&body), vec![pointer], "{query}");
    }
    for path in [
        "/api/events".to_string(),
        format!("/api/deploys/{d1}/events"),
    ] {
        let response = app
            .client
            .get(app.url(&path))
            .bearer_auth(&app.token)
            .header("accept", "text/event-stream")
            .header("last-event-id", "not-an-id")
            .send()
            .await
            .unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(pointers(&body), vec!["Last-Event-ID"], "{path}");
    }
    app.stop().await;
}

async fn an_idle_stream_sends_heartbeats_and_outlives_the_request_timeout() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            sse_heartbeat: Duration::from_millis(100),
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let mut stream = Stream::open(&app, "/api/events", &app.token, None).await;
    let seeded = app.seed_app(WS).await;
    // Nothing else happens after the catalog's two events: between them
    // and the deploy, comments keep the connection alive, and the stream
    // lives on past the per-request timeout (which bounds the answer's
    // start, not its body).
    stream.take(2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.create(&seeded.build).await;
    let (_, event, _) = stream.next().await.unwrap();
    assert_eq!(event, "DeployCreated");
    assert!(stream.comments >= 1, "no heartbeat while idle");
    app.stop().await;
}

/// An SSE client on a socket of its own with a small receive buffer,
/// speaking HTTP/1.1 by hand, that can stop reading.
struct RawClient {
    socket: tokio::net::TcpStream,
    /// Everything read so far: the answer's head and its chunked body.
    raw: Vec<u8>,
}

impl RawClient {
    async fn open(app: &TestApp, path: &str, token: &str) -> RawClient {
        use tokio::io::AsyncWriteExt;
        let address = app.address.strip_prefix("http://").unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut socket = socket.connect(address.parse().unwrap()).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\nConnection: close\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        RawClient {
            socket,
            raw: Vec::new(),
        }
    }

    /// Reads until `n` messages have arrived (then reads no more).
    async fn read_messages(&mut self, n: usize) {
        use tokio::io::AsyncReadExt;
        while self.messages().len() < n {
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(20), self.socket.read(&mut chunk))
                .await
                .expect("the stream said nothing for 20 s")
                .unwrap();
            assert!(read > 0, "the stream ended early");
            self.raw.extend_from_slice(&chunk[..read]);
        }
    }

    /// Reads everything until the server closes the connection; fails the
    /// test if the stream is still open after 20 s of silence.
    async fn read_to_close(&mut self) {
        use tokio::io::AsyncReadExt;
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(20), self.socket.read(&mut chunk))
                .await
                .expect("the stream was not closed")
                .unwrap();
            if read == 0 {
                return;
            }
            self.raw.extend_from_slice(&chunk[..read]);
        }
    }

    /// The body so far, chunked transfer coding removed; and whether the
    /// last chunk (the body's end) was seen.
    fn body(&self) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.raw).to_string();
        let Some((head, mut rest)) = text.split_once("\r\n\r\n") else {
            return (String::new(), false);
        };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let mut body = String::new();
        loop {
            let Some((size, after)) = rest.split_once("\r\n") else {
                return (body, false);
            };
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                return (body, true);
            }
            if after.len() < size + 2 {
                return (body, false);
            }
            body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
    }

    /// The complete messages so far: (id, event, data).
    fn messages(&self) -> Vec<Message> {
        let (body, _) = self.body();
        let mut out = Vec::new();
        let mut rest = body.as_str();
        while let Some(end) = rest.find("\n\n") {
            let block = &rest[..end];
            rest = &rest[end + 2..];
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.into();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.into();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if !data.is_empty() {
                out.push((id, event, serde_json::from_str(&data).unwrap()));
            }
        }
        out
    }
}

async fn a_slow_feed_client_is_cut_loose_without_slowing_another_and_resumes_exactly() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            sse_buffer: 16,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let seeded = app.seed_app(WS).await;
    let mut fast = Stream::open(&app, "/api/events", &app.token, None).await;
    let mut slow = RawClient::open(&app, "/api/events", &app.token).await;
    // Both have the catalog's two events, so both follow the hub now.
    assert_eq!(fast.take(2).await.len(), 2);
    slow.read_messages(2).await;
    assert_eq!(app.hub.subscribers().await, 2);

    // Deploys with large metadata (about 12 KiB per event) until the
    // slow client, which reads no more, has filled its socket, the
    // server's buffers and its queue of 16, and is cut loose. The fast
    // one reads every batch before the next is made, so its queue never
    // holds more than a batch.
    let metadata = json!({"note": "x".repeat(12 * 1024)});
    let mut created = Vec::new();
    for _ in 0..200 {
        for _ in 0..8 {
            let response = app
                .post(
                    "/api/deploys",
                    &app.token,
                    json!({"buildId": seeded.build, "metadata": metadata}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::CREATED);
            let body: Value = response.json().await.unwrap();
            created.push(body["id"].as_str().unwrap().to_string());
        }
        let got = fast.take(8).await;
        let got: Vec<&str> = got
            .iter()
            .map(|m| m.2["aggregateId"].as_str().unwrap())
            .collect();
        assert_eq!(
            got,
            created[created.len() - 8..],
            "the fast client has every event"
        );
        if app.hub.cut_total() > 0 {
            break;
        }
    }
    assert_eq!(
        app.hub.cut_total(),
        1,
        "the slow client was never cut loose"
    );
    assert_eq!(app.hub.subscribers().await, 1, "the fast one still follows");
    // The fast one goes on as before.
    let after_cut = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fast.take(1).await[0].2["aggregateId"], after_cut.as_str());

    // The slow client reads again: what the server held for it, then the
    // end of the stream.
    slow.read_to_close().await;
    assert!(slow.body().1, "the stream ended with its last chunk");
    let got = slow.messages();
    let all = all_pages(&app, &app.token, "").await;
    let all_ids: Vec<String> = all
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all_ids.len(), 2 + created.len() + 1);
    assert!(got.len() >= 2 && got.len() < all_ids.len(), "{}", got.len());
    assert_eq!(ids(&got), all_ids[..got.len()], "a prefix, with no gap");
    // Resumed from its last id: exactly the rest, then what comes next.
    let last = got.last().unwrap().0.clone();
    let mut resumed = Stream::open(&app, "/api/events", &app.token, Some(&last)).await;
    let rest = resumed.take(all_ids.len() - got.len()).await;
    assert_eq!(ids(&rest), all_ids[got.len()..], "no gap, no repeat");
    let next = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(resumed.take(1).await[0].2["aggregateId"], next.as_str());
    assert_eq!(fast.take(1).await[0].2["aggregateId"], next.as_str());
    assert_eq!(app.hub.cut_total(), 1);
    app.stop().await;
}

/// Many clients of one server cost one reading of the log per batch, not
/// one each: the hub's reads do not grow with the clients.
async fn feed_clients_share_one_reading_of_the_log() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut client = Stream::open(&app, "/api/events", &app.token, None).await;
        client.take(2).await;
        clients.push(client);
    }
    let reads_before = app.hub.reads_total();
    let mut created = Vec::new();
    for _ in 0..10 {
        created.push(
            app.create(&seeded.build).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for client in &mut clients {
        let got = client.take(10).await;
        let got: Vec<&str> = got
            .iter()
            .map(|m| m.2["aggregateId"].as_str().unwrap())
            .collect();
        assert_eq!(got, created);
    }
    let reads = app.hub.reads_total() - reads_before;
    // One read per batch the hub found (at most one per deploy here) and
    // its idle polls: not the 200 of one read per client per event.
    assert!(reads < 100, "{reads} reads for 20 clients and 10 events");
    app.stop().await;
}

/// The node a local `$ref` (`#/a/b`) points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

async fn the_asyncapi_document_describes_every_channel_and_every_reference_resolves() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/api/asyncapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let channels = doc["channels"].as_object().unwrap();
    for event_type in deployd::feeds::EVENT_TYPES {
        let channel = &channels[*event_type];
        let address = channel["address"].as_str().unwrap();
        assert!(
            address.starts_with(&format!("{}.events.{{workspaceId}}.", app.prefix))
                && address.ends_with(&format!(".{event_type}")),
            "{address}"
        );
        assert!(channel["parameters"]["workspaceId"].is_object());
        // Its message's payload is the event, whose data is the schema of
        // event-schemas/ for that type.
        let message = resolve(
            &doc,
            channel["messages"][*event_type]["$ref"].as_str().unwrap(),
        )
        .unwrap();
        let payload = resolve(&doc, message["payload"]["$ref"].as_str().unwrap()).unwrap();
        let data_ref = payload["allOf"][1]["properties"]["data"]["$ref"]
            .as_str()
            .unwrap();
        let data = resolve(&doc, data_ref).unwrap();
        assert!(
            data["title"].as_str().unwrap().starts_with(event_type),
            "{data}"
        );
    }
    let created = &doc["components"]["schemas"]["DeployCreated"];
    assert!(
        created["required"]
            .as_array()
            .unwrap()
            .contains(&json!("versionId")),
        "the current version"
    );
    let envelope = &doc["components"]["schemas"]["Event"]["properties"];
    for field in [
        "eventId",
        "position",
        "workspaceId",
        "aggregateType",
        "aggregateId",
        "sequence",
        "type",
        "version",
        "recordedAt",
        "metadata",
        "data",
    ] {
        assert!(envelope.get(field).is_some(), "the envelope lacks {field}");
    }
    assert!(channels["webhooks"]["address"].is_null());
    let webhook = &doc["components"]["messages"]["webhookEvent"];
    let headers = resolve(&doc, webhook["headers"]["$ref"].as_str().unwrap()).unwrap();
    assert!(headers["properties"]["webhook-signature"].is_object());
    for (name, operation) in doc["operations"].as_object().unwrap() {
        assert!(
            ["send", "receive"].contains(&operation["action"].as_str().unwrap()),
            "{name}"
        );
        assert!(
            resolve(&doc, operation["channel"]["$ref"].as_str().unwrap()).is_some(),
            "{name}"
        );
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50);
    for reference in all {
        assert!(
            resolve(&doc, &reference).is_some(),
            "{reference} does not resolve"
        );
    }
    app.stop().await;
}

crate::backend_tests!(
    the_asyncapi_document_describes_every_channel_and_every_reference_resolves,
    a_deploys_stream_sends_every_event_in_order_and_ends_after_the_terminal_one,
    a_deploys_stream_resumed_with_last_event_id_misses_nothing_and_repeats_nothing,
    the_feed_stream_resumes_by_position_without_gaps_or_repeats_and_shows_no_other_workspace,
    the_feed_pages_filter_and_name_bad_values,
    an_idle_stream_sends_heartbeats_and_outlives_the_request_timeout,
    a_slow_feed_client_is_cut_loose_without_slowing_another_and_resumes_exactly,
    feed_clients_share_one_reading_of_the_log,
);

/// NATS only: the relay's messages carry the CloudEvents 1.0 attributes
/// as `ce-` headers (binary content mode) beside deployd's own.
#[tokio::test]
async fn every_nats_event_message_carries_cloudevents_headers() {
    use futures::StreamExt;
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    cancel(&app, &id).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let stream = js
        .get_stream(format!("{}_events", app.prefix))
        .await
        .unwrap();
    eventually(|| {
        let mut stream = stream.clone();
        async move { stream.info().await.unwrap().state.messages >= 4 }
    })
    .await;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut types = Vec::new();
    for _ in 0..4 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        let headers = message.headers.as_ref().unwrap();
        let header = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("no {name} header"))
                .to_string()
        };
        assert_eq!(header("ce-specversion"), "1.0");
        assert_eq!(header("ce-id"), body["eventId"].as_str().unwrap());
        assert_eq!(header("ce-id"), header("Nats-Msg-Id"));
        assert_eq!(
            header("ce-type"),
            format!("dev.deployd.{}", body["type"].as_str().unwrap())
        );
        assert_eq!(header("ce-source"), format!("/workspaces/{WS}"));
        assert_eq!(header("ce-subject"), body["aggregateId"].as_str().unwrap());
        assert_eq!(header("ce-time"), body["recordedAt"].as_str().unwrap());
        assert!(chrono::DateTime::parse_from_rfc3339(&header("ce-time")).is_ok());
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("Deployd-Position"), body["position"].to_string());
        assert_eq!(header("Deployd-Event-Type"), body["type"].as_str().unwrap());
        types.push(header("ce-type"));
    }
    assert_eq!(
        types,
        [
            "dev.deployd.EntityUpserted",
            "dev.deployd.BuildSucceeded",
            "dev.deployd.DeployCreated",
            "dev.deployd.DeployCancelled"
        ]
    );
    app.stop().await;
}
