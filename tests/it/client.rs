//! `deployd deploys …` against a real server.

use std::process::Output;

use tokio::process::Command;

use serde_json::Value;

use crate::helpers::*;

/// Runs `deployd deploys ARGS` without blocking the server in this process.
async fn deployd(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg("deploys")
        .args(args)
        .env("DEPLOYD_URL", &app.address)
        .env("DEPLOYD_TOKEN", &app.token)
        .env("DEPLOYD_LOG", "warn")
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

async fn create_wait_follows_a_deploy_to_completion_and_the_other_commands_show_it() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let out = deployd(
        &app,
        &[
            "create",
            "--app",
            &seeded.app,
            "--wait",
            "--metadata",
            "{\"pr\": 7}",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("✓ prepare"), "{stderr}");
    assert!(stderr.contains("✓ promote"), "{stderr}");
    assert!(stderr.contains("deploy completed"), "{stderr}");
    assert!(stdout.contains("status      completed"), "{stdout}");

    let out = deployd(&app, &["list", "--json"]).await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = page["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(page["data"][0]["metadata"]["pr"], 7);

    let out = deployd(&app, &["list"]).await;
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("ID "), "{stdout}");
    assert!(
        stdout.contains(&id) && stdout.contains("completed"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 1 deploys"), "{stdout}");

    let out = deployd(&app, &["get", &id]).await;
    assert!(text(&out).0.contains("promote"), "{}", text(&out).0);

    let out = deployd(&app, &["events", &id]).await;
    assert!(text(&out).0.contains("DeployCompleted"), "{}", text(&out).0);

    // Cancelling a completed deploy is refused, with the reason.
    let out = deployd(&app, &["cancel", &id]).await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("409 Conflict"), "{}", text(&out).1);
    app.stop().await;
}

async fn create_wait_exits_non_zero_when_the_deploy_fails() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let broken = format!("bld_{}", ulid::Ulid::generate());
    app.import(&[build_succeeded_doc(
        WS,
        &seeded.app,
        &seeded.version,
        &broken,
        app.artifacts
            .path()
            .join("nonexistent/site")
            .to_str()
            .unwrap(),
    )])
    .await;
    let out = deployd(&app, &["create", "--build", &broken, "--wait"]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("✗ prepare"), "{stderr}");
    assert!(
        stderr.contains("failed: prepare: artifact directory"),
        "{stderr}"
    );

    let out = deployd(&app, &["create", "--build", "bld_nope"]).await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("body/buildId"), "{}", text(&out).1);
    app.stop().await;
}

/// Runs a command line the client printed, as a person would paste it
/// (`deployd` being this build's binary).
async fn paste(app: &TestApp, line: &str) -> Output {
    let line = line
        .strip_prefix("deployd ")
        .unwrap_or_else(|| panic!("not a deployd command: {line}"));
    Command::new("sh")
        .arg("-c")
        .arg(format!("\"$DEPLOYD_BIN\" {line}"))
        .env("DEPLOYD_BIN", env!("CARGO_BIN_EXE_deployd"))
        .env("DEPLOYD_URL", &app.address)
        .env("DEPLOYD_TOKEN", &app.token)
        .env("DEPLOYD_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// The command the list printed after `label` (`next page:`).
fn hint(stdout: &str, label: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label).map(|c| c.trim().to_string()))
}

async fn list_flags_narrow_the_list_and_the_next_page_command_keeps_them() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let other = app.seed_app(WS).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.create(&seeded.build).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let elsewhere = app.create(&other.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Every shorthand flag is its query parameter.
    let out = deployd(
        &app,
        &[
            "list",
            "--build",
            &seeded.build,
            "--trigger",
            "manual",
            "--created-by",
            "alice",
            "--status",
            "pending",
            "--json",
        ],
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["pageInfo"]["total"], 3, "{page}");
    let out = deployd(&app, &["list", "--created-by", "bob", "--json"]).await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["pageInfo"]["total"], 0, "{page}");
    let out = deployd(
        &app,
        &[
            "list",
            "--ids",
            &format!("{},{elsewhere}", ids[0]),
            "--json",
        ],
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["pageInfo"]["total"], 2, "{page}");

    // A filter and an order as JSON, one row a page: the next-page command
    // carries them, and pasting it gives the next page, then the last.
    let filter = format!(r#"{{"buildId":{{"eq":"{}"}}}}"#, seeded.build);
    let out = deployd(
        &app,
        &[
            "list",
            "--filter",
            &filter,
            "--order-by",
            r#"[{"sequenceNumber":"asc"}]"#,
            "--limit",
            "1",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&ids[0]) && stdout.contains("1 of 3 deploys"),
        "{stdout}"
    );
    let next = hint(&stdout, "next page:").unwrap_or_else(|| panic!("no next page in {stdout}"));
    assert!(
        next.contains("--filter") && next.contains("--order-by"),
        "{next}"
    );
    assert!(
        next.contains("--limit 1") && next.contains("--after"),
        "{next}"
    );
    assert!(hint(&stdout, "previous page:").is_none(), "{stdout}");

    let out = paste(&app, &next).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{next}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&ids[1]) && !stdout.contains(&ids[0]),
        "{stdout}"
    );
    let previous = hint(&stdout, "previous page:").unwrap();
    let next = hint(&stdout, "next page:").unwrap();

    let out = paste(&app, &next).await;
    let (stdout, _) = text(&out);
    assert!(stdout.contains(&ids[2]), "{stdout}");
    assert!(hint(&stdout, "next page:").is_none(), "{stdout}");

    // `--before` goes back.
    let out = paste(&app, &previous).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{previous}\n{stderr}");
    assert!(
        stdout.contains(&ids[0]) && !stdout.contains(&ids[1]),
        "{stdout}"
    );

    // A cursor used without the filter it was made under is refused, and
    // the reason is said once.
    let cursor = next.rsplit(' ').next().unwrap();
    let out = deployd(&app, &["list", "--limit", "1", "--after", cursor]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("400 Invalid request: after:"), "{stderr}");
    let said = stderr.lines().filter(|l| l.contains("after")).count();
    assert_eq!(said, 1, "{stderr}");
    app.stop().await;
}

