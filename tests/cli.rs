//! The binary as a person runs it: `token create`, `catalog import` and
//! `serve` (with a clean SIGTERM), on a fresh database, and the same with
//! neither DATABASE_URL nor NATS_URL (the embedded engines), including a
//! `kill -9` of the embedded server in the middle of a deploy.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;
use support::fresh_database;

fn deployd(database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.env("DATABASE_URL", database_url)
        .env("NATS_URL", support::nats_url())
        .env("DEPLOYD_LOG", "warn");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn token_create_then_catalog_import_then_serve_on_a_fresh_database() {
    let (name, url) = fresh_database();
    let ws = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    let app = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let build = format!("bld_{}", ulid::Ulid::generate());

    // token create: creates the database, prints only the token.
    let out = deployd(&url)
        .args(["token", "create", "--workspace", ws, "--name", "ci"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert!(
        token.starts_with("dpd_") && !token.contains('\n'),
        "{stdout:?}"
    );

    // catalog import from stdin, with one bad line: exits non-zero with a
    // count, and the good lines are in.
    let documents = [
        json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
               "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": ws,
               "entity": {"id": app, "kind": "app", "name": "web", "defaultVersionId": version}})
        .to_string(),
        "{\"type\": \"build.succeeded\"}".to_string(),
        json!({"type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
               "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": ws,
               "build": {"id": build, "entityId": app, "versionId": version, "artifactDir": "/srv/site"}})
        .to_string(),
    ];
    let mut import = deployd(&url)
        .args(["catalog", "import", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(documents.join("\n").as_bytes())
        .unwrap();
    let out = import.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 2:"), "{stderr}");
    assert!(
        stderr.contains("2 documents recorded, 1 rejected"),
        "{stderr}"
    );

    // serve sees both at its first request.
    let port = free_port();
    let prefix = format!("cli{}", ulid::Ulid::generate().to_string().to_lowercase());
    let mut server = deployd(&url)
        .args(["serve"])
        .env("DEPLOYD_LISTEN", format!("127.0.0.1:{port}"))
        .env("DEPLOYD_NATS_PREFIX", &prefix)
        .env("DEPLOYD_DATA_DIR", std::env::temp_dir().join(&prefix))
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server did not come up");
    let response = client
        .post(format!("{base}/api/deploys"))
        .bearer_auth(token)
        .json(&json!({"appId": app}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let row: Value = response.json().await.unwrap();
    assert_eq!(row["buildId"], build);
    assert_eq!(row["createdBy"], "ci");

    // SIGTERM: drains and exits 0.
    let pid = server.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "serve exited with {status}");

    if let Ok(client) = async_nats::connect(support::nats_url()).await {
        let js = async_nats::jetstream::new(client);
        for stream in ["catalog", "events"] {
            let _ = js.delete_stream(format!("{prefix}_{stream}")).await;
        }
    }
    support::drop_database(&name).await;
}

/// `deployd` with neither `DATABASE_URL` nor `NATS_URL`, run in an empty
/// directory as a person trying it would: everything lives in `./data`.
fn embedded(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env_remove("DEPLOYD_DATA_DIR")
        .env("DEPLOYD_LOG", "warn");
    cmd
}

#[tokio::test]
async fn with_neither_url_serve_runs_the_whole_api_on_the_embedded_engines() {
    let dir = tempfile::tempdir().unwrap();
    let ws = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    let app = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let build = format!("bld_{}", ulid::Ulid::generate());
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>embedded</h1>").unwrap();

    // serve first: it creates ./data/deployd.db and migrates it.
    let port = free_port();
    let server = Server(
        embedded(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = Value::Null;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            ready = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["engine"], "sqlite");
    assert!(
        ready["nats"].as_str().unwrap().starts_with("off"),
        "{ready}"
    );
    assert!(dir.path().join("data/deployd.db").exists());

    // The other commands find the same file beside the running server.
    let out = embedded(dir.path())
        .args(["token", "create", "--workspace", ws, "--name", "trial"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let documents = [
        json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
               "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": ws,
               "entity": {"id": app, "kind": "app", "name": "web", "defaultVersionId": version}}),
        json!({"type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
               "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": ws,
               "build": {"id": build, "entityId": app, "versionId": version,
                         "artifactDir": site.to_str().unwrap()}}),
    ];
    let file = dir.path().join("catalog.jsonl");
    std::fs::write(
        &file,
        documents
            .iter()
            .map(|d| format!("{d}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = embedded(dir.path())
        .args(["catalog", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A deploy runs to the end in the server's own worker, fed in-process.
    let created = client
        .post(format!("{base}/api/deploys"))
        .bearer_auth(&token)
        .json(&json!({"appId": app}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut detail = Value::Null;
    for _ in 0..300 {
        detail = client
            .get(format!("{base}/api/deploys/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(detail["status"], "completed", "{detail}");
    let live = client
        .get(detail["productionUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.text().await.unwrap(), "<h1>embedded</h1>");
    let page: Value = client
        .get(format!("{base}/api/deploys"))
        .query(&[("filter", r#"{"status": {"eq": "completed"}}"#)])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["pageInfo"]["total"], 1, "{page}");

    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.0.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "serve exited with {status}");
}

/// A server process, killed if the test fails before stopping it.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Starts the embedded server in `dir` and waits until it answers.
async fn start_embedded(dir: &std::path::Path, port: u16) -> Server {
    let server = Server(
        embedded(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DEPLOYD_SWEEP_INTERVAL_MS", "300")
            .spawn()
            .unwrap(),
    );
    for _ in 0..200 {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the embedded server did not come up");
}

#[tokio::test]
async fn the_embedded_server_killed_mid_deploy_resumes_it_and_completes_no_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ws = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    let app = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let build = format!("bld_{}", ulid::Ulid::generate());
    // A build big enough that its upload is still running when we kill.
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("assets")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>big</h1>").unwrap();
    for i in 0..20_000 {
        std::fs::write(
            site.join("assets").join(format!("{i}.txt")),
            format!("{build} {i}"),
        )
        .unwrap();
    }
    let out = embedded(dir.path())
        .args(["token", "create", "--workspace", ws, "--name", "trial"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let file = dir.path().join("catalog.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            json!({"type": "entity.upserted", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": ws,
                   "entity": {"id": app, "kind": "app", "name": "web", "defaultVersionId": version}}),
            json!({"type": "build.succeeded", "eventId": format!("evt_{}", ulid::Ulid::generate()),
                   "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": ws,
                   "build": {"id": build, "entityId": app, "versionId": version,
                             "artifactDir": site.to_str().unwrap()}}),
        ),
    )
    .unwrap();
    let out = embedded(dir.path())
        .args(["catalog", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let detail = |id: String| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            client
                .get(format!("{base}/api/deploys/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut first = start_embedded(dir.path(), port).await;
    let created = client
        .post(format!("{base}/api/deploys"))
        .bearer_auth(&token)
        .json(&json!({"appId": app}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut uploading = false;
    for _ in 0..600 {
        if detail(id.clone()).await["steps"][1]["status"] == "running" {
            uploading = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(uploading, "the upload never ran");
    first.0.kill().unwrap(); // SIGKILL: no shutdown, no flush beyond what was committed
    first.0.wait().unwrap();

    let _second = start_embedded(dir.path(), port).await;
    let killed_at = detail(id.clone()).await;
    assert_ne!(killed_at["status"], "pending", "{killed_at}");
    let mut done = Value::Null;
    for _ in 0..600 {
        done = detail(id.clone()).await;
        if done["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["status"], "completed", "{done}");
    let events: Value = client
        .get(format!("{base}/api/deploys/{id}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let steps = |kind: &str| -> Vec<String> {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["data"]["step"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(steps("StepCompleted"), vec!["prepare", "upload", "promote"]);
    assert_eq!(steps("StepStarted"), vec!["prepare", "upload", "promote"]);
    let last = client
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
    assert_eq!(last, format!("{build} 19999"));
}
