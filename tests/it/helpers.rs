use std::time::Duration;

use deployd::api::ApiSettings;
use deployd::startup::{Application, Settings, TargetSettings};
use deployd::store::db::DbOptions;
use deployd::store::Db;
use deployd::worker::WorkerSettings;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
pub const OTHER_WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K59";

pub use crate::support::{backend, drop_database, fresh_database, nats_url, Backend};

pub struct TestApp {
    pub address: String,
    /// The server's own database handle.
    pub db: Db,
    pub backend: Backend,
    /// The PostgreSQL database (name, URL); `None` on the embedded engine,
    /// whose file is in `data_dir`.
    pub database: Option<(String, String)>,
    pub prefix: String,
    pub client: reqwest::Client,
    /// A token for [`WS`] named `alice`.
    pub token: String,
    /// A token for [`OTHER_WS`] named `mallory`.
    pub other_token: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub data_dir: tempfile::TempDir,
    /// Where the tests' builds are written: the server's
    /// `DEPLOYD_ARTIFACT_ROOTS`, with [`FIXED_ROOT`].
    pub artifacts: tempfile::TempDir,
    pub options: Options,
    /// The server's follower of the log for SSE clients.
    pub hub: std::sync::Arc<deployd::feeds::hub::FeedHub>,
}

/// A root for the fixed paths (`/srv/…`) tests name in catalog documents
/// whose files no deploy reads.
pub const FIXED_ROOT: &str = "/srv";

/// How a test's server is set up.
#[derive(Clone)]
pub struct Options {
    pub worker: bool,
    /// NATS for PostgreSQL runs, the in-process bus (`None`) for SQLite
    /// runs, unless a test says otherwise.
    pub nats_url: Option<String>,
    pub worker_settings: WorkerSettings,
    pub api: ApiSettings,
    pub webhooks: deployd::webhooks::WebhookSettings,
    /// `DEPLOYD_ARTIFACT_STORE`; `None`: `<data_dir>/blobs`.
    pub artifact_store: Option<String>,
    /// `DEPLOYD_PUBLIC_URL`; `None`: `http://<listen address>`.
    pub public_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            worker: false,
            nats_url: match backend() {
                Backend::Postgres => Some(nats_url()),
                Backend::Sqlite => None,
            },
            worker_settings: WorkerSettings {
                sweep_interval: Duration::from_millis(300),
                retry_backoff: Duration::from_millis(50),
                ..WorkerSettings::default()
            },
            api: ApiSettings::default(),
            webhooks: Default::default(),
            artifact_store: None,
            public_url: None,
        }
    }
}

pub fn settings(
    database_url: Option<&str>,
    prefix: &str,
    data_dir: &std::path::Path,
    artifacts: &std::path::Path,
    options: &Options,
) -> Settings {
    Settings {
        database_url: database_url.map(str::to_string),
        db: DbOptions {
            max_connections: 8,
            ..DbOptions::default()
        },
        nats_url: options.nats_url.clone(),
        nats_prefix: prefix.to_string(),
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        artifact_roots: vec![artifacts.to_path_buf(), FIXED_ROOT.into()],
        artifact_store: options.artifact_store.clone(),
        public_url: options.public_url.clone(),
        api: options.api.clone(),
        run_worker: options.worker,
        worker: options.worker_settings.clone(),
        target: TargetSettings::Local,
        webhooks: options.webhooks.clone(),
    }
}

impl TestApp {
    /// The API, projectors and relay, without the saga worker: deploys stay
    /// where the test puts them.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    /// Everything, the saga worker included.
    pub async fn spawn_with_worker() -> TestApp {
        Self::spawn_with(Options {
            worker: true,
            ..Options::default()
        })
        .await
    }

    /// A server on the running test's engines ([`backend`]): a fresh
    /// PostgreSQL database, or no `DATABASE_URL` at all (the embedded file
    /// in the data directory).
    pub async fn spawn_with(options: Options) -> TestApp {
        let database = match backend() {
            Backend::Postgres => Some(fresh_database()),
            Backend::Sqlite => None,
        };
        let prefix = format!("t{}", ulid::Ulid::generate().to_string().to_lowercase());
        let data_dir = tempfile::tempdir().unwrap();
        let artifacts = tempfile::tempdir().unwrap();
        Self::start(database, prefix, data_dir, artifacts, None, options).await
    }

