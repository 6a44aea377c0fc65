//! The binary as a person runs it: `token create`, `catalog import` and
//! `serve` (with a clean SIGTERM), on a fresh database. The embedded mode's
//! runs of the binary are in `tests/it/embedded.rs`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support;
use support::fresh_database;

fn deployd(database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.env("DATABASE_URL", database_url)
        .env("NATS_URL", support::nats_url())
        // the fixed artifact paths the documents below name
        .env("DEPLOYD_ARTIFACT_ROOTS", "/srv")
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

    // migrate creates the database (writing commands never do); token
    // create prints only the token.
    let out = deployd(&url).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        stderr.contains("2 documents recorded, 0 already recorded, 1 rejected"),
        "{stderr}"
    );

    // The same documents again: nothing new, counted apart.
    let mut again = deployd(&url)
        .args(["catalog", "import", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    again
        .stdin
        .take()
        .unwrap()
        .write_all(documents.join("\n").as_bytes())
        .unwrap();
    let out = again.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0 documents recorded, 2 already recorded, 1 rejected"),
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

#[test]
fn the_client_s_help_lists_only_client_flags_and_the_server_s_lists_its_own() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_deployd"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for args in [
        &["deploys", "--help"][..],
        &["deploys", "list", "--help"],
        &["deploys", "create", "--help"],
    ] {
        let text = help(args);
        assert!(text.contains("--token"), "{args:?}: {text}");
        for server_only in ["--database-url", "--data-dir", "DATABASE_URL"] {
            assert!(
                !text.contains(server_only),
                "{args:?} lists {server_only}: {text}"
            );
        }
    }
    let text = help(&["deploys", "list", "--help"]);
    for flag in [
        "--before",
        "--after",
        "--trigger",
        "--build",
        "--created-by",
        "--ids",
        "--filter",
        "--order-by",
    ] {
        assert!(text.contains(flag), "list --help lacks {flag}: {text}");
    }
    let text = help(&["serve", "--help"]);
    assert!(
        text.contains("--database-url") && text.contains("--data-dir"),
        "{text}"
    );
}

#[test]
fn an_empty_token_says_what_is_missing_and_how_to_get_one() {
    for token in [Some(""), Some("  "), None] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
        cmd.args(["deploys", "list"])
            .env("DEPLOYD_URL", "http://127.0.0.1:9")
            .env_remove("DEPLOYD_TOKEN");
        if let Some(token) = token {
            cmd.env("DEPLOYD_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let what = if token.is_some() {
            "is empty"
        } else {
            "is not set"
        };
        assert!(
            stderr.contains(&format!("DEPLOYD_TOKEN (or --token) {what}")),
            "{token:?}: {stderr}"
        );
        assert!(
            stderr.contains("deployd token create --workspace"),
            "{stderr}"
        );
        assert!(!stderr.contains("cannot reach"), "{stderr}");
    }
}

/// `deployd migrate` in an empty directory with debug logs; returns stderr.
fn migrate_logs(dir: &std::path::Path, terminal: bool, no_color: bool) -> String {
    let binary = env!("CARGO_BIN_EXE_deployd");
    let mut cmd = if terminal {
        // script(1) gives the command a terminal of its own.
        let mut c = Command::new("script");
        c.args(["-qec", &format!("'{binary}' migrate"), "/dev/null"]);
        c
    } else {
        let mut c = Command::new(binary);
        c.arg("migrate");
        c
    };
    cmd.current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("DEPLOYD_DATA_DIR")
        .env_remove("NO_COLOR")
        .env("DEPLOYD_LOG", "debug");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Under script(1) everything arrives on its stdout.
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text
}

#[test]
fn logs_are_coloured_on_a_terminal_only_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let piped = migrate_logs(dir.path(), false, false);
    assert!(piped.contains("DEBUG"), "{piped}");
    assert!(!piped.contains('\u{1b}'), "colour in a pipe: {piped:?}");

    let dir = tempfile::tempdir().unwrap();
    let terminal = migrate_logs(dir.path(), true, false);
    assert!(terminal.contains("DEBUG"), "{terminal}");
    assert!(terminal.contains("\u{1b}["), "no colour on a terminal");

    let dir = tempfile::tempdir().unwrap();
    let no_color = migrate_logs(dir.path(), true, true);
    assert!(no_color.contains("DEBUG"), "{no_color}");
    assert!(
        !no_color.contains('\u{1b}'),
        "colour despite NO_COLOR: {no_color:?}"
    );
}
