//! Several machines and no shared disk: `deployd serve --no-worker` and a
//! separate `deployd worker`, each with a data directory of its own, on
//! PostgreSQL, NATS and a real S3-compatible server (moto), as two hosts
//! would run them. A directory is uploaded with `deployd deploy`, the
//! worker deploys it, and the server serves it at its preview and
//! production URLs from the bucket alone.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{self, moto::Moto};

const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

/// A process killed (then waited for) when the test ends either way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary as one host runs it: its own data directory, the shared
/// PostgreSQL, NATS and bucket.
fn host(data: &Path, database_url: &str, prefix: &str, moto: &Moto) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployd"));
    cmd.env("DATABASE_URL", database_url)
        .env("NATS_URL", support::nats_url())
        .env("DEPLOYD_NATS_PREFIX", prefix)
        .env("DEPLOYD_DATA_DIR", data)
        .env_remove("DEPLOYD_ARTIFACT_ROOTS")
        .env("DEPLOYD_SWEEP_INTERVAL_MS", "300")
        .env("DEPLOYD_LOG", "warn");
    for (name, value) in moto.env() {
        cmd.env(name, value);
    }
    cmd
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

#[tokio::test]
async fn a_server_and_a_worker_with_no_shared_disk_deploy_an_upload_from_s3() {
    let moto = Moto::start().await;
    let (db_name, database_url) = support::fresh_database();
    let prefix = format!("mx{}", ulid::Ulid::generate().to_string().to_lowercase());
    let (api_data, worker_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let out = host(api_data.path(), &database_url, &prefix, &moto)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = host(api_data.path(), &database_url, &prefix, &moto)
        .args(["token", "create", "--workspace", WS, "--name", "ci"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Running(
        host(api_data.path(), &database_url, &prefix, &moto)
            .args(["serve", "--no-worker"])
            .env("DEPLOYD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _worker = Running(
        host(worker_data.path(), &database_url, &prefix, &moto)
            .arg("worker")
            // the URLs it hands out are the API server's
            .env("DEPLOYD_PUBLIC_URL", &base)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server did not come up");

    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("docs")).unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>from the bucket</h1>").unwrap();
    std::fs::write(site.path().join("docs/index.html"), "<h1>docs</h1>").unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path().join("big.bin"), &big).unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args([
            "deploy",
            site.path().to_str().unwrap(),
            "--app",
            "site",
            "--create",
        ])
        .env("DEPLOYD_URL", &base)
        .env("DEPLOYD_TOKEN", &token)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("deploy finished within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let url = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|u| u.trim().to_string())
            .unwrap_or_else(|| panic!("no {label} URL in {stdout}"))
    };
    let (preview, production) = (url("preview"), url("production"));
    assert!(
        preview.starts_with(&base) && production.starts_with(&base),
        "{stdout}"
    );
    for (root, path, expected) in [
        (&preview, "", b"<h1>from the bucket</h1>".to_vec()),
        (&production, "", b"<h1>from the bucket</h1>".to_vec()),
        (&production, "docs/", b"<h1>docs</h1>".to_vec()),
        (&preview, "big.bin", big.clone()),
    ] {
        let response = client.get(format!("{root}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{root}{path}");
        assert_eq!(
            response.bytes().await.unwrap().to_vec(),
            expected,
            "{root}{path}"
        );
    }

    // The files are in the bucket, content-addressed; neither host's disk
    // holds them.
    let keys = moto.keys().await;
    assert!(
        keys.iter().filter(|k| k.starts_with("sha256/")).count() >= 3,
        "{keys:?}"
    );
    for data in [api_data.path(), worker_data.path()] {
        for file in files_under(data) {
            let bytes = std::fs::read(data.join(&file)).unwrap();
            assert!(
                bytes != big && !bytes.starts_with(b"<h1>"),
                "{file} in a data directory holds a site's file"
            );
        }
    }

    if let Ok(nats) = async_nats::connect(support::nats_url()).await {
        let js = async_nats::jetstream::new(nats);
        for stream in ["catalog", "events"] {
            let _ = js.delete_stream(format!("{prefix}_{stream}")).await;
        }
    }
    drop(_worker);
    drop(_server);
    support::drop_database(&db_name).await;
}
