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
        "/nonexistent/site",
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

crate::backend_tests!(
    create_wait_follows_a_deploy_to_completion_and_the_other_commands_show_it,
    create_wait_exits_non_zero_when_the_deploy_fails,
);
