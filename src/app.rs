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
use crate::catalog::CatalogFeed;
use crate::projector;
use crate::read_model;
use crate::store::commands::Commands;
use crate::store::db::{self, DbOptions};
use crate::store::log::LogSignals;

/// Everything `deployd serve` is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub db: DbOptions,
    pub nats_url: String,
    pub nats_prefix: String,
    /// `host:port`; port 0 picks a free port.
    pub listen: String,
    pub data_dir: std::path::PathBuf,
    /// Base of the URLs deployd hands out; `http://<listen>` when unset.
    pub public_url: Option<String>,
    pub api: ApiSettings,
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
    /// Connects to PostgreSQL (creating and migrating the database) and
    /// NATS, binds the listener and starts the background workers.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let pool = db::connect_and_migrate(&settings.database_url, &settings.db).await?;
        let bus = Bus::connect(&settings.nats_url, &settings.nats_prefix).await?;
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

        let signals = LogSignals::listen(&pool, shutdown.clone()).await?;
        let commands = Arc::new(Commands::new(pool.clone()));
        let mut tasks = JoinSet::new();
        for projection in read_model::projections() {
            tasks.spawn(projector::run(
                pool.clone(),
                projection,
                signals.clone(),
                shutdown.clone(),
            ));
        }
        let feed = CatalogFeed::new(commands.clone());
        bus.prepare_catalog().await?;
        {
            let (bus, shutdown) = (bus.clone(), shutdown.clone());
            tasks.spawn(async move {
                while !shutdown.is_cancelled() {
                    if let Err(error) = bus
                        .run_catalog_consumer(feed.clone(), shutdown.clone())
                        .await
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
        {
            let (pool, shutdown) = (pool.clone(), shutdown.clone());
            tasks.spawn(async move {
                loop {
                    if let Err(error) = api::idempotency::expire(&pool).await {
                        tracing::warn!(%error, "expiring idempotency keys failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    }
                }
            });
        }

        let state = AppState::new(api::Inner {
            cursor_key: api::cursor_key(&pool).await?,
            pool,
            commands,
            signals,
            settings: settings.api.clone(),
        });
        tracing::info!(%address, %public_url, "deployd is listening");
        Ok(Self {
            listener,
            state,
            tasks,
            shutdown,
            public_url,
        })
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
        let served = axum::serve(self.listener, api::router(self.state.clone()))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.state.pool.close().await;
        served.context("serving HTTP")
    }
}
