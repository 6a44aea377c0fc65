//! One deploy per entity at a time: the entity's lease, held while its
//! deploys run.
//!
//! On PostgreSQL it is a session-level advisory lock on a connection of its
//! own: a worker that dies (even `kill -9`) loses its connection and with
//! it the lock, so another worker can take over at once; nothing needs to
//! expire. The embedded engine runs in one process, so the lease is a lock
//! in that process, gone with it.

use sqlx::{Connection, PgConnection};

use crate::store::db::{Db, NamedLock};

pub enum EntityLease {
    Postgres { conn: PgConnection, key: String },
    Local(NamedLock),
}

fn lock_key(entity: &str) -> String {
    format!("deployd.entity.{entity}")
}

impl EntityLease {
    /// Takes the entity's lease, or `None` when another worker holds it.
    pub async fn try_take(db: &Db, entity: &str) -> sqlx::Result<Option<EntityLease>> {
        Self::try_take_named(db, lock_key(entity)).await
    }

    /// Takes the lease named `key` (a role of which one process is active,
    /// e.g. the webhook sender), or `None` when another holds it.
    pub async fn try_take_named(db: &Db, key: String) -> sqlx::Result<Option<EntityLease>> {
        let pool = match db {
            Db::Postgres(pool) => pool,
            Db::Sqlite(embedded) => return Ok(embedded.try_lock(&key).map(EntityLease::Local)),
        };
        let mut conn = pool.acquire().await?.detach();
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(&key)
                .fetch_one(&mut conn)
                .await?;
        if taken {
            Ok(Some(EntityLease::Postgres { conn, key }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Gives the lease back.
    pub async fn release(self) {
        match self {
            EntityLease::Postgres { mut conn, key } => {
                let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                    .bind(&key)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
            EntityLease::Local(lock) => drop(lock),
        }
    }
}