async fn create_wait_on_a_cancelled_deploy_ends_with_the_reason_and_who_cancelled() {
    // No worker: the deploy stays pending until it is cancelled.
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let waiting = {
        let address = app.address.clone();
        let token = app.token.clone();
        let build = seeded.build.clone();
        tokio::spawn(async move {
            Command::new(env!("CARGO_BIN_EXE_deployd"))
                .args(["deploys", "create", "--build", &build, "--wait"])
                .env("DEPLOYD_URL", address)
                .env("DEPLOYD_TOKEN", token)
                .env("DEPLOYD_LOG", "warn")
                .output()
                .await
                .unwrap()
        })
    };
    let mut id = None;
    for _ in 0..200 {
        let page: Value = app
            .get("/api/deploys", &app.token)
            .await
            .json()
            .await
            .unwrap();
        if let Some(found) = page["data"][0]["id"].as_str() {
            id = Some(found.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = id.expect("the client created a deploy");
    let r = app
        .post(
            &format!("/api/deploys/{id}/cancel"),
            &app.token,
            serde_json::json!({"reason": "wrong branch"}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let out = waiting.await.unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("deploy {id} cancelled by alice: wrong branch")),
        "{stderr}"
    );
    app.stop().await;
}

/// Runs `deployd COMMAND ARGS` against the test server.
async fn client(app: &TestApp, command: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg(command)
        .args(args)
        .env("DEPLOYD_URL", &app.address)
        .env("DEPLOYD_TOKEN", &app.token)
        .env("DEPLOYD_LOG", "warn")
        .output()
        .await
        .unwrap()
}

async fn rollback_and_promote_from_a_terminal_and_apps_and_builds_show_what_is_live() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let first = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&first, "completed").await;
    let second_build = app
        .seed_build(&seeded, &[("index.html", "<h1>two</h1>")])
        .await;
    let second = app.create(&second_build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_status(&second, "completed").await;

    let out = deployd(
        &app,
        &["rollback", &first, "--reason", "bad release", "--wait"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("trigger     rollback"), "{stdout}");
    assert!(stdout.contains(&format!("rollback of {first}")), "{stdout}");
    assert!(stdout.contains("live        true"), "{stdout}");

    let out = client(&app, "apps", &["get", &seeded.app]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("pinned      true"), "{stdout}");
    assert!(
        stdout.contains(&format!("live build  {}", seeded.build)),
        "{stdout}"
    );

    let out = client(&app, "apps", &["list", "--json"]).await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["data"][0]["id"], seeded.app.as_str());
    assert_eq!(page["data"][0]["pinned"], true);
    let out = client(&app, "apps", &["list"]).await;
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("ID "), "{stdout}");
    assert!(stdout.contains("by dep_"), "{stdout}");

    let out = client(&app, "builds", &["list", "--app", &seeded.app]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&second_build) && stdout.contains(&seeded.build),
        "{stdout}"
    );
    assert!(stdout.contains("2 of 2 builds"), "{stdout}");

    // Promoting the second back unpins.
    let out = deployd(&app, &["promote", &second, "--wait", "--json"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let promoted: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(promoted["promotedFrom"], second.as_str());
    assert_eq!(promoted["live"], true);
    let out = client(&app, "apps", &["get", &seeded.app, "--json"]).await;
    let entity: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entity["pinned"], false);

    // A refusal says why and exits non-zero.
    let out = deployd(&app, &["rollback", promoted["id"].as_str().unwrap()]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("409") && stderr.contains("live already"),
        "{stderr}"
    );
    app.stop().await;
}

async fn watch_follows_a_deploy_that_is_already_running_to_its_end() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let id = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = deployd(&app, &["watch", &id]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("✓ upload"), "{stderr}");
    assert!(stderr.contains("deploy completed"), "{stderr}");
    assert!(stdout.contains("status      completed"), "{stdout}");
    // Watching an ended deploy prints it at once.
    let out = deployd(&app, &["watch", &id]).await;
    assert!(out.status.success());
    app.stop().await;
}

crate::backend_tests!(
    watch_follows_a_deploy_that_is_already_running_to_its_end,
    create_wait_follows_a_deploy_to_completion_and_the_other_commands_show_it,
    create_wait_exits_non_zero_when_the_deploy_fails,
    list_flags_narrow_the_list_and_the_next_page_command_keeps_them,
    create_wait_on_a_cancelled_deploy_ends_with_the_reason_and_who_cancelled,
    rollback_and_promote_from_a_terminal_and_apps_and_builds_show_what_is_live,
);