    async fn start(
        database: Option<(String, String)>,
        prefix: String,
        data_dir: tempfile::TempDir,
        artifacts: tempfile::TempDir,
        tokens: Option<(String, String)>,
        options: Options,
    ) -> TestApp {
        let database_url = database.as_ref().map(|(_, url)| url.as_str());
        let app = Application::build(settings(
            database_url,
            &prefix,
            data_dir.path(),
            artifacts.path(),
            &options,
        ))
        .await
        .expect("the server starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.shutdown_token();
        let db = app.db().clone();
        let hub = app.feed_hub();
        let server = tokio::spawn(app.run_until_stopped());
        let (token, other_token) = match tokens {
            Some(t) => t,
            None => (
                make_token(&db, "alice", &[WS]).await,
                make_token(&db, "mallory", &[OTHER_WS]).await,
            ),
        };
        TestApp {
            address,
            backend: db_backend(&db),
            db,
            database,
            prefix,
            client: reqwest::Client::new(),
            token,
            other_token,
            shutdown,
            server,
            data_dir,
            artifacts,
            options,
            hub,
        }
    }

    /// Stops the server (as SIGTERM would) and starts a new one on the same
    /// database.
    pub async fn restart(self) -> TestApp {
        self.shutdown.cancel();
        self.server
            .await
            .unwrap()
            .expect("the server stops cleanly");
        Self::start(
            self.database,
            self.prefix,
            self.data_dir,
            self.artifacts,
            Some((self.token, self.other_token)),
            self.options,
        )
        .await
    }

    /// Stops the server and drops the database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .unwrap()
            .expect("the server stops cleanly");
        if let Some(url) = &self.options.nats_url {
            if let Ok(client) = async_nats::connect(url).await {
                let js = async_nats::jetstream::new(client);
                let _ = js.delete_stream(format!("{}_catalog", self.prefix)).await;
                let _ = js.delete_stream(format!("{}_events", self.prefix)).await;
            }
        }
        if let Some((name, _)) = &self.database {
            drop_database(name).await;
        }
    }

    /// The PostgreSQL pool, for tests of PostgreSQL itself.
    pub fn pg(&self) -> &sqlx::PgPool {
        self.db.postgres().expect("a PostgreSQL test")
    }

    /// The PostgreSQL URL, for tests of PostgreSQL itself.
    pub fn database_url(&self) -> &str {
        &self.database.as_ref().expect("a PostgreSQL test").1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The server's artifact roots.
    pub fn artifact_roots(&self) -> deployd::hosting::artifacts::ArtifactRoots {
        deployd::hosting::artifacts::ArtifactRoots::new(
            vec![self.artifacts.path().to_path_buf(), FIXED_ROOT.into()],
            self.data_dir.path(),
        )
    }

    pub async fn import(&self, documents: &[Value]) -> deployd::catalog::ImportReport {
        let feed = deployd::catalog::CatalogFeed::new(
            std::sync::Arc::new(deployd::store::commands::Commands::new(self.db.clone())),
            self.artifact_roots(),
        );
        let text: String = documents.iter().map(|d| format!("{d}\n")).collect();
        deployd::catalog::import(&feed, text.as_bytes(), std::io::sink())
            .await
            .unwrap()
    }

    /// A successful build of `seeded`'s default version with these files.
    pub async fn seed_build(&self, seeded: &Seeded, files: &[(&str, &str)]) -> String {
        let build = format!("bld_{}", ulid::Ulid::generate());
        let dir = self.artifacts.path().join(format!("site-{build}"));
        for (path, content) in files {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let report = self
            .import(&[build_succeeded_doc(
                WS,
                &seeded.app,
                &seeded.version,
                &build,
                dir.to_str().unwrap(),
            )])
            .await;
        assert_eq!(report.rejected, 0);
        build
    }

    /// A build of `seeded` with `count` small files (a long upload).
    pub async fn seed_big_build(&self, seeded: &Seeded, count: usize) -> String {
        let build = format!("bld_{}", ulid::Ulid::generate());
        let dir = self.artifacts.path().join(format!("site-{build}"));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), format!("<h1>{build}</h1>")).unwrap();
        for i in 0..count {
            std::fs::write(
                dir.join("assets").join(format!("{i}.txt")),
                format!("{build} {i}"),
            )
            .unwrap();
        }
        let report = self
            .import(&[build_succeeded_doc(
                WS,
                &seeded.app,
                &seeded.version,
                &build,
                dir.to_str().unwrap(),
            )])
            .await;
        assert_eq!(report.rejected, 0);
        build
    }

