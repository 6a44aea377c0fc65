//! One deploy per entity at a time: a session-level advisory lock on a
//! connection of its own, held while the entity's deploys run. A worker that
//! dies (even `kill -9`) loses its connection and with it the lock, so
//! another worker can take over at once; nothing needs to expire.

use sqlx::{Connection, PgConnection, PgPool};

pub struct EntityLease {
    conn: PgConnection,
    key: String,
}

fn lock_key(entity: &str) -> String {
    format!("deployd.entity.{entity}")
}

impl EntityLease {
    /// Takes the entity's lease, or `None` when another worker holds it.
    pub async fn try_take(pool: &PgPool, entity: &str) -> sqlx::Result<Option<EntityLease>> {
        let mut conn = pool.acquire().await?.detach();
        let key = lock_key(entity);
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(&key)
                .fetch_one(&mut conn)
                .await?;
        if taken {
            Ok(Some(EntityLease { conn, key }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Gives the lease back.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&self.key)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}
