//! Building and running the server: the API, the projectors and the
//! catalog consumer in one process, stopped by one shutdown token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiSettings, AppState};
use crate::bus::Bus;
use crate::catalog::{self, CatalogFeed};
use crate::hosting::local::LocalHosting;
use crate::hosting::store::ArtifactStore;
use crate::hosting::DeployTarget;
use crate::read_model;
use crate::readers::{projector, relay};
use crate::store::commands::Commands;
use crate::store::db::{self, Db, DbOptions};
use crate::store::log::LogSignals;
use crate::worker::{Worker, WorkerSettings};

/// Where deploys go.
#[derive(Debug, Clone, Default)]
pub enum TargetSettings {
    /// deployd stores the files and serves them (the default).
    #[default]
    Local,
    /// Cloudflare Pages Direct Upload.
    Cloudflare(crate::hosting::cloudflare::CloudflareSettings),
}

/// The installation's deploy target and, for local hosting, the local
/// store (which also serves the files).
pub type Targets = (Arc<dyn DeployTarget>, Option<Arc<LocalHosting>>);

/// Everything `deployd serve` is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL (or `sqlite://PATH`); `None`: the embedded database in
    /// `data_dir`.
    pub database_url: Option<String>,
    pub db: DbOptions,
    /// NATS; `None`: the in-process bus.
    pub nats_url: Option<String>,
    pub nats_prefix: String,
    /// `host:port`; port 0 picks a free port.
    pub listen: String,
    pub data_dir: std::path::PathBuf,
    /// The directories builds may be published from
    /// (`DEPLOYD_ARTIFACT_ROOTS`); empty: none.
    pub artifact_roots: Vec<std::path::PathBuf>,
    /// The artifact store (`DEPLOYD_ARTIFACT_STORE`: `file://PATH` or
    /// `s3://BUCKET[/PREFIX]`); `None`: `<data_dir>/blobs`.
    pub artifact_store: Option<String>,
    /// Base of the URLs deployd hands out; `http://<listen>` when unset.
    pub public_url: Option<String>,
    pub api: ApiSettings,
    /// Run the saga worker in this process (`serve --no-worker` turns it off).
    pub run_worker: bool,
    pub worker: WorkerSettings,
    pub target: TargetSettings,
    pub webhooks: crate::webhooks::WebhookSettings,
}

impl Settings {
    /// Where builds may be published from.
    pub fn artifacts(&self) -> crate::hosting::artifacts::ArtifactRoots {
        crate::hosting::artifacts::ArtifactRoots::new(
            self.artifact_roots.clone(),
            self.data_dir.clone(),
        )
    }
}

/// What every role of the process shares: the database, the bus, the
/// wake-ups and the command path.
pub struct Core {
    pub db: Db,
    pub bus: Bus,
    pub signals: LogSignals,
    pub commands: Arc<Commands>,
    /// Builds' files and deploys' manifests.
    pub store: Arc<ArtifactStore>,
}

impl Core {
    pub async fn connect(
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Core> {
        let location = db::Location::new(settings.database_url.as_deref(), &settings.data_dir)?;
        let db = db::open(&location, &settings.db).await?;
        let bus = Bus::connect(settings.nats_url.as_deref(), &settings.nats_prefix).await?;
        let signals = LogSignals::listen(&db, shutdown.clone()).await?;
        let commands = Arc::new(Commands::new(db.clone()));
        let store = Arc::new(ArtifactStore::open(
            settings.artifact_store.as_deref(),
            &settings.data_dir,
        )?);
        Ok(Core {
            db,
            bus,
            signals,
            commands,
            store,
        })
    }

    /// A worker or relay of its own needs the shared engines: the
    /// in-process bus reaches no other process.
    fn separate_process(&self, role: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.bus.nats().is_some(),
            "`deployd {role}` runs beside other processes and needs NATS_URL; \
             without it, `deployd serve` runs the {role} in its own process"
        );
        Ok(())
    }

