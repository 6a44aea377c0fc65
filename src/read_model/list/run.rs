//! Running a list: count, page and page flags in one snapshot.
//!
//! Walking forward (`after`, or no cursor) the page is the first `limit`
//! rows after the cursor in the requested order; walking backward
//! (`before`) every key is reversed (direction and null placement), the
//! first `limit` rows after the cursor in that order are taken, and the page
//! is turned back to the requested order. One extra row tells whether there
//! is more in the walking direction; an `EXISTS` from the page's first row
//! (in walking order) tells whether there is anything behind it.

use sea_query::{Cond, PostgresQueryBuilder, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::{SqlxBinder, SqlxValues};

use super::order::{key_value, KeyValue, OrderKey};
use super::{cursor, sql, CursorSide, ListError, ListPage, ListRequest, PageInfo};
use crate::domain::ids::WorkspaceId;
use crate::domain::FieldError;
use crate::read_model::DeployRow;
use crate::store::db::{Engine, Tx};
use crate::store::Db;

/// Runs the list. `scope` = the caller's workspaces: nothing outside them is
/// ever returned, counted, or matched through a relation. `cursor_key` = the
/// HMAC key (the `server_secrets` row `cursor_hmac`).
pub async fn list_deploys(
    db: &Db,
    scope: &[WorkspaceId],
    req: &ListRequest,
    cursor_key: &[u8],
) -> Result<ListPage, ListError> {
    let position = position(req, cursor_key)?;
    let forward = !matches!(position, Some((CursorSide::Before, _)));
    let reversed: Vec<OrderKey> = req.keys.iter().map(|k| k.reversed()).collect();
    let behind = if forward {
        &reversed[..]
    } else {
        &req.keys[..]
    };
    let scope = scope_strings(scope);
    let engine = db.engine();
    let matching = || sql::matching(&req.node, &scope, engine);
    let limit = req.limit as usize;

    // One snapshot for the count, the page and the flags.
    let mut tx = db.begin_read().await?;

    let total: i64 = scalar(&mut tx, sql::count(matching())).await?;

    let page = page_query(req, &scope, &position, engine);
    let mut rows: Vec<DeployRow> = crate::on_tx!(&mut tx, c => {
        let (q, values) = build(&page, engine);
        sqlx::query_as_with(&q, values).fetch_all(c).await?
    });
    let more_ahead = rows.len() > limit;
    rows.truncate(limit);

    // Anything behind the page: before its first row in walking order, or,
    // on an empty page, at or before the cursor.
    let more_behind = match (&position, rows.first()) {
        (None, _) => false,
        (Some(_), Some(edge)) => {
            let edge: Vec<KeyValue> = req.keys.iter().map(|k| key_value(edge, k.field)).collect();
            scalar(&mut tx, sql::exists(matching(), sql::seek(behind, &edge))).await?
        }
        (Some((_, at)), None) => {
            let here = Cond::any()
                .add(sql::seek(behind, at))
                .add(sql::at(&req.keys, at));
            scalar(&mut tx, sql::exists(matching(), here.into())).await?
        }
    };
    tx.commit().await?;

    if !forward {
        rows.reverse();
    }
    let cursor_of = |row: &DeployRow| req.cursor_for(row, cursor_key);
    let (has_next_page, has_previous_page) = if forward {
        (more_ahead, more_behind)
    } else {
        (more_behind, more_ahead)
    };
    let page_info = PageInfo {
        total,
        has_next_page,
        has_previous_page,
        start_cursor: rows.first().map(cursor_of),
        end_cursor: rows.last().map(cursor_of),
    };
    Ok(ListPage {
        data: rows,
        page_info,
    })
}

/// The page query [`list_deploys`] runs for `req` in `scope`, as SQL and
/// its bound values: for `EXPLAIN` in tests and benchmarks. It selects
/// `limit + 1` rows in walking order (reversed for a `before` cursor).
pub fn page_sql(
    scope: &[WorkspaceId],
    req: &ListRequest,
    cursor_key: &[u8],
) -> Result<(String, SqlxValues), ListError> {
    let position = position(req, cursor_key)?;
    let query = page_query(req, &scope_strings(scope), &position, Engine::Postgres);
    Ok(build(&query, Engine::Postgres))
}

/// The query of `total` that [`list_deploys`] runs, as SQL and its bound
/// values (the cursor plays no part in it).
pub fn count_sql(scope: &[WorkspaceId], req: &ListRequest) -> (String, SqlxValues) {
    let matching = sql::matching(&req.node, &scope_strings(scope), Engine::Postgres);
    build(&sql::count(matching), Engine::Postgres)
}

/// The statement in the engine's dialect, with its values.
fn build(query: &SelectStatement, engine: Engine) -> (String, SqlxValues) {
    match engine {
        Engine::Postgres => query.build_sqlx(PostgresQueryBuilder),
        Engine::Sqlite => query.build_sqlx(SqliteQueryBuilder),
    }
}

type Position = Option<(CursorSide, Vec<KeyValue>)>;

/// The request's cursor, verified and decoded.
fn position(req: &ListRequest, cursor_key: &[u8]) -> Result<Position, ListError> {
    let Some((side, token)) = &req.cursor else {
        return Ok(None);
    };
    let values = cursor::decode(cursor_key, &req.binding, &req.keys, token)
        .map_err(|m| ListError::Invalid(vec![FieldError::new(side.param(), m)]))?;
    Ok(Some((*side, values)))
}

fn scope_strings(scope: &[WorkspaceId]) -> Vec<String> {
    scope.iter().map(ToString::to_string).collect()
}

/// The page: `limit + 1` matching rows after the position, in walking order.
fn page_query(
    req: &ListRequest,
    scope: &[String],
    position: &Position,
    engine: Engine,
) -> SelectStatement {
    let walk: Vec<OrderKey> = match position {
        Some((CursorSide::Before, _)) => req.keys.iter().map(|k| k.reversed()).collect(),
        _ => req.keys.clone(),
    };
    let seek = position.as_ref().map(|(_, v)| sql::seek(&walk, v));
    sql::page(
        sql::matching(&req.node, scope, engine),
        seek,
        &walk,
        u64::from(req.limit) + 1,
    )
}

/// Runs a one-column, one-row query.
async fn scalar<T>(tx: &mut Tx, query: SelectStatement) -> Result<T, sqlx::Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + Send
        + Unpin,
{
    let engine = tx.engine();
    let (q, values) = build(&query, engine);
    crate::on_tx!(tx, c => sqlx::query_scalar_with(&q, values).fetch_one(c).await)
}
