//! What the integration tests share: the PostgreSQL and NATS the
//! tests talk to, and a fresh database per test, so tests run in parallel
//! and twice in a row.
//!
//! Tests that hold for both engines are written once and listed in
//! [`backend_tests!`], which runs each twice: `postgres::<name>` (PostgreSQL
//! and NATS, the production engines) and `sqlite::<name>` (the embedded
//! SQLite file and the in-process bus). [`backend`] tells a test (and its
//! helpers) which run it is in.

#![allow(dead_code)] // each test binary uses part of it

pub mod moto;

use std::future::Future;

use sqlx::PgPool;

/// The engines a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL and NATS JetStream.
    Postgres,
    /// The embedded SQLite file and the in-process bus.
    Sqlite,
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// The engines of the running test (PostgreSQL outside [`on`]).
pub fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Postgres)
}

/// Runs `test` on `backend`.
pub async fn on<F: Future>(backend: Backend, test: F) -> F::Output {
    BACKEND.scope(backend, test).await
}

/// Runs each listed `async fn` once per engine, as `postgres::<name>` and
/// `sqlite::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::support::on($crate::support::Backend::Postgres, super::$name()).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::support::on($crate::support::Backend::Sqlite, super::$name()).await
                }
            )*
        }
    };
}

/// The PostgreSQL server, as a URL to its maintenance database
/// (`DEPLOYD_TEST_DATABASE_URL`, default local trust auth).
pub fn server_url() -> String {
    std::env::var("DEPLOYD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// The NATS server (`NATS_URL`, default local).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A fresh database name and its URL (nothing is created yet).
pub fn fresh_database() -> (String, String) {
    let name = format!(
        "deployd_test_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let mut url = url::Url::parse(&server_url()).expect("DEPLOYD_TEST_DATABASE_URL");
    url.set_path(&name);
    (name, url.to_string())
}

/// Drops a test database (best effort).
pub async fn drop_database(name: &str) {
    if let Ok(pool) = PgPool::connect(&server_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
    }
}

/// Runs `test` on a fresh, migrated store of the running test's
/// [`backend`], then removes it.
pub async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(deployd::store::Db) -> Fut,
    Fut: Future<Output = ()>,
{
    match backend() {
        Backend::Postgres => {
            with_database(|pool| test(deployd::store::Db::Postgres(pool))).await;
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let db = deployd::store::db::open_sqlite(
                &dir.path().join(deployd::store::db::EMBEDDED_FILE),
                &Default::default(),
            )
            .await
            .expect("a fresh embedded database");
            test(db.clone()).await;
            db.close().await;
        }
    }
}

/// Runs `test` on a fresh, migrated PostgreSQL database, then drops it.
pub async fn with_database<F, Fut>(test: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()>,
{
    let (name, url) = fresh_database();
    let pool = deployd::store::db::connect_and_migrate(&url, &Default::default())
        .await
        .expect("a fresh test database");
    test(pool.clone()).await;
    pool.close().await;
    drop_database(&name).await;
}
