//! The embedded mode as a person runs it, with the binary in an empty
//! directory and neither DATABASE_URL nor NATS_URL (everything in ./data):
//! the whole API and a deploy to a live URL; a `kill -9` of the server in
//! the middle of a deploy; and the switch to PostgreSQL: deploys made on the
//! embedded SQLite file, `events export`, `events import` into a fresh
//! PostgreSQL database, and a server there shows every deploy exactly as
//! the embedded one did. Then back again: the PostgreSQL export imported
//! into a fresh embedded store holds the same events. And a webhook
//! delivery in flight when the server is killed is sent again after the
//! restart (on either store), nothing skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support;

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

/// The binary run in the directory `dir` with no configuration but the
/// log level (its data in `dir/data`), on the embedded store unless
/// `database_url` is given; never NATS.
fn deployd(dir: &Path, database_url: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env_remove("DEPLOYD_DATA_DIR")
        // the builds `catalog` writes beside ./data
        .env("DEPLOYD_ARTIFACT_ROOTS", dir)
        .env("DEPLOYD_LOG", "warn");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(data: &Path, database_url: Option<&str>) -> String {
    // Writing commands never create a store: make it first.
    run(deployd(data, database_url).arg("migrate"));
    let out = run(deployd(data, database_url).args([
        "token",
        "create",
        "--workspace",
        WS,
        "--name",
        "ci",
    ]));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A running `deployd serve`, stopped with SIGTERM (killed if the test
/// fails first).
struct Server {
    child: Option<Child>,
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(data: &Path, database_url: Option<&str>, token: &str, extra: &[&str]) -> Server {
        let port = free_port();
        let child = deployd(data, database_url)
            .arg("serve")
            .args(extra)
            .env("DEPLOYD_LISTEN", format!("127.0.0.1:{port}"))
            .env("DEPLOYD_SWEEP_INTERVAL_MS", "200")
            .spawn()
            .unwrap();
        let server = Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            token: token.to_string(),
            client: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if server
                .client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not come up");
    }

    /// The answer's status and JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// Polls the deploy's detail until `check` holds (30 s at most).
    async fn wait_for(&self, id: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let (status, detail) = self.get(&format!("/api/deploys/{id}")).await;
            assert_eq!(status, 200, "{detail}");
            if check(&detail) {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("deploy {id} did not settle");
    }

    /// SIGKILL: no shutdown, nothing kept but what was committed.
    fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "serve exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The catalog: two apps, each with a successful build of its default
/// version whose artifact directory holds an index.html and `assets` more
/// files (`assets/<i>.txt`: `<name> <i>`).
fn catalog(data: &Path, assets: usize) -> (Vec<String>, String) {
    let mut apps = Vec::new();
    let mut lines = String::new();
    for name in ["web", "docs"] {
        let app = format!("app_{}", ulid::Ulid::generate());
        let version = format!("ver_{}", ulid::Ulid::generate());
        let build = format!("bld_{}", ulid::Ulid::generate());
        let dir = data.join(format!("site-{build}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("<h1>{name}</h1>")).unwrap();
        if assets > 0 {
            std::fs::create_dir_all(dir.join("assets")).unwrap();
        }
        for i in 0..assets {
            std::fs::write(
                dir.join("assets").join(format!("{i}.txt")),
                format!("{name} {i}"),
            )
            .unwrap();
        }
        for doc in [
            json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": WS,
                   "entity": {"id": app, "kind": "app", "name": name,
                              "defaultVersionId": version, "autoDeploy": false}}),
            json!({"type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": WS,
                   "build": {"id": build, "entityId": app, "versionId": version,
                             "artifactDir": dir.to_str().unwrap(), "commitSha": "abc123",
                             "branch": "main"}}),
        ] {
            lines.push_str(&format!("{doc}\n"));
        }
        apps.push(app);
    }
    (apps, lines)
}

/// Every deploy's detail (status and body) and the lists' totals and ids,
/// as `server` shows them.
async fn snapshot(server: &Server, ids: &[String]) -> (BTreeMap<String, Value>, Vec<Value>) {
    let mut details = BTreeMap::new();
    for id in ids {
        let (status, detail) = server.get(&format!("/api/deploys/{id}")).await;
        // URLs are answered under each server's own public URL.
        let detail: Value =
            serde_json::from_str(&detail.to_string().replace(&server.base, "<public>")).unwrap();
        details.insert(id.clone(), json!({"status": status, "detail": detail}));
    }
    let mut lists = Vec::new();
    for query in ["?limit=100", "?status=completed", "?status=cancelled"] {
        let (status, page) = server.get(&format!("/api/deploys{query}")).await;
        assert_eq!(status, 200, "{page}");
        lists.push(json!({"query": query, "total": page["pageInfo"]["total"],
                          "ids": page["data"].as_array().unwrap().iter()
                              .map(|d| d["id"].clone()).collect::<Vec<_>>()}));
    }
    (details, lists)
}

/// The exported lines without what belongs to the store they came from
/// (log position, transaction, the hash under its JSON rendering).
fn portable(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["position", "tx", "hash"] {
                o.remove(k);
            }
            v
        })
        .collect()
}

/// The export with the first line containing `needle` changed by `change`;
/// returns that line's number (from 1) and the text.
fn changed(export: &str, needle: &str, change: impl Fn(&mut String)) -> (usize, String) {
    let mut lines: Vec<String> = export.lines().map(str::to_string).collect();
    let k = lines.iter().position(|l| l.contains(needle)).unwrap();
    change(&mut lines[k]);
    (k + 1, lines.join("\n") + "\n")
}

#[tokio::test]
async fn an_embedded_store_moves_to_postgresql_with_everything() {
    let started = std::time::Instant::now();
    let embedded = tempfile::tempdir().unwrap();
    let data = embedded.path();

    // The embedded installation: a token, the catalog.
    let token_a = token(data, None);
    let (apps, documents) = catalog(data, 0);
    let catalog_file = data.join("catalog.jsonl");
    std::fs::write(&catalog_file, documents).unwrap();
    run(deployd(data, None).args(["catalog", "import", catalog_file.to_str().unwrap()]));

    // Three deploys per app with no worker, so they stay pending; the
    // second of the first app is cancelled while pending.
    let server = Server::start(data, None, &token_a, &["--no-worker"]).await;
    let mut ids = Vec::new();
    for app in &apps {
        for n in 0..3 {
            let body = json!({"appId": app, "metadata": {
                "n": n, "ratio": 0.5, "big": 1e21, "note": "h\u{e9}llo \"q\" \\ \u{1}"}});
            let created = server.post("/api/deploys", body).await;
            assert_eq!(created["sequenceNumber"], n + 1);
            ids.push(created["id"].as_str().unwrap().to_string());
        }
    }
    let cancelled = server
        .post(
            &format!("/api/deploys/{}/cancel", ids[1]),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(cancelled["success"], true);
    server.stop().await;

    // With the worker the rest complete, one entity's deploys in order.
    let server = Server::start(data, None, &token_a, &[]).await;
    for id in &ids {
        server
            .wait_for(id, |d| {
                d["status"] == "completed" || d["status"] == "cancelled"
            })
            .await;
    }
    let before = snapshot(&server, &ids).await;
    server.stop().await;
    let statuses: Vec<&Value> = ids
        .iter()
        .map(|id| &before.0[id]["detail"]["status"])
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "cancelled").count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == "completed").count(), 5);
    assert_eq!(
        before.0[&ids[1]]["detail"]["cancellation"]["reason"],
        "superseded"
    );
    let numbers: Vec<&Value> = ids
        .iter()
        .map(|id| &before.0[id]["detail"]["sequenceNumber"])
        .collect();
    assert_eq!(numbers, [1, 2, 3, 1, 2, 3]);

    // Export from the embedded store.
    let out = run(deployd(data, None).args(["events", "export"]));
    let export = String::from_utf8(out.stdout).unwrap();
    let events = export.lines().count();
    let export_file = data.join("events.jsonl");
    std::fs::write(&export_file, &export).unwrap();

    // Import into a fresh PostgreSQL database.
    let (name, url) = support::fresh_database();
    let pg = tempfile::tempdir().unwrap();
    run(deployd(pg.path(), Some(&url)).arg("migrate"));
    let import = || {
        run(deployd(pg.path(), Some(&url)).args([
            "events",
            "import",
            export_file.to_str().unwrap(),
        ]))
    };
    let out = import();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{events} events imported, 0 already present")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{events} hash links verified, 0 not verifiable")),
        "{stderr}"
    );

    // A server on PostgreSQL shows the same deploys once its projectors
    // have caught up (from their empty checkpoints).
    let token_b = token(pg.path(), Some(&url));
    let server = Server::start(pg.path(), Some(&url), &token_b, &["--no-worker"]).await;
    let mut after = snapshot(&server, &ids).await;
    for _ in 0..300 {
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = snapshot(&server, &ids).await;
    }
    server.stop().await;
    for id in &ids {
        assert_eq!(before.0[id], after.0[id], "deploy {id}");
    }
    assert_eq!(before.1, after.1);

    // The chain holds under PostgreSQL's rendering; a second import
    // appends nothing.
    run(deployd(pg.path(), Some(&url)).args(["audit", "verify"]));
    let out = import();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("0 events imported, {events} already present")),
        "{stderr}"
    );

    // And back: PostgreSQL's export (its own hashes, jsonb's rendering)
    // checks and imports into a fresh embedded store with the same events,
    // written as exports before versions were numbers (`"version": "2"`):
    // older exports still import.
    let out = run(deployd(pg.path(), Some(&url)).args(["events", "export"]));
    let pg_export = String::from_utf8(out.stdout).unwrap();
    assert_eq!(portable(&pg_export), portable(&export));
    let pg_export: String = pg_export
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            assert!(v["version"].is_u64(), "{line}");
            v["version"] = json!(v["version"].to_string());
            format!("{v}\n")
        })
        .collect();
    let back = tempfile::tempdir().unwrap();
    run(deployd(back.path(), None).arg("migrate"));
    let mut import_back = deployd(back.path(), None)
        .args(["events", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut import_back.stdin.take().unwrap(), pg_export.as_bytes())
        .unwrap();
    let out = import_back.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{events} events imported, 0 already present")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{events} hash links verified")),
        "{stderr}"
    );
    run(deployd(back.path(), None).args(["audit", "verify"]));
    let out = run(deployd(back.path(), None).args(["events", "export"]));
    assert_eq!(
        portable(&String::from_utf8(out.stdout).unwrap()),
        portable(&export)
    );

    // A changed line is refused by the check, with its number, before
    // anything is written.
    let (k, tampered) = changed(&export, "superseded", |line| {
        *line = line.replace("superseded", "changed later");
    });
    let tampered_file = data.join("tampered.jsonl");
    std::fs::write(&tampered_file, tampered).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    run(deployd(fresh.path(), None).arg("migrate"));
    let out = deployd(fresh.path(), None)
        .args(["events", "import", tampered_file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("line {k}: Deploy/{} sequence", ids[1]))
            && stderr.contains("the hash does not match"),
        "{stderr}"
    );
    assert!(stderr.contains("0 events imported, 0 already present"));
    let out = run(deployd(fresh.path(), None).args(["events", "export"]));
    assert!(out.stdout.is_empty());

    // Another event at a stored stream and sequence stops the import with
    // the line, the stream and the sequence.
    let (k, other) = changed(&export, "DeployCancelled", |line| {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["eventId"] = json!(format!("evt_{}", ulid::Ulid::generate()));
        v["hash"] = Value::Null;
        *line = v.to_string();
    });
    let other_file = data.join("other.jsonl");
    std::fs::write(&other_file, other).unwrap();
    let out = deployd(pg.path(), Some(&url))
        .args(["events", "import", other_file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let sequence: Value = serde_json::from_str(export.lines().nth(k - 1).unwrap()).unwrap();
    assert!(
        stderr.contains(&format!(
            "line {k}: Deploy/{} sequence {} already holds a different event",
            ids[1], sequence["sequence"]
        )),
        "{stderr}"
    );

    // A deploy numbered like one the entity already has in the store is
    // refused: the read model could not hold both.
    let first: Value = serde_json::from_str(
        export
            .lines()
            .find(|l| l.contains("DeployCreated") && l.contains(&ids[0]))
            .unwrap(),
    )
    .unwrap();
    let twin = format!("dep_{}", ulid::Ulid::generate());
    let mut line = first.clone();
    line["eventId"] = json!(format!("evt_{}", ulid::Ulid::generate()));
    line["stream"]["id"] = json!(twin);
    line["data"]["deployId"] = json!(twin);
    line["hash"] = Value::Null;
    let twin_file = data.join("twin.jsonl");
    std::fs::write(&twin_file, format!("{line}\n")).unwrap();
    let out = deployd(pg.path(), Some(&url))
        .args(["events", "import", twin_file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "line 1: Deploy/{twin}: entity {} already has a deploy number 1 ({})",
            apps[0], ids[0]
        )),
        "{stderr}"
    );

    support::drop_database(&name).await;
    eprintln!("switch test: {:?}", started.elapsed());
}