    /// The deploy target and, for local hosting, the local store.
    pub fn target(&self, settings: &Settings) -> anyhow::Result<Targets> {
        Ok(match &settings.target {
            TargetSettings::Local => {
                let local = Arc::new(LocalHosting::new(self.store.clone()));
                (local.clone() as Arc<dyn DeployTarget>, Some(local))
            }
            TargetSettings::Cloudflare(cf) => (
                Arc::new(crate::hosting::cloudflare::CloudflarePages::new(
                    cf.clone(),
                    self.store.clone(),
                )?) as Arc<dyn DeployTarget>,
                None,
            ),
        })
    }

    /// A worker for this process.
    pub fn worker(&self, settings: &Settings, target: Arc<dyn DeployTarget>) -> Arc<Worker> {
        let mut worker_settings = settings.worker.clone();
        worker_settings.data_dir = settings.data_dir.clone();
        worker_settings.artifact_roots = settings.artifact_roots.clone();
        Arc::new(Worker::new(
            self.commands.clone(),
            self.signals.clone(),
            target,
            self.store.clone(),
            worker_settings,
        ))
    }
}

/// Runs the saga worker alone (`deployd worker`) until `shutdown`.
pub async fn run_worker(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let core = Core::connect(&settings, &shutdown).await?;
    core.separate_process("worker")?;
    std::fs::create_dir_all(&settings.data_dir)?;
    // No public URL: the worker records where deploys are served as paths
    // (`domain::location`); the server answers them under its own.
    let (target, _) = core.target(&settings)?;
    tracing::info!(target = target.name(), "worker started");
    core.worker(&settings, target)
        .run(core.bus.clone(), shutdown)
        .await;
    Ok(())
}

/// Runs the relay alone (`deployd relay`) until `shutdown`, after moving it
/// back to `from` when given.
pub async fn run_relay(
    settings: Settings,
    from: Option<i64>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let core = Core::connect(&settings, &shutdown).await?;
    core.separate_process("relay")?;
    core.bus.prepare_events().await?;
    if let Some(position) = from {
        relay::rewind(&core.db, position).await?;
        tracing::info!(position, "relay moved back; republishing");
    }
    // The relay publishes where deploys are served as URLs under the
    // server's public URL: it must be configured with the same one.
    let public_url = match settings.public_url.clone() {
        Some(url) => url,
        None => {
            let url = format!("http://{}", settings.listen);
            tracing::warn!(
                %url,
                "DEPLOYD_PUBLIC_URL is not set: published events carry URLs under {url}; \
                 set it to the server's"
            );
            url
        }
    };
    relay::run(
        core.db.clone(),
        core.bus.clone(),
        public_url,
        core.signals.clone(),
        shutdown,
    )
    .await;
    Ok(())
}

/// A server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    public_url: String,
}

