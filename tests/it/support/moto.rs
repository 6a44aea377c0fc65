//! A real S3-compatible server for the tests: `moto_server` from PyPI,
//! installed by `scripts/services` into a virtual environment of its own
//! (`DEPLOYD_MOTO_VENV`, default `~/.cache/deployd/moto-venv`). Each test
//! starts its own on a free port, makes its bucket with an HTTP PUT, and
//! the server is killed when the handle drops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub bucket: String,
}

/// Where `scripts/services` puts moto.
fn venv() -> PathBuf {
    match std::env::var_os("DEPLOYD_MOTO_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/deployd/moto-venv"),
    }
}

impl Moto {
    /// Starts moto's S3 server with one empty bucket; panics, saying to run
    /// `scripts/services`, when moto is not installed.
    pub async fn start() -> Moto {
        let binary = venv().join("bin/moto_server");
        assert!(
            binary.is_file(),
            "{} is missing: run scripts/services, which installs moto[server] from PyPI there",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: format!(
                "deployd-{}",
                ulid::Ulid::generate().to_string().to_lowercase()
            ),
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client
                .put(format!("{}/{}", moto.endpoint, moto.bucket))
                .send()
                .await
            {
                assert!(
                    r.status().is_success(),
                    "creating the bucket: {}",
                    r.status()
                );
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "moto_server did not answer on {} within 30 s",
            moto.endpoint
        );
    }

    /// The environment a deployd process needs to keep its artifacts in
    /// this bucket.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DEPLOYD_ARTIFACT_STORE", format!("s3://{}", self.bucket)),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The keys in the bucket (S3 ListObjectsV2, unsigned: moto takes it).
    pub async fn keys(&self) -> Vec<String> {
        let listing = reqwest::Client::new()
            .get(format!("{}/{}?list-type=2", self.endpoint, self.bucket))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