/// Imports `catalog(dir, assets)` into the embedded store in `dir`; returns
/// the apps.
fn seed(dir: &Path, assets: usize) -> Vec<String> {
    let (apps, documents) = catalog(dir, assets);
    let file = dir.join("catalog.jsonl");
    std::fs::write(&file, documents).unwrap();
    run(deployd(dir, None).args(["catalog", "import", file.to_str().unwrap()]));
    apps
}

#[tokio::test]
async fn with_neither_url_serve_runs_the_whole_api_on_the_embedded_engines() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None, "", &[]).await;
    // (the probes need no token)
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "{ready}");
    assert_eq!(ready["engine"], "sqlite");
    assert!(
        ready["nats"].as_str().unwrap().starts_with("off"),
        "{ready}"
    );
    assert!(dir.path().join("data/deployd.db").exists());

    // The other commands find the same file beside the running server.
    let mut server = server;
    server.token = token(dir.path(), None);
    let apps = seed(dir.path(), 0);

    // A deploy runs to the end in the server's own worker, fed in-process.
    let id = server.post("/api/deploys", json!({"appId": apps[0]})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = server.wait_for(&id, |d| d["status"] == "completed").await;
    let live = server
        .client
        .get(done["productionUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.text().await.unwrap(), "<h1>web</h1>");
    let (_, page) = server
        .get("/api/deploys?filter=%7B%22status%22%3A%7B%22eq%22%3A%22completed%22%7D%7D")
        .await;
    assert_eq!(page["pageInfo"]["total"], 1, "{page}");
    server.stop().await;
}

#[tokio::test]
async fn the_embedded_server_killed_mid_deploy_resumes_it_and_completes_no_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path(), None);
    // A build big enough that its upload is still running when we kill.
    let apps = seed(dir.path(), 20_000);
    let first = Server::start(dir.path(), None, &token, &[]).await;
    let id = first.post("/api/deploys", json!({"appId": apps[0]})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    first
        .wait_for(&id, |d| d["steps"][1]["status"] == "running")
        .await;
    first.kill();

    let second = Server::start(dir.path(), None, &token, &[]).await;
    let done = second.wait_for(&id, |d| d["status"] == "completed").await;
    let (_, events) = second.get(&format!("/api/deploys/{id}/events")).await;
    let steps = |kind: &str| -> Vec<String> {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["data"]["step"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(steps("StepStarted"), vec!["prepare", "upload", "promote"]);
    assert_eq!(steps("StepCompleted"), vec!["prepare", "upload", "promote"]);
    let last = second
        .client
        .get(format!(
            "{}assets/19999.txt",
            done["previewUrl"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(last, "web 19999");
    second.stop().await;
}

/// The README's quick start, run as written in an empty directory with
/// this build's binary first on the PATH (for its `cargo build`), on a
/// free port instead of 8080, and `cargo run --release -- serve &` run as
/// that binary's `serve`, followed by a wait until it answers.
#[tokio::test]
async fn the_readme_quick_start_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let block = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("a quick start block in README.md");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("serve.pid");
    let mut script = String::from("set -eu\n");
    for line in block.lines() {
        let command = line.split("  #").next().unwrap().trim_end();
        if command.starts_with("cargo build") {
            continue;
        }
        if command == "cargo run --release -- serve &" {
            script.push_str(&format!(
                "deployd serve > serve.log 2>&1 & echo $! > '{}'\n\
                 until curl -sf http://127.0.0.1:{port}/healthz >/dev/null; do sleep 0.1; done\n",
                pid_file.display()
            ));
            continue;
        }
        script.push_str(&command.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")));
        script.push('\n');
    }
    assert!(script.contains("deployd deploy examples/site"), "{script}");
    // The checkout's examples, as the quick start is run from a checkout.
    std::os::unix::fs::symlink(repo.join("examples"), dir.path().join("examples")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_deployd")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env_remove("DEPLOYD_DATA_DIR")
        .env_remove("DEPLOYD_TOKEN")
        .env("DEPLOYD_LISTEN", format!("127.0.0.1:{port}"))
        .env("DEPLOYD_URL", format!("http://127.0.0.1:{port}"))
        .env("DEPLOYD_LOG", "warn")
        .kill_on_drop(true)
        .output();
    // The server it started goes when the test ends, passed or not.
    struct StopServer(std::path::PathBuf);
    impl Drop for StopServer {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(&self.0) {
                let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
            }
        }
    }
    let _server = StopServer(pid_file.clone());
    let out = tokio::time::timeout(Duration::from_secs(120), run).await;
    let out = out
        .unwrap_or_else(|_| panic!("the quick start did not finish in 120 s:\n{script}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}\n{stdout}\n{stderr}");
    assert!(stderr.contains("created app hello"), "{stderr}");
    assert!(stderr.contains("deploy completed"), "{stderr}");
    // The URL it prints to open: the example site, live.
    let production = stdout
        .lines()
        .find_map(|l| l.strip_prefix("production"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no production URL printed: {stdout}"));
    assert!(
        production.starts_with(&format!("http://127.0.0.1:{port}/live/app_")),
        "{production}"
    );
    let index = std::fs::read_to_string(repo.join("examples/site/index.html")).unwrap();
    let live = reqwest::get(production)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(live, index, "the live site is not the example");
}

#[tokio::test]
async fn a_server_killed_while_a_webhook_is_in_flight_sends_it_again_and_skips_nothing() {
    killed_with_a_webhook_in_flight(None).await;
}

#[tokio::test]
async fn on_postgresql_a_server_killed_while_a_webhook_is_in_flight_sends_it_again() {
    let (name, url) = support::fresh_database();
    killed_with_a_webhook_in_flight(Some(&url)).await;
    support::drop_database(&name).await;
}

/// A webhook delivery in flight when the server is killed (`kill -9`), on
/// the embedded store or on PostgreSQL (`database_url`).
async fn killed_with_a_webhook_in_flight(database_url: Option<&str>) {
    use crate::webhooks::{accepted, Receiver};
    let dir = tempfile::tempdir().unwrap();
    run(deployd(dir.path(), database_url).arg("migrate"));
    let token = token(dir.path(), database_url);
    let receiver = Receiver::start().await;
    let private = [
        "--webhook-allow-private",
        "--webhook-retry-schedule",
        "100ms",
    ];
    let first = Server::start(dir.path(), database_url, &token, &private).await;
    let hook = first
        .post("/api/webhooks", json!({"url": receiver.url}))
        .await;
    receiver.trust(&[hook["secret"].as_str().unwrap()]).await;
    // The first delivery arrives and is held unanswered: the server is
    // killed between sending it and recording the answer.
    receiver.hold(true).await;
    let (_, documents) = catalog(dir.path(), 0);
    let file = dir.path().join("catalog.jsonl");
    std::fs::write(&file, documents).unwrap();
    run(deployd(dir.path(), database_url).args(["catalog", "import", file.to_str().unwrap()]));
    receiver
        .wait_until("the first delivery", |r| !r.is_empty())
        .await;
    first.kill();
    receiver.hold(false).await;

    let second = Server::start(dir.path(), database_url, &token, &private).await;
    let (_, feed) = second.get("/api/events?limit=1000").await;
    let expected: Vec<String> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected.len(), 4);
    let got = receiver
        .wait_until("every event after the restart", |r| {
            expected.iter().all(|id| accepted(r).contains(id))
        })
        .await;
    // The held one came again with the same webhook-id; none is missing,
    // and the rest came once each, in log order.
    let mut answered = accepted(&got);
    answered.dedup();
    let mut unique = answered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), expected.len(), "{got:?}");
    assert_eq!(got[0]["id"], json!(expected[0]));
    assert!(got.iter().all(|r| r["verified"] == json!([true])));
    // Once the second server has recorded the answers:
    let path = format!("/api/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    let mut log = Value::Null;
    for _ in 0..200 {
        log = second.get(&path).await.1;
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
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|d| d["status"] == "succeeded"), "{log}");
    second.stop().await;
}

/// Two servers on one PostgreSQL database, both running the webhooks'
/// fan-out and sender: each event reaches the receiver once, in one
/// attempt, whichever process sent it.
#[tokio::test]
async fn two_servers_on_one_database_send_each_webhook_event_once() {
    use crate::webhooks::{accepted, Receiver};
    let (name, url) = support::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let token = token(dir.path(), Some(&url));
    let receiver = Receiver::start().await;
    let private = ["--webhook-allow-private"];
    let first = Server::start(dir.path(), Some(&url), &token, &private).await;
    let second = Server::start(dir.path(), Some(&url), &token, &private).await;
    let hook = first
        .post("/api/webhooks", json!({"url": receiver.url}))
        .await;
    receiver.trust(&[hook["secret"].as_str().unwrap()]).await;
    for i in 0..3 {
        let (_, documents) = catalog(dir.path(), 0);
        let file = dir.path().join(format!("catalog-{i}.jsonl"));
        std::fs::write(&file, documents).unwrap();
        run(deployd(dir.path(), Some(&url)).args(["catalog", "import", file.to_str().unwrap()]));
    }
    let (_, feed) = second.get("/api/events?limit=1000").await;
    let expected: Vec<String> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(expected.len(), 12);
    receiver
        .wait_until("every event", |r| {
            expected.iter().all(|id| accepted(r).contains(id))
        })
        .await;
    // Once every delivery is recorded as succeeded, nothing else was sent.
    let path = format!("/api/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    let mut log = Value::Null;
    for _ in 0..200 {
        log = first.get(&path).await.1;
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
    assert_eq!(rows.len(), expected.len(), "one delivery per event: {log}");
    assert!(
        rows.iter()
            .all(|d| d["status"] == "succeeded" && d["attempt"] == 1),
        "{log}"
    );
    let got = receiver.received().await;
    assert_eq!(accepted(&got), expected, "each once, in log order");
    assert_eq!(got.len(), expected.len());
    first.stop().await;
    second.stop().await;
    support::drop_database(&name).await;
}

#[tokio::test]
async fn writing_commands_never_create_a_store_and_tokens_can_be_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    // In a directory with no store, every writing command fails, naming
    // where it looked and how to make one, and creates nothing.
    for args in [
        vec!["token", "create", "--workspace", WS],
        vec!["catalog", "import", "-"],
        vec!["events", "import", "-"],
        vec!["token", "list"],
    ] {
        let out = deployd(dir.path(), None)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("no deployd store at") && stderr.contains("deployd migrate"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("deployd.db"), "{stderr}");
    }
    assert!(!dir.path().join("data").exists());

    // Once made, a token create says where it wrote; list shows it (never
    // its secret); revoke refuses it from the next request on.
    let secret = token(dir.path(), None);
    let out = run(deployd(dir.path(), None).args(["token", "list", "--json"]));
    let listed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["workspaces"], json!([WS]));
    assert!(listed[0]["lastUsedAt"].is_null());
    assert!(!listed[0].to_string().contains(&secret[4..]));
    let id = listed[0]["id"].as_str().unwrap().to_string();

    let server = Server::start(dir.path(), None, &secret, &[]).await;
    assert_eq!(server.get("/api/deploys").await.0, 200);
    // The last use is recorded (at most once a minute).
    let mut used = Value::Null;
    for _ in 0..100 {
        let out = run(deployd(dir.path(), None).args(["token", "list", "--json"]));
        used = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        if used["lastUsedAt"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used["lastUsedAt"].is_string(), "{used}");
    let out = run(deployd(dir.path(), None).args(["token", "revoke", &id]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    assert_eq!(server.get("/api/deploys").await.0, 401);
    let again = deployd(dir.path(), None)
        .args(["token", "revoke", &id])
        .output()
        .unwrap();
    assert!(!again.status.success());
    server.stop().await;
}
