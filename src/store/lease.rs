//! One deploy per entity at a time: the entity's lease, held while one of
//! its deploys runs.
//!
//! On PostgreSQL it is a session-level advisory lock, taken on a connection
//! of a small pool of the leases' own ([`Leases`]): a worker that dies
//! (even `kill -9`) loses its connections and the locks with them, so
//! another worker can take over at once; nothing needs to expire. The
//! connections are kept: a lease that is released (`pg_advisory_unlock`
//! answered true) gives its connection back to the pool, and an attempt
//! that finds the lease taken holds no lock, so its connection goes back
//! too. Only a connection whose unlock did not answer, or a lease dropped
//! without being released (a cancelled task), is closed, which is what
//! frees its lock. The embedded engine runs in one process, so the lease
//! is a lock in that process, gone with it.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres};

use crate::store::db::{Db, NamedLock};

/// Where a process takes its leases.
#[derive(Clone)]
pub struct Leases(Source);

#[derive(Clone)]
enum Source {
    Postgres(PgPool),
    Embedded(Db),
}

fn lock_key(entity: &str) -> String {
    format!("deployd.entity.{entity}")
}

impl Leases {
    /// Leases on `db`, with connections for `holders` leases held or
    /// attempted at once (the worker's concurrency; more wait their turn).
    pub fn new(db: &Db, holders: u32) -> Self {
        match db {
            Db::Postgres(pool) => Leases(Source::Postgres(
                PgPoolOptions::new()
                    .max_connections(holders.max(1))
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy_with((*pool.connect_options()).clone()),
            )),
            Db::Sqlite(_) => Leases(Source::Embedded(db.clone())),
        }
    }

    /// Takes the entity's lease, or `None` when another worker holds it.
    pub async fn try_take(&self, entity: &str) -> sqlx::Result<Option<EntityLease>> {
        self.try_take_named(lock_key(entity)).await
    }

    /// Takes the lease named `key` (a role of which one process is active,
    /// e.g. the webhook sender), or `None` when another holds it.
    pub async fn try_take_named(&self, key: String) -> sqlx::Result<Option<EntityLease>> {
        let pool = match &self.0 {
            Source::Postgres(pool) => pool,
            Source::Embedded(Db::Sqlite(embedded)) => {
                return Ok(embedded
                    .try_lock(&key)
                    .map(|lock| EntityLease(Held::Local(lock))))
            }
            Source::Embedded(Db::Postgres(_)) => unreachable!("leases of PostgreSQL use its pool"),
        };
        let mut conn = pool.acquire().await?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(&key)
                .fetch_one(&mut *conn)
                .await?;
        // Not taken: the session holds nothing, and the connection goes
        // back to the pool for the next attempt.
        Ok(taken.then(|| {
            EntityLease(Held::Postgres {
                conn: Some(conn),
                key,
            })
        }))
    }
}

/// A lease held: give it back with [`EntityLease::release`].
pub struct EntityLease(Held);

enum Held {
    Postgres {
        /// `None` once released.
        conn: Option<PoolConnection<Postgres>>,
        key: String,
    },
    /// Held until dropped.
    Local(#[allow(dead_code)] NamedLock),
}

impl EntityLease {
    /// Gives the lease back.
    pub async fn release(mut self) {
        if let Held::Postgres { conn, key } = &mut self.0 {
            let Some(mut conn) = conn.take() else { return };
            let unlocked: sqlx::Result<bool> =
                sqlx::query_scalar("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                    .bind(&*key)
                    .fetch_one(&mut *conn)
                    .await;
            if !matches!(unlocked, Ok(true)) {
                // Whether the session still holds the lock is unknown:
                // ending the session is what frees it for certain.
                tracing::warn!(
                    key,
                    ?unlocked,
                    "lease: unlock failed; closing its connection"
                );
                let _ = conn.detach().close().await;
            }
        }
    }
}

impl Drop for EntityLease {
    fn drop(&mut self) {
        // Dropped while held (the holding task was cancelled): the
        // connection must not go back to the pool with the lock on it.
        if let Held::Postgres { conn, .. } = &mut self.0 {
            if let Some(conn) = conn.take() {
                drop(conn.detach());
            }
        }
    }
}
