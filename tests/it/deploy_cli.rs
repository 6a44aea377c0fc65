//! `deployd deploy DIR --app NAME|ID`: the binary against a real server,
//! uploading through the API (`POST /api/builds`, `PUT /api/blobs`,
//! finalize), deploying and following the deploy to its end.

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// `deployd deploy ARGS…` as a person runs it (stderr not a terminal),
/// against `url` with `token`.
async fn deploy(url: &str, token: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg("deploy")
        .args(args)
        .env("DEPLOYD_URL", url)
        .env("DEPLOYD_TOKEN", token)
        .env(
            "DEPLOYD_CACHE_DIR",
            std::env::temp_dir().join("deployd-test-hashes"),
        )
        .env_remove("DATABASE_URL")
        .env("DEPLOYD_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The URL printed on the stdout line starting `label`.
fn printed_url(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| panic!("no {label} line in {stdout:?}"))
}

fn write(dir: &Path, path: &str, content: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, content).unwrap();
}

async fn fetch(app: &TestApp, url: &str) -> (StatusCode, String) {
    let response = app.client.get(url).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A site: 6 files, two of them with the same bytes.
fn site(dir: &Path) {
    write(dir, "index.html", "<h1>hello</h1>");
    write(dir, "about/index.html", "<h1>about</h1>");
    write(dir, "assets/app.css", "body { color: teal }");
    write(dir, "assets/copy.css", "body { color: teal }");
    write(dir, "404.html", "<h1>not here</h1>");
    write(dir, ".git/HEAD", "ref: refs/heads/main");
    write(dir, "empty.txt", "");
}

async fn a_directory_goes_live_by_name_and_an_unchanged_one_uploads_nothing() {
    let app = TestApp::spawn_with_worker().await;
    let dir = tempfile::tempdir().unwrap();
    site(dir.path());
    let path = dir.path().to_str().unwrap();

    // A name no app has: refused, saying how to make it.
    let out = deploy(&app.address, &app.token, &[path, "--app", "hello"]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("add --create"), "{stderr}");

    let out = deploy(
        &app.address,
        &app.token,
        &[
            path, "--app", "hello", "--create", "--branch", "main", "--commit", "abc123",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("created app hello (app_"), "{stderr}");
    assert!(stderr.contains("hashed 6 files"), "{stderr}");
    assert!(!stderr.contains("unchanged since"), "{stderr}");
    // 6 files, 5 distinct contents; .git is left out.
    assert!(stderr.contains("uploading 5 of 6 files"), "{stderr}");
    assert!(stderr.contains("uploaded 5 files"), "{stderr}");
    assert!(stderr.contains("deploy completed"), "{stderr}");
    let production = printed_url(&stdout, "production");
    let preview = printed_url(&stdout, "preview");
    assert_eq!(fetch(&app, &production).await.1, "<h1>hello</h1>");
    assert_eq!(
        fetch(&app, &format!("{preview}about/")).await.1,
        "<h1>about</h1>"
    );
    assert_eq!(
        fetch(&app, &format!("{production}assets/copy.css")).await.1,
        "body { color: teal }"
    );
    let (status, body) = fetch(&app, &format!("{production}.git/HEAD")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "<h1>not here</h1>")
    );

    // The build carries the branch and commit, as an upstream one would.
    let page: Value = app
        .get("/api/entities?name=hello", &app.token)
        .await
        .json()
        .await
        .unwrap();
    let entity = page["data"][0]["id"].as_str().unwrap().to_string();
    let builds: Value = app
        .get(&format!("/api/builds?entity_id={entity}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(builds["data"][0]["branch"], "main");
    assert_eq!(builds["data"][0]["commitSha"], "abc123");

    // Unchanged: nothing is sent, and a new deploy goes live.
    let out = deploy(
        &app.address,
        &app.token,
        &[path, "--app", "hello", "--json"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing to upload: the server has all 6 files"),
        "{stderr}"
    );
    // Nor is anything read: the hashes of the first run still hold.
    assert!(
        stderr.contains("6 files unchanged since they were last hashed"),
        "{stderr}"
    );
    assert!(!stderr.lines().any(|l| l.starts_with("hashed")), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["uploaded"], json!({"files": 0, "bytes": 0}));
    assert_eq!(summary["files"], 6);
    assert_eq!(summary["entity"]["id"], entity);
    assert_eq!(summary["deploy"]["status"], "completed");
    assert_eq!(summary["deploy"]["live"], true);
    assert_eq!(summary["deploy"]["productionUrl"], json!(production));

    // One file changed: only it is sent; by id this time, as a preview.
    write(dir.path(), "index.html", "<h1>hello again</h1>");
    let out = deploy(
        &app.address,
        &app.token,
        &[path, "--app", &entity, "--target", "preview"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("uploading 1 of 6 files"), "{stderr}");
    let preview = printed_url(&stdout, "preview");
    assert_eq!(fetch(&app, &preview).await.1, "<h1>hello again</h1>");
    assert!(!stdout.contains("production"), "{stdout}");
    // Production still serves the first content.
    assert_eq!(fetch(&app, &production).await.1, "<h1>hello</h1>");

    // Another workspace's token finds no such app, and cannot use the id.
    let out = deploy(&app.address, &app.other_token, &[path, "--app", &entity]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("404"), "{stderr}");
    app.stop().await;
}

/// `deploy` exits non-zero unless the deploy completes: here it is
/// cancelled while the command follows it (no worker runs it).
async fn a_deploy_that_does_not_complete_exits_non_zero_saying_why() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", "x");
    let path = dir.path().to_str().unwrap().to_string();
    let (address, token) = (app.address.clone(), app.token.clone());
    let run = tokio::spawn(async move {
        deploy(&address, &token, &[&path, "--app", "web", "--create"]).await
    });
    let id = app.wait_list(&[("status", "pending")]).await;
    let response = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            json!({"reason": "not today"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let out = run.await.unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("deploy {id} cancelled by alice: not today")),
        "{stderr}"
    );
    assert!(!stdout.contains("production"), "{stdout}");

    // --no-wait: the deploy's id, at once.
    let path = dir.path().to_str().unwrap();
    let out = deploy(
        &app.address,
        &app.token,
        &[path, "--app", "web", "--no-wait"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.trim().starts_with("dep_"), "{stdout}");
    assert_eq!(app.detail(stdout.trim()).await["status"], "pending");
    app.stop().await;
}

async fn what_cannot_be_deployed_is_said_before_anything_is_sent() {
    let app = TestApp::spawn().await;
    let empty = tempfile::tempdir().unwrap();
    let file = empty.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let cases = [
        (
            vec![empty.path().join("nope").to_str().unwrap().to_string()],
            "cannot read",
        ),
        (
            vec![file.to_str().unwrap().to_string()],
            "is not a directory",
        ),
    ];
    for (dir, said) in cases {
        let out = deploy(
            &app.address,
            &app.token,
            &[&dir[0], "--app", "x", "--create"],
        )
        .await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains(said), "{stderr}");
    }
    std::fs::remove_file(&file).unwrap();
    let out = deploy(
        &app.address,
        &app.token,
        &[empty.path().to_str().unwrap(), "--app", "x", "--create"],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(stderr.contains("holds no files"), "{stderr}");
    let out = deploy(
        &app.address,
        &app.token,
        &[".", "--app", "x", "--target", "staging"],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("--target is production or preview"),
        "{stderr}"
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM events").await, 0);
    app.stop().await;
}

/// A proxy in front of the server that fails blob uploads on purpose:
/// the first attempt at each blob (`flaky`), or every one after the first
/// `cut_after` (the network gone for good).
struct Proxy {
    url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    flaky: bool,
    cut_after: Option<usize>,
    admitted: AtomicUsize,
    failed: AtomicUsize,
    seen: Mutex<HashSet<String>>,
}

impl Proxy {
    async fn start(upstream: &str, flaky: bool, cut_after: Option<usize>) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            flaky,
            cut_after,
            admitted: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            seen: Mutex::new(HashSet::new()),
        });
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Proxy { url, state, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if parts.method == axum::http::Method::PUT && path.starts_with("/api/blobs/") {
        let first_try = state.seen.lock().unwrap().insert(path.clone());
        let cut = state
            .cut_after
            .is_some_and(|n| state.admitted.fetch_add(1, Ordering::SeqCst) >= n);
        if cut || (state.flaky && first_try) {
            state.failed.fetch_add(1, Ordering::SeqCst);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the proxy fails this on purpose",
            )
                .into_response();
        }
    }
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut outgoing = state
        .client
        .request(parts.method, format!("{}{path}", state.upstream))
        .body(bytes);
    for (name, value) in &parts.headers {
        if name != "host" {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.send().await.unwrap();
    let mut response = axum::response::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    response
        .body(axum::body::Body::from_stream(answer.bytes_stream()))
        .unwrap()
}

async fn an_interrupted_upload_is_resumed_and_transient_failures_are_retried() {
    let app = TestApp::spawn_with_worker().await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        write(dir.path(), &format!("assets/{i}.txt"), &format!("file {i}"));
    }
    write(dir.path(), "index.html", "<h1>resumed</h1>");
    let path = dir.path().to_str().unwrap();

    // The network goes after 4 blobs: the command gives up, saying how to
    // go on, and keeps what was sent.
    let cut = Proxy::start(&app.address, false, Some(4)).await;
    let out = deploy(
        &cut.url,
        &app.token,
        &[
            path,
            "--app",
            "web",
            "--create",
            "--attempts",
            "2",
            "--concurrency",
            "2",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("uploading 11 of 11 files"), "{stderr}");
    assert!(stderr.contains("retrying in"), "{stderr}");
    assert!(
        stderr.contains("run the same command again to send the rest"),
        "{stderr}"
    );
    assert!(cut.state.failed.load(Ordering::SeqCst) > 0);
    drop(cut);

    // Again, through a connection that fails each blob's first attempt:
    // only those not sent go (7, or 8 when the 4th was cut off in flight
    // as the command stopped), each retried once, and the site goes live.
    let flaky = Proxy::start(&app.address, true, None).await;
    let out = deploy(&flaky.url, &app.token, &[path, "--app", "web"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let sent: usize = stderr
        .split("uploading ")
        .nth(1)
        .and_then(|rest| rest.split(" of 11 files").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no upload line: {stderr}"));
    assert!((7..=8).contains(&sent), "{stderr}");
    assert_eq!(flaky.state.failed.load(Ordering::SeqCst), sent, "{stderr}");
    assert_eq!(stderr.matches("retrying in").count(), sent, "{stderr}");
    let production = printed_url(&stdout, "production");
    assert_eq!(fetch(&app, &production).await.1, "<h1>resumed</h1>");
    assert_eq!(
        fetch(&app, &format!("{production}assets/9.txt")).await.1,
        "file 9"
    );
    app.stop().await;
}

/// A build's blobs are not counted by the per-token request rate (a
/// 20,000-file build would take minutes); other requests still are.
async fn blob_uploads_are_not_counted_by_the_request_rate() {
    use sha2::Digest;
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            rate_limit_per_second: 1,
            rate_limit_burst: 3,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let created: Value = app
        .post(
            "/api/entities",
            &app.token,
            json!({"kind": "app", "name": "r"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let blobs: Vec<(String, String)> = (0..20)
        .map(|i| {
            let content = format!("blob {i}");
            let hash: String = sha2::Sha256::digest(content.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (content, hash)
        })
        .collect();
    let files: Vec<Value> = blobs
        .iter()
        .enumerate()
        .map(|(i, (content, hash))| json!({"path": format!("{i}.txt"), "sha256": hash, "size": content.len()}))
        .collect();
    let response = app
        .post(
            "/api/builds",
            &app.token,
            json!({"entityId": created["id"], "files": files}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for (content, hash) in &blobs {
        let response = app
            .client
            .put(app.url(&format!("/api/blobs/{hash}")))
            .bearer_auth(&app.token)
            .body(content.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}",
            response.text().await.unwrap()
        );
    }
    let mut limited = false;
    for _ in 0..5 {
        if app.get("/api/entities", &app.token).await.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
        }
    }
    assert!(limited, "other requests are still limited");
    app.stop().await;
}

crate::backend_tests!(
    a_directory_goes_live_by_name_and_an_unchanged_one_uploads_nothing,
    a_deploy_that_does_not_complete_exits_non_zero_saying_why,
    what_cannot_be_deployed_is_said_before_anything_is_sent,
    an_interrupted_upload_is_resumed_and_transient_failures_are_retried,
    blob_uploads_are_not_counted_by_the_request_rate,
);
