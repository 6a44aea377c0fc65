//! SQL for the list, built with sea-query: every value is a bound
//! parameter, every identifier comes from a fixed list.
//!
//! - [`matching`]: scope AND filter (shorthands and `ids` are already part of
//!   the filter node). Relations become `EXISTS` subqueries that carry the
//!   scope themselves.
//! - [`seek`]: the keyset predicate "after this position" in the expanded OR
//!   form, `k1 > v1 OR (k1 = v1 AND k2 > v2) OR …`, where each `=` on a null
//!   value is `IS NULL` and each `>` is the direction's comparison plus the
//!   null branch the key's null placement implies. A row-value comparison
//!   would be wrong with mixed directions or nulls.

use sea_query::extension::postgres::PgBinOper;
use sea_query::{
    Cond, Expr, ExprTrait, Func, LikeExpr, NullOrdering, Order, Query, SelectStatement,
};

use super::lower::{CmpOp, Node, Relation, Test};
use super::order::{KeyValue, OrderKey};
use crate::read_model::DEPLOY_COLUMNS;
use crate::store::db::Engine;

const DEPLOYS: &str = "deploys";

fn col(table: &'static str, column: &'static str) -> Expr {
    Expr::col((table, column))
}

fn truth(value: bool) -> Expr {
    Expr::cust(if value { "TRUE" } else { "FALSE" })
}

/// `table.workspace_id IN (scope…)`; FALSE for an empty scope.
fn in_scope(table: &'static str, scope: &[String]) -> Expr {
    if scope.is_empty() {
        truth(false)
    } else {
        col(table, "workspace_id").is_in(scope.iter().cloned())
    }
}

/// The rows of `deploys` in scope that match `node`.
pub(crate) fn matching(node: &Node, scope: &[String], engine: Engine) -> Cond {
    Cond::all()
        .add(in_scope(DEPLOYS, scope))
        .add(node_expr(node, DEPLOYS, scope, engine))
}

fn node_expr(node: &Node, table: &'static str, scope: &[String], engine: Engine) -> Expr {
    match node {
        Node::All(parts) if parts.is_empty() => truth(true),
        Node::Any(parts) if parts.is_empty() => truth(false),
        Node::All(parts) => parts
            .iter()
            .fold(Cond::all(), |c, n| {
                c.add(node_expr(n, table, scope, engine))
            })
            .into(),
        Node::Any(parts) => parts
            .iter()
            .fold(Cond::any(), |c, n| {
                c.add(node_expr(n, table, scope, engine))
            })
            .into(),
        Node::Not(inner) => Cond::all()
            .add(node_expr(inner, table, scope, engine))
            .not()
            .into(),
        Node::Test { column, test } => test_expr(col(table, column), test, engine),
        Node::Related { relation, node } => related(*relation, node, scope, engine),
    }
}

fn test_expr(c: Expr, test: &Test, engine: Engine) -> Expr {
    match test {
        Test::Cmp(op, v) => {
            let v = v.clone();
            match op {
                CmpOp::Eq => c.eq(v),
                CmpOp::Neq => c.ne(v),
                CmpOp::Lt => c.lt(v),
                CmpOp::Lte => c.lte(v),
                CmpOp::Gt => c.gt(v),
                CmpOp::Gte => c.gte(v),
            }
        }
        // `x <> x`: FALSE, or UNKNOWN on null, as `IN ()` would be.
        Test::In(vs) if vs.is_empty() => c.clone().ne(c),
        Test::In(vs) => c.is_in(vs.iter().cloned()),
        // `x = x`: TRUE, or UNKNOWN on null, as `NOT IN ()` would be.
        Test::NotIn(vs) if vs.is_empty() => c.clone().eq(c),
        Test::NotIn(vs) => c.is_not_in(vs.iter().cloned()),
        Test::Like {
            pattern,
            negated,
            fold_case,
        } => {
            // ASCII only on both engines: PostgreSQL's lower() under the
            // columns' "C" collation, and SQLite's lower()
            let target = if *fold_case { Func::lower(c).into() } else { c };
            let like = LikeExpr::new(pattern.clone()).escape('\\');
            if *negated {
                target.not_like(like)
            } else {
                target.like(like)
            }
        }
        Test::IsNull(true) => c.is_null(),
        Test::IsNull(false) => c.is_not_null(),
        Test::JsonContains(v) => match engine {
            Engine::Postgres => c.binary(PgBinOper::Contains, Expr::val(v.clone())),
            // jsonb's @> in Rust (store::sqlite_fns)
            Engine::Sqlite => Func::cust("deployd_json_contains")
                .arg(c)
                .arg(v.to_string())
                .into(),
        },
        Test::HasKey(k) => match engine {
            Engine::Postgres => Func::cust("jsonb_exists").arg(c).arg(k.clone()).into(),
            Engine::Sqlite => Func::cust("deployd_json_has_key")
                .arg(c)
                .arg(k.clone())
                .into(),
        },
    }
}

