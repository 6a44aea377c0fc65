//! What every integration-test binary shares: the PostgreSQL and NATS the
//! tests talk to, and a fresh database per test, so tests run in parallel
//! and twice in a row. Included with `#[path = "support/mod.rs"] mod support;`.

#![allow(dead_code)] // each test binary uses part of it

use std::future::Future;

use sqlx::PgPool;

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

/// Runs `test` on a fresh, migrated database, then drops it.
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
