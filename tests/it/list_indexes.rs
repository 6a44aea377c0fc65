//! The common list orders are index scans: `EXPLAIN (FORMAT JSON)` of the
//! page SQL the library generates (`deployd::read_model::list::page_sql`), on a read
//! model of 20,000 deploys, first page and a page after a cursor. Asserts on
//! plan shape only (an ordered index scan of `deploys`, no Seq Scan, no Sort),
//! never on time; `benches/list.rs` measures the time.

use crate::support;

use std::str::FromStr;

use deployd::domain::ids::WorkspaceId;
use deployd::read_model::list::{
    count_sql, list_deploys, page_sql, parse_list_params, RawListParams,
};
use serde_json::Value;
use sqlx::PgPool;

const ROWS: i64 = 20_000;
const WORKSPACES: i64 = 4;
const ENTITIES: i64 = 8;

fn ws(n: i64) -> String {
    format!("ws_{n:026}")
}

fn entity(n: i64) -> String {
    format!("app_{n:026}")
}

async fn load(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO entities (id, workspace_id, kind, name, auto_deploy, created_at, updated_at)
         SELECT 'app_' || lpad(e::text, 26, '0'), 'ws_' || lpad((e % $1)::text, 26, '0'),
                'app', 'e' || e, false, now(), now()
         FROM generate_series(0, $2 - 1) e",
    )
    .bind(WORKSPACES)
    .bind(ENTITIES)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO builds (id, workspace_id, entity_id, version_id, status, branch, source_event_id, created_at)
         SELECT 'bld_' || lpad(e::text, 26, '0'), 'ws_' || lpad((e % $1)::text, 26, '0'),
                'app_' || lpad(e::text, 26, '0'), 'ver_' || lpad(e::text, 26, '0'),
                'succeeded', CASE WHEN e % 2 = 0 THEN 'main' ELSE 'dev' END,
                'evt_' || lpad(e::text, 26, '0'), now()
         FROM generate_series(0, $2 - 1) e",
    )
    .bind(WORKSPACES)
    .bind(ENTITIES)
    .execute(pool)
    .await
    .unwrap();
    // statuses mixed, nulls in startedAt/completedAt/error, 2 deploys of a
    // workspace per createdAt value
    sqlx::query(
        "INSERT INTO deploys (id, workspace_id, entity_id, sequence_number, build_id, status, trigger,
                              error, metadata, created_by, started_at, completed_at, created_at, event_sequence)
         SELECT 'dep_' || lpad(upper(to_hex(i / 8)), 10, '0') || upper(substr(md5(i::text), 1, 16)),
                'ws_' || lpad((e % $1)::text, 26, '0'), 'app_' || lpad(e::text, 26, '0'), i / $2 + 1,
                'bld_' || lpad(e::text, 26, '0'), status, 'manual',
                CASE WHEN status = 'failed' THEN 'boom' END, '{}', 'alice',
                CASE WHEN status <> 'pending' THEN created END,
                CASE WHEN status IN ('completed', 'failed') THEN created + interval '1 minute' END,
                created, 1
         FROM generate_series(0, $3 - 1) i,
              LATERAL (SELECT i % $2 AS e, abs(hashint8(i)) % 100 AS r,
                              timestamptz '2026-01-01' + (i / 8) * interval '1 second' AS created) x,
              LATERAL (SELECT CASE WHEN r < 5 THEN 'pending' WHEN r < 10 THEN 'running'
                                   WHEN r < 25 THEN 'failed' WHEN r < 30 THEN 'cancelled'
                                   ELSE 'completed' END AS status) s",
    )
    .bind(WORKSPACES)
    .bind(ENTITIES)
    .bind(ROWS)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("VACUUM (ANALYZE) entities, builds, deploys")
        .execute(pool)
        .await
        .unwrap();
}

/// Every node of a plan, pre-order.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