impl Application {
    /// Opens the database (creating and migrating it) and the bus, binds
    /// the listener and starts the background workers.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let core = Core::connect(&settings, &shutdown).await?;
        let Core {
            db,
            bus,
            signals,
            commands,
            store,
        } = &core;
        let store = store.clone();
        let (db, bus, signals, commands) =
            (db.clone(), bus.clone(), signals.clone(), commands.clone());
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "creating the data directory {}",
                settings.data_dir.display()
            )
        })?;
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let address = listener.local_addr()?;
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));

        let mut tasks = JoinSet::new();
        let (target, hosting) = core.target(&settings)?;
        bus.prepare_events().await?;
        tasks.spawn(relay::run(
            db.clone(),
            bus.clone(),
            public_url.clone(),
            signals.clone(),
            shutdown.clone(),
        ));
        if settings.run_worker {
            tasks.spawn(
                core.worker(&settings, target)
                    .run(bus.clone(), shutdown.clone()),
            );
        }
        tasks.spawn(crate::webhooks::fanout::run(
            db.clone(),
            public_url.clone(),
            signals.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::webhooks::sender::run(
            db.clone(),
            settings.webhooks.clone(),
            signals.clone(),
            shutdown.clone(),
        ));
        for projection in read_model::projections() {
            tasks.spawn(projector::run(
                db.clone(),
                projection,
                signals.clone(),
                shutdown.clone(),
            ));
        }
        let feed = CatalogFeed::new(commands.clone(), settings.artifacts());
        if let Some(nats) = bus.nats() {
            nats.prepare_catalog().await?;
        }
        {
            let (bus, shutdown, feed) = (bus.clone(), shutdown.clone(), feed.clone());
            tasks.spawn(async move {
                while !shutdown.is_cancelled() {
                    if let Err(error) = catalog::consumer::run(&bus, &feed, shutdown.clone()).await
                    {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "catalog consumer stopped; restarting"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
        crate::telemetry::handle();
        tasks.spawn(crate::telemetry::run_collector(
            db.clone(),
            shutdown.clone(),
        ));
        {
            let (db, shutdown) = (db.clone(), shutdown.clone());
            tasks.spawn(async move {
                loop {
                    if let Err(error) = api::idempotency::expire(&db).await {
                        tracing::warn!(%error, "expiring idempotency keys failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    }
                }
            });
        }

        let streams = Arc::new(crate::feeds::Streams::default());
        let hub = crate::feeds::hub::FeedHub::new(
            db.clone(),
            streams.clone(),
            public_url.clone(),
            settings.api.sse_buffer,
        );
        tasks.spawn(hub.clone().run(signals.events(), shutdown.clone()));
        let state = AppState::new(api::Inner {
            cursor_key: api::cursor_key(&db).await?,
            db: db.clone(),
            commands,
            signals,
            // Entity creates hold one while they wait for the read model.
            leases: crate::store::lease::Leases::new(&db, 16),
            last_use: Default::default(),
            auth_failures: api::ratelimit::RateLimiter::new(
                settings.api.auth_failure_rate,
                settings.api.auth_failure_burst,
            ),
            limiter: api::ratelimit::RateLimiter::new(
                settings.api.rate_limit_per_second,
                settings.api.rate_limit_burst,
            ),
            settings: settings.api.clone(),
            public_url: public_url.clone(),
            hosting,
            store,
            catalog: feed,
            nats: bus.nats().map(|n| n.client().clone()),
            streams,
            hub,
            webhooks: settings.webhooks.clone(),
            asyncapi: crate::feeds::asyncapi::document(&settings.nats_prefix),
            shutdown: shutdown.clone(),
        });
        tracing::info!(
            %address,
            %public_url,
            database = db.describe(),
            bus = bus.kind(),
            artifact_store = core.store.describe(),
            "deployd is listening"
        );
        if bus.nats().is_none() && !settings.run_worker {
            tracing::warn!(
                "no NATS_URL and --no-worker: no other process can run deploys; \
                 they stay pending until a serve with its worker starts"
            );
        }
        if bus.nats().is_none() {
            tracing::info!(
                "no NATS_URL: the saga worker is fed in-process and events are not \
                 published to outside subscribers"
            );
        }
        Ok(Self {
            listener,
            state,
            tasks,
            shutdown,
            public_url,
        })
    }

    /// The server's database handle.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// The follower of the log that feeds the server's SSE clients.
    pub fn feed_hub(&self) -> Arc<crate::feeds::hub::FeedHub> {
        self.state.hub.clone()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Cancelling this token stops the server: in-flight requests finish,
    /// background workers stop, `run_until_stopped` returns.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let served = axum::serve(
            api::listener::ProblemListener(self.listener),
            api::router(self.state.clone())
                .into_make_service_with_connect_info::<api::listener::ClientAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.state.db.close().await;
        served.context("serving HTTP")
    }
}
