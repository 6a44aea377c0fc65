//! The two engines' schemas hold the same tables with the same columns, so
//! a migration written for one and forgotten for the other fails here, not
//! in an installation. Types are each engine's own; names must agree.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use crate::support;

/// Tables each engine keeps for its own mechanics, not part of the model.
const ENGINE_ONLY: &[&str] = &["_sqlx_migrations"];

type Schema = BTreeMap<String, BTreeSet<String>>;

async fn postgres_schema(pool: &sqlx::PgPool) -> Schema {
    let rows = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
         WHERE table_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .expect("PostgreSQL columns");
    let mut schema = Schema::new();
    for row in rows {
        let (table, column): (String, String) = (row.get("t"), row.get("c"));
        schema.entry(table).or_default().insert(column);
    }
    schema
}

async fn sqlite_schema(pool: &sqlx::SqlitePool) -> Schema {
    let rows = sqlx::query(
        "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(pool)
    .await
    .expect("SQLite columns");
    let mut schema = Schema::new();
    for row in rows {
        let (table, column): (String, String) = (row.get("t"), row.get("c"));
        schema.entry(table).or_default().insert(column);
    }
    schema
}

#[tokio::test]
async fn both_engines_have_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = deployd::store::db::open_sqlite(
        &dir.path().join(deployd::store::db::EMBEDDED_FILE),
        &Default::default(),
    )
    .await
    .expect("a fresh embedded database");
    let deployd::store::Db::Sqlite(embedded) = embedded else {
        unreachable!("open_sqlite opens SQLite")
    };
    let mut sqlite = sqlite_schema(&embedded.pool).await;
    support::with_database(|pool| async move {
        let mut postgres = postgres_schema(&pool).await;
        for table in ENGINE_ONLY {
            postgres.remove(*table);
            sqlite.remove(*table);
        }
        assert!(postgres.contains_key("events"), "{postgres:?}");
        let tables = |s: &Schema| s.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(
            tables(&postgres),
            tables(&sqlite),
            "tables differ (left PostgreSQL, right SQLite)"
        );
        for (table, columns) in &postgres {
            assert_eq!(
                columns, &sqlite[table],
                "columns of {table} differ (left PostgreSQL, right SQLite)"
            );
        }
    })
    .await;
}
