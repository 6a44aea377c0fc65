//! Connecting: any command that touches the database creates it when it is
//! missing and applies the migrations, so whichever runs first on a fresh
//! machine sets everything up.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// The schema, from `migrations/` (applied under sqlx's advisory lock, so
/// several processes may start at once).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pool settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    /// `statement_timeout` for every connection; zero leaves it unset.
    pub statement_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Creates the database if needed, connects, and migrates.
pub async fn connect_and_migrate(url: &str, options: &DbOptions) -> anyhow::Result<PgPool> {
    ensure_database(url).await?;
    let pool = connect(url, options).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying the database migrations")?;
    Ok(pool)
}

/// Connects without migrating.
pub async fn connect(url: &str, options: &DbOptions) -> anyhow::Result<PgPool> {
    let mut connect_options = PgConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL is not a PostgreSQL URL: {}", redact(url)))?
        .application_name("deployd");
    if !options.statement_timeout.is_zero() {
        connect_options = connect_options.options([(
            "statement_timeout",
            options.statement_timeout.as_millis().to_string(),
        )]);
    }
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let exists = Postgres::database_exists(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    if !exists {
        if let Err(error) = Postgres::create_database(url).await {
            // Another process may have created it in the meantime.
            let now_exists = Postgres::database_exists(url).await.unwrap_or(false);
            if !now_exists {
                return Err(error).with_context(|| format!("creating {}", redact(url)));
            }
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