    /// The deploy's detail.
    pub async fn detail(&self, id: &str) -> Value {
        self.get(&format!("/api/deploys/{id}"), &self.token)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Polls the deploy's detail until `check` holds (30 s at most).
    pub async fn wait_for(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let detail = self.detail(id).await;
            if check(&detail) {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "deploy {id}: {what} did not happen within 30 s: {}",
            self.detail(id).await
        );
    }

    /// Waits until the deploy is in `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, status, |d| d["status"] == status).await
    }

    /// The deploy's stored event types, in order.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        deployd::on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap())
    }

    /// An app with one successful build of its default version, in `ws`.
    pub async fn seed_app(&self, ws: &str) -> Seeded {
        let app = format!("app_{}", ulid::Ulid::generate());
        let version = format!("ver_{}", ulid::Ulid::generate());
        let build = format!("bld_{}", ulid::Ulid::generate());
        let dir = self.artifacts.path().join(format!("site-{build}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("<h1>{build}</h1>")).unwrap();
        let report = self
            .import(&[
                entity_doc(ws, &app, Some(&version)),
                build_succeeded_doc(ws, &app, &version, &build, dir.to_str().unwrap()),
            ])
            .await;
        assert_eq!(report.rejected, 0);
        Seeded {
            app,
            version,
            build,
        }
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the deploy list with these parameters shows a deploy;
    /// returns the first one's id.
    pub async fn wait_list(&self, params: &[(&str, &str)]) -> String {
        for _ in 0..600 {
            let page: Value = self
                .client
                .get(self.url("/api/deploys"))
                .bearer_auth(&self.token)
                .query(params)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = page["data"][0]["id"].as_str() {
                return id.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no deploy listed for {params:?} within 30 s");
    }

    /// Creates a deploy of `build` as alice; returns the row.
    pub async fn create(&self, build: &str) -> Value {
        let response = self
            .post("/api/deploys", &self.token, json!({ "buildId": build }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

pub struct Seeded {
    pub app: String,
    pub version: String,
    pub build: String,
}

fn db_backend(db: &Db) -> Backend {
    match db.engine() {
        deployd::store::Engine::Postgres => Backend::Postgres,
        deployd::store::Engine::Sqlite => Backend::Sqlite,
    }
}

/// A count from a query that reads the same on both engines.
pub async fn count(db: &Db, sql: &str) -> i64 {
    deployd::on_db!(db, pool => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap())
}

pub async fn make_token(pool: &Db, name: &str, workspaces: &[&str]) -> String {
    let ws: Vec<_> = workspaces.iter().map(|w| w.parse().unwrap()).collect();
    deployd::store::tokens::create(pool, Some(name), &ws)
        .await
        .unwrap()
        .1
}

pub fn new_event_id() -> String {
    format!("evt_{}", ulid::Ulid::generate())
}

pub fn entity_doc(ws: &str, app: &str, version: Option<&str>) -> Value {
    json!({
        "type": "entity.upserted", "eventId": new_event_id(),
        "occurredAt": "2026-11-27T10:00:00Z", "workspaceId": ws,
        "entity": {"id": app, "kind": "app", "name": "web",
                   "defaultVersionId": version, "autoDeploy": false}
    })
}

pub fn build_succeeded_doc(ws: &str, app: &str, version: &str, build: &str, dir: &str) -> Value {
    json!({
        "type": "build.succeeded", "eventId": new_event_id(),
        "occurredAt": "2026-11-27T10:01:00Z", "workspaceId": ws,
        "build": {"id": build, "entityId": app, "versionId": version,
                  "artifactDir": dir, "commitSha": "abc123", "branch": "main"}
    })
}

pub fn build_failed_doc(ws: &str, app: &str, version: &str, build: &str) -> Value {
    json!({
        "type": "build.failed", "eventId": new_event_id(),
        "occurredAt": "2026-11-27T10:02:00Z", "workspaceId": ws,
        "build": {"id": build, "entityId": app, "versionId": version,
                  "error": "tests failed", "commitSha": "def456", "branch": "main"}
    })
}

/// Asserts a problem+json answer with `status`; returns its body.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// The pointers of a 400's errors.
pub fn pointers(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["pointer"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` until it holds or 10 s pass.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 10 s");
}