fn describe(nodes: &[Value]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{} {}",
                n["Node Type"].as_str().unwrap_or("?"),
                n["Index Name"]
                    .as_str()
                    .or(n["Relation Name"].as_str())
                    .unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

async fn plan(pool: &PgPool, (sql, values): (String, sea_query_sqlx::SqlxValues)) -> Vec<Value> {
    let plan: Value = sqlx::query_scalar_with(&format!("EXPLAIN (FORMAT JSON) {sql}"), values)
        .fetch_one(pool)
        .await
        .unwrap();
    let mut out = Vec::new();
    nodes(&plan[0]["Plan"], &mut out);
    out
}

/// The plan reads `deploys` through one of `indexes` in the requested order
/// (which one is the planner's choice at this size): an
/// (index-only) index scan on it, no Seq Scan of `deploys`, no full Sort
/// (an Incremental Sort of an index's presorted output still streams).
fn assert_ordered_index_scan(what: &str, nodes: &[Value], indexes: &[&str]) {
    let shape = describe(nodes);
    let kind = |n: &Value| n["Node Type"].as_str().unwrap_or("").to_owned();
    assert!(
        nodes.iter().any(|n| {
            matches!(kind(n).as_str(), "Index Scan" | "Index Only Scan")
                && indexes.iter().any(|i| n["Index Name"] == *i)
        }),
        "{what}: expected an index scan using one of {indexes:?}, got {shape}"
    );
    assert!(
        !nodes
            .iter()
            .any(|n| kind(n) == "Seq Scan" && n["Relation Name"] == "deploys"),
        "{what}: Seq Scan on deploys in {shape}"
    );
    assert!(
        !nodes.iter().any(|n| kind(n) == "Sort"),
        "{what}: the order should come from the index, got {shape}"
    );
}

#[tokio::test]
async fn common_orders_in_one_workspace_are_ordered_index_scans() {
    support::with_database(common_orders_in_one_workspace_are_ordered_index_scans_on).await;
}

async fn common_orders_in_one_workspace_are_ordered_index_scans_on(pool: PgPool) {
    load(&pool).await;
    let key: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'cursor_hmac'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let scope = [WorkspaceId::from_str(&ws(1)).unwrap()];
    let raw = |filter: Option<&str>, order_by: Option<&str>| RawListParams {
        filter: filter.map(str::to_owned),
        order_by: order_by.map(str::to_owned),
        ..Default::default()
    };
    let cases = [
        (
            "default order",
            raw(None, None),
            &["deploys_ws_created", "deploys_created"][..],
        ),
        (
            "createdAt asc",
            raw(None, Some(r#"[{"createdAt":"asc"}]"#)),
            &["deploys_ws_created", "deploys_created"],
        ),
        (
            "status filter, createdAt desc",
            raw(
                Some(r#"{"status":{"eq":"failed"}}"#),
                Some(r#"[{"createdAt":"desc"}]"#),
            ),
            &["deploys_ws_status_created", "deploys_status_created"],
        ),
        (
            "status shorthand, default order",
            RawListParams {
                status: Some("failed".into()),
                ..Default::default()
            },
            &["deploys_ws_status_created", "deploys_status_created"],
        ),
        (
            "sequenceNumber desc",
            raw(None, Some(r#"[{"sequenceNumber":"desc"}]"#)),
            &["deploys_ws_sequence"],
        ),
        (
            "one entity, default order",
            RawListParams {
                entity_id: Some(entity(1)),
                ..Default::default()
            },
            &["deploys_entity_created"],
        ),
        (
            "one entity, sequenceNumber asc",
            RawListParams {
                entity_id: Some(entity(1)),
                order_by: Some(r#"[{"sequenceNumber":"asc"}]"#.into()),
                ..Default::default()
            },
            &["deploys_entity_id_sequence_number_key"],
        ),
    ];
    for (what, raw, index) in cases {
        let first = parse_list_params(&raw).unwrap();
        assert_ordered_index_scan(
            what,
            &plan(&pool, page_sql(&scope, &first, &key).unwrap()).await,
            index,
        );

        // a page after a cursor seeks in the same index
        let page = list_deploys(
            &deployd::store::Db::Postgres(pool.clone()),
            &scope,
            &first,
            &key,
        )
        .await
        .unwrap();
        assert!(page.page_info.has_next_page, "{what}: a second page");
        let after = RawListParams {
            after: page.page_info.end_cursor.clone(),
            ..raw.clone()
        };
        let next = parse_list_params(&after).unwrap();
        let what = format!("{what}, after a cursor");
        assert_ordered_index_scan(
            &what,
            &plan(&pool, page_sql(&scope, &next, &key).unwrap()).await,
            index,
        );
    }

    // `total` never reads the table through a Seq Scan either
    let count = plan(
        &pool,
        count_sql(&scope, &parse_list_params(&raw(None, None)).unwrap()),
    )
    .await;
    assert!(
        !count
            .iter()
            .any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "deploys"),
        "count: {}",
        describe(&count)
    );
}