/// `EXISTS (…)` over a relation of the deploy, limited to the scope.
fn related(relation: Relation, node: &Node, scope: &[String], engine: Engine) -> Expr {
    let sub = |table: &'static str, alias: &'static str| {
        Query::select()
            .expr(Expr::cust("1"))
            .from_as(table, alias)
            .to_owned()
    };
    let inner = |alias| node_expr(node, alias, scope, engine);
    match relation {
        Relation::Build => Expr::exists(
            sub("builds", "b")
                .and_where(col("b", "id").equals((DEPLOYS, "build_id")))
                .and_where(in_scope("b", scope))
                .and_where(inner("b"))
                .to_owned(),
        ),
        Relation::Entity => Expr::exists(
            sub("entities", "e")
                .and_where(col("e", "id").equals((DEPLOYS, "entity_id")))
                .and_where(in_scope("e", scope))
                .and_where(inner("e"))
                .to_owned(),
        ),
        // Steps have no workspace of their own: they are in scope through
        // their deploy, which the outer query has already limited.
        Relation::SomeStep | Relation::EveryStep | Relation::NoStep => {
            let condition = match relation {
                // a step whose filter is not TRUE (FALSE or UNKNOWN) breaks `every`
                Relation::EveryStep => Expr::expr(Func::coalesce([inner("s"), truth(false)])).not(),
                _ => inner("s"),
            };
            let select = sub("deploy_steps", "s")
                .and_where(col("s", "deploy_id").equals((DEPLOYS, "id")))
                .and_where(condition)
                .to_owned();
            match relation {
                Relation::SomeStep => Expr::exists(select),
                _ => Expr::not_exists(select),
            }
        }
    }
}

/// Rows strictly after the position `values` in the order `keys`.
pub(crate) fn seek(keys: &[OrderKey], values: &[KeyValue]) -> Expr {
    let mut any = Cond::any();
    let mut branches = 0;
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        let Some(beyond) = beyond(*key, value) else {
            continue;
        };
        let prefix = keys[..i]
            .iter()
            .zip(values)
            .fold(Cond::all(), |c, (k, v)| c.add(equal(*k, v)));
        any = any.add(prefix.add(beyond));
        branches += 1;
    }
    if branches == 0 {
        return truth(false);
    }
    // Implied by the OR form, but usable as an index range: the leading key
    // is at or beyond the cursor, so a deep page costs what the first does.
    match keys.first().zip(values.first()) {
        Some((key, value)) => match at_or_beyond(*key, value) {
            Some(bound) => Cond::all().add(bound).add(any).into(),
            None => any.into(),
        },
        None => any.into(),
    }
}

/// The key's value is the cursor's or comes after it; `None` when that
/// holds for every row (a null that sorts first).
fn at_or_beyond(key: OrderKey, value: &KeyValue) -> Option<Expr> {
    let c = col(DEPLOYS, key.field.column());
    match value {
        KeyValue::Null if key.nulls_first => None,
        KeyValue::Null => Some(c.is_null()),
        v => {
            let bound = if key.descending {
                c.clone().lte(v.to_sql())
            } else {
                c.clone().gte(v.to_sql())
            };
            if key.nulls_first {
                Some(bound)
            } else {
                Some(Cond::any().add(bound).add(c.is_null()).into())
            }
        }
    }
}

/// The row is at exactly this position: every key equal (null-safe).
pub(crate) fn at(keys: &[OrderKey], values: &[KeyValue]) -> Expr {
    keys.iter()
        .zip(values)
        .fold(Cond::all(), |c, (k, v)| c.add(equal(*k, v)))
        .into()
}

/// The key holds the same value (null-safe).
fn equal(key: OrderKey, value: &KeyValue) -> Expr {
    let c = col(DEPLOYS, key.field.column());
    match value {
        KeyValue::Null => c.is_null(),
        v => c.eq(v.to_sql()),
    }
}

/// The key's value comes after `value` in the key's order; `None` when
/// nothing can (a null that sorts last).
fn beyond(key: OrderKey, value: &KeyValue) -> Option<Expr> {
    let c = col(DEPLOYS, key.field.column());
    match value {
        KeyValue::Null if key.nulls_first => Some(c.is_not_null()),
        KeyValue::Null => None,
        v => {
            let strictly = if key.descending {
                c.clone().lt(v.to_sql())
            } else {
                c.clone().gt(v.to_sql())
            };
            if key.nulls_first {
                Some(strictly)
            } else {
                Some(Cond::any().add(strictly).add(c.is_null()).into())
            }
        }
    }
}

/// `SELECT <deploy columns> FROM deploys WHERE <where> ORDER BY <keys> LIMIT n`.
pub(crate) fn page(
    filter: Cond,
    seek: Option<Expr>,
    keys: &[OrderKey],
    limit: u64,
) -> SelectStatement {
    let mut q = Query::select();
    q.columns(DEPLOY_COLUMNS.iter().map(|c| (DEPLOYS, *c)))
        .from(DEPLOYS)
        .cond_where(filter);
    if let Some(seek) = seek {
        q.and_where(seek);
    }
    for key in keys {
        let order = if key.descending {
            Order::Desc
        } else {
            Order::Asc
        };
        let nulls = if key.nulls_first {
            NullOrdering::First
        } else {
            NullOrdering::Last
        };
        q.order_by_with_nulls((DEPLOYS, key.field.column()), order, nulls);
    }
    q.limit(limit).to_owned()
}

/// `SELECT COUNT(*) FROM deploys WHERE <where>`.
pub(crate) fn count(filter: Cond) -> SelectStatement {
    Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .from(DEPLOYS)
        .cond_where(filter)
        .to_owned()
}

/// `SELECT EXISTS (SELECT 1 FROM deploys WHERE <where> AND <seek>)`.
pub(crate) fn exists(filter: Cond, seek: Expr) -> SelectStatement {
    let inner = Query::select()
        .expr(Expr::cust("1"))
        .from(DEPLOYS)
        .cond_where(filter)
        .and_where(seek)
        .to_owned();
    Query::select().expr(Expr::exists(inner)).to_owned()
}
