//! Benchmark of `GET /api/deploys`' list path on a large read model.
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo bench --bench list
//! ```
//!
//! Creates a fresh database `deployd_bench_list_<pid>` on the server of
//! `DEPLOYD_TEST_DATABASE_URL` (default `postgres://root@127.0.0.1:5432/postgres`),
//! migrates it, bulk-loads the read model with `INSERT … SELECT
//! generate_series` (10 workspaces, 1,000 entities, 20 builds each, 3 steps
//! per deploy, mixed statuses, nulls in startedAt/completedAt/error, two
//! deploys of a workspace per createdAt value), `VACUUM (ANALYZE)`s it, then
//! times, for each query and for a scope of one workspace and of all ten:
//!
//! - `list`: `deployd::read_model::list::list_deploys` end to end (count, page, page
//!   flags in one transaction), first page and a deep page (after a cursor
//!   made with `ListRequest::cursor_for` for the row just before it);
//! - `page`: the library's page SQL alone (`deployd::read_model::list::page_sql`);
//! - `hand`: a hand-written SQL query for the same page (row-value keyset);
//! - `offset`: the deep page with `OFFSET` (baseline);
//! - `count`: the library's `total` query and a hand-written `count(*)`.
//!
//! and prints `EXPLAIN (ANALYZE, BUFFERS)` summaries of the page and count
//! queries. The database is dropped at the end.
//!
//! Environment knobs:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DEPLOYD_TEST_DATABASE_URL` | `postgres://root@127.0.0.1:5432/postgres` | the server (its database name is replaced) |
//! | `DEPLOYD_BENCH_ROWS` | `1000000` | deploys to load |
//! | `DEPLOYD_BENCH_DEPTH` | `500000` | rows before the deep page (at most half the matching rows) |
//! | `DEPLOYD_BENCH_ITERS` | `200` | most samples per measurement |
//! | `DEPLOYD_BENCH_MIN_ITERS` | `20` | fewest samples per measurement |
//! | `DEPLOYD_BENCH_BUDGET_MS` | `3000` | time after which a measurement stops (once it has the fewest samples) |
//! | `DEPLOYD_BENCH_KEEP` | unset | `1` keeps the database (its name is printed) |
//! | `DEPLOYD_BENCH_LOAD_ONLY` | unset | `1` loads and stops (with `KEEP`: a database to EXPLAIN by hand) |

#[path = "common/mod.rs"]
mod common;
use common::{knob, loadavg, server_url};

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use deployd::domain::ids::WorkspaceId;
use deployd::read_model::list::{
    count_sql, list_deploys, page_sql, parse_list_params, ListRequest, RawListParams,
};
use deployd::read_model::{DeployRow, DEPLOY_COLUMNS};
use deployd::store::db::{connect_and_migrate, DbOptions};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Executor, PgPool, Postgres, Row};

const WORKSPACES: u32 = 10;
const ENTITIES: u32 = 1000;
const BUILDS_PER_ENTITY: u32 = 20;
const LIMIT: u32 = 100;

fn ws(n: u32) -> String {
    format!("ws_{n:026}")
}

/// How the hand-written query seeks past the cursor row.
#[derive(Clone, Copy)]
enum Seek {
    /// `(created_at, id) < (…)`
    CreatedAtDesc,
    /// `(sequence_number, id) < (…)`
    SequenceDesc,
    /// completedAt descNullsLast, startedAt asc, sequenceNumber asc, id asc
    ThreeKey,
}

struct Case {
    name: &'static str,
    filter: Option<&'static str>,
    order_by: Option<&'static str>,
    /// extra conditions of the hand query (`{scope}` is the scope test on
    /// `workspace_id`, `d` the table)
    hand_where: &'static str,
    hand_order: &'static str,
    seek: Seek,
}

const CASES: &[Case] = &[
    Case {
        name: "default (createdAt desc)",
        filter: None,
        order_by: None,
        hand_where: "",
        hand_order: "d.created_at DESC, d.id DESC",
        seek: Seek::CreatedAtDesc,
    },
    Case {
        name: "status=failed, createdAt desc",
        filter: Some(r#"{"status":{"eq":"failed"}}"#),
        order_by: Some(r#"[{"createdAt":"desc"}]"#),
        hand_where: "AND d.status = 'failed'",
        hand_order: "d.created_at DESC, d.id DESC",
        seek: Seek::CreatedAtDesc,
    },
    Case {
        name: "build.branch=main (relation)",
        filter: Some(r#"{"build":{"branch":{"eq":"main"}}}"#),
        order_by: None,
        hand_where: "AND EXISTS (SELECT 1 FROM builds b WHERE b.id = d.build_id \
                     AND b.workspace_id {scope} AND b.branch = 'main')",
        hand_order: "d.created_at DESC, d.id DESC",
        seek: Seek::CreatedAtDesc,
    },
    Case {
        name: "sequenceNumber desc",
        filter: None,
        order_by: Some(r#"[{"sequenceNumber":"desc"}]"#),
        hand_where: "",
        hand_order: "d.sequence_number DESC, d.id DESC",
        seek: Seek::SequenceDesc,
    },
    Case {
        name: "completedAt descNullsLast, startedAt, seqNo",
        filter: None,
        order_by: Some(
            r#"[{"completedAt":"descNullsLast"},{"startedAt":"asc"},{"sequenceNumber":"asc"}]"#,
        ),
        hand_where: "",
        hand_order: "d.completed_at DESC NULLS LAST, d.started_at ASC NULLS LAST, \
                     d.sequence_number ASC, d.id ASC",
        seek: Seek::ThreeKey,
    },
];

/// Orders only EXPLAINed (the common orders not timed above).
const EXPLAIN_ONLY: &[(&str, Option<&str>, Option<&str>)] = &[
    ("entity_id=…, createdAt desc", None, None),
    (
        "entity_id=…, sequenceNumber asc",
        None,
        Some(r#"[{"sequenceNumber":"asc"}]"#),
    ),
    (
        "status=running, createdAt asc",
        Some(r#"{"status":{"eq":"running"}}"#),
        Some(r#"[{"createdAt":"asc"}]"#),
    ),
];

struct Knobs {
    rows: u64,
    depth: u64,
    iters: usize,
    min_iters: usize,
    budget: Duration,
}

#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p99: f64,
    n: usize,
}

impl Stats {
    fn cell(&self) -> String {
        format!("{:>8.2} {:>8.2}", self.p50, self.p99)
    }
}

/// Runs `f` a few times to warm up, then until `iters` samples or the
/// budget; p50/p99 in milliseconds.
async fn measure<F, Fut>(knobs: &Knobs, mut f: F) -> Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for _ in 0..3 {
        f().await?;
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < knobs.iters
        && (samples.len() < knobs.min_iters || start.elapsed() < knobs.budget)
    {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    Ok(Stats {
        p50: at(0.50),
        p99: at(0.99),
        n,
    })
}

/// A bound value of a hand-written query.
#[derive(Clone)]
enum Arg {
    Texts(Vec<String>),
    Text(String),
    Time(Option<DateTime<Utc>>),
    Int(i64),
}

fn bind_all<'q>(sql: &'q str, args: &[Arg]) -> Query<'q, Postgres, PgArguments> {
    args.iter().fold(sqlx::query(sql), |q, a| match a.clone() {
        Arg::Texts(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Time(v) => q.bind(v),
        Arg::Int(v) => q.bind(v),
    })
}

/// A hand-written query for one page: SQL and its arguments.
fn hand_page(
    case: &Case,
    scope: &[String],
    after: Option<&DeployRow>,
    offset: u64,
    limit: u64,
) -> (String, Vec<Arg>) {
    let columns: Vec<String> = DEPLOY_COLUMNS.iter().map(|c| format!("d.{c}")).collect();
    let (test, scope_arg) = scope_test(scope);
    let mut args = vec![scope_arg];
    let seek = match after {
        None => String::new(),
        Some(row) => match case.seek {
            Seek::CreatedAtDesc => {
                args.push(Arg::Time(Some(row.created_at)));
                args.push(Arg::Text(row.id.to_string()));
                "AND (d.created_at, d.id) < ($2, $3)".to_owned()
            }
            Seek::SequenceDesc => {
                args.push(Arg::Int(row.sequence_number));
                args.push(Arg::Text(row.id.to_string()));
                "AND (d.sequence_number, d.id) < ($2, $3)".to_owned()
            }
            Seek::ThreeKey => {
                args.push(Arg::Time(row.completed_at));
                args.push(Arg::Time(row.started_at));
                args.push(Arg::Int(row.sequence_number));
                args.push(Arg::Text(row.id.to_string()));
                "AND (($2::timestamptz IS NOT NULL AND (d.completed_at < $2 OR d.completed_at IS NULL)) \
                 OR (d.completed_at IS NOT DISTINCT FROM $2 AND ( \
                   ($3::timestamptz IS NOT NULL AND (d.started_at > $3 OR d.started_at IS NULL)) \
                   OR (d.started_at IS NOT DISTINCT FROM $3 AND (d.sequence_number, d.id) > ($4, $5)))))"
                    .to_owned()
            }
        },
    };
    let offset = if offset > 0 {
        format!(" OFFSET {offset}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {} FROM deploys d WHERE d.workspace_id {test} {} {seek} ORDER BY {} LIMIT {limit}{offset}",
        columns.join(", "),
        case.hand_where.replace("{scope}", test),
        case.hand_order,
    );
    (sql, args)
}

fn hand_count(case: &Case, scope: &[String]) -> (String, Vec<Arg>) {
    let (test, scope_arg) = scope_test(scope);
    (
        format!(
            "SELECT count(*) FROM deploys d WHERE d.workspace_id {test} {}",
            case.hand_where.replace("{scope}", test)
        ),
        vec![scope_arg],
    )
}

/// How a person writes the scope: `= $1` for one workspace (`= ANY` of a
/// one-element array would hide the index order from PostgreSQL 15),
/// `= ANY($1)` for several.
fn scope_test(scope: &[String]) -> (&'static str, Arg) {
    match scope {
        [one] => ("= $1", Arg::Text(one.clone())),
        _ => ("= ANY($1)", Arg::Texts(scope.to_vec())),
    }
}

fn request(filter: Option<&str>, order_by: Option<&str>, after: Option<String>) -> ListRequest {
    let raw = RawListParams {
        filter: filter.map(str::to_owned),
        order_by: order_by.map(str::to_owned),
        after,
        ..Default::default()
    };
    parse_list_params(&raw).unwrap_or_else(|e| panic!("bad bench request {raw:?}: {e:?}"))
}

/// One line per plan: the nodes (pre-order) with their index or table,
/// shared buffers, and execution time.
fn summarise(plan: &Value) -> String {
    fn walk(node: &Value, out: &mut Vec<String>) {
        let kind = node["Node Type"].as_str().unwrap_or("?");
        let mut s = kind.to_owned();
        if let Some(index) = node["Index Name"].as_str() {
            s.push_str(&format!(" using {index}"));
        } else if let Some(rel) = node["Relation Name"].as_str() {
            s.push_str(&format!(" on {rel}"));
        }
        if let Some(keys) = node["Sort Key"].as_array() {
            s.push_str(&format!(" ({} keys)", keys.len()));
        }
        out.push(s);
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, out);
        }
    }
    let top = &plan[0];
    let mut nodes = Vec::new();
    walk(&top["Plan"], &mut nodes);
    let hit = top["Plan"]["Shared Hit Blocks"].as_i64().unwrap_or(0);
    let read = top["Plan"]["Shared Read Blocks"].as_i64().unwrap_or(0);
    let seq = nodes.iter().any(|n| n == "Seq Scan on deploys");
    format!(
        "{}{} | buffers hit={hit} read={read} | {:.2} ms",
        if seq { "SEQ SCAN! " } else { "" },
        nodes.join(" > "),
        top["Execution Time"].as_f64().unwrap_or(0.0),
    )
}

async fn explain(
    pool: &PgPool,
    (sql, values): (String, sea_query_sqlx::SqlxValues),
) -> Result<String> {
    let plan: Value = sqlx::query_scalar_with(
        &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
        values,
    )
    .fetch_one(pool)
    .await?;
    Ok(summarise(&plan))
}

async fn load(pool: &PgPool, rows: u64) -> Result<()> {
    let mut conn = pool.acquire().await?;
    conn.execute("SET synchronous_commit = off").await?;
    conn.execute("SET maintenance_work_mem = '512MB'").await?;
    let t = Instant::now();
    sqlx::query(
        "INSERT INTO entities (id, workspace_id, kind, name, default_version_id, auto_deploy, created_at, updated_at)
         SELECT CASE WHEN e % 2 = 0 THEN 'app_' ELSE 'fn_' END || lpad(e::text, 26, '0'),
                'ws_' || lpad((e % $1)::text, 26, '0'),
                CASE WHEN e % 2 = 0 THEN 'app' ELSE 'function' END,
                'entity-' || e,
                'ver_' || lpad(e::text, 26, '0'),
                e % 3 = 0,
                timestamptz '2025-01-01', timestamptz '2025-01-01'
         FROM generate_series(0, $2 - 1) e",
    )
    .bind(WORKSPACES as i32)
    .bind(ENTITIES as i32)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO builds (id, workspace_id, entity_id, version_id, status, artifact_dir,
                             commit_sha, branch, error, source_event_id, created_at)
         SELECT 'bld_' || lpad(b::text, 26, '0'),
                'ws_' || lpad((e % $1)::text, 26, '0'),
                CASE WHEN e % 2 = 0 THEN 'app_' ELSE 'fn_' END || lpad(e::text, 26, '0'),
                'ver_' || lpad(e::text, 26, '0'),
                CASE WHEN k % 10 = 9 THEN 'failed' ELSE 'succeeded' END,
                CASE WHEN k % 10 = 9 THEN NULL ELSE 'artifacts/' || b END,
                md5(b::text) || substr(md5(b::text || 'x'), 1, 8),
                (ARRAY['main', 'main', 'dev', 'feature/x'])[k % 4 + 1],
                CASE WHEN k % 10 = 9 THEN 'compile error' END,
                'evt_' || lpad(b::text, 26, '0'),
                timestamptz '2025-06-01' + b * interval '1 minute'
         FROM generate_series(0, $2 * $3 - 1) b,
              LATERAL (SELECT b / $3 AS e, b % $3 AS k) x",
    )
    .bind(WORKSPACES as i32)
    .bind(ENTITIES as i32)
    .bind(BUILDS_PER_ENTITY as i32)
    .execute(&mut *conn)
    .await?;
    // deploy i: entity i % 1000 (so workspace i % 10), number i / 1000 + 1,
    // createdAt shared by 20 consecutive deploys (2 per workspace), ids
    // time-ordered with a random tail (like ULIDs), so ties break randomly.
    sqlx::query(
        "INSERT INTO deploys (id, workspace_id, entity_id, sequence_number, build_id, status, trigger,
                              source_event_id, production_url, preview_url, error, metadata, created_by,
                              started_at, completed_at, created_at, event_sequence)
         SELECT 'dep_' || lpad(upper(to_hex(i / 20)), 10, '0') || upper(substr(md5(i::text), 1, 16)),
                'ws_' || lpad((e % $1)::text, 26, '0'),
                CASE WHEN e % 2 = 0 THEN 'app_' ELSE 'fn_' END || lpad(e::text, 26, '0'),
                i / $2 + 1,
                'bld_' || lpad((e * $3 + (i / $2) % $3)::text, 26, '0'),
                status,
                (ARRAY['auto', 'manual', 'rollback'])[r % 3 + 1],
                CASE WHEN r % 3 = 0 THEN 'evt_' || lpad(i::text, 26, '0') END,
                CASE WHEN status = 'completed' THEN 'https://e' || e || '.example.app' END,
                CASE WHEN status <> 'pending' THEN 'https://d' || i || '.preview.example.app' END,
                CASE WHEN status = 'failed' THEN 'step upload failed: code ' || r END,
                CASE WHEN r % 4 = 0 THEN jsonb_build_object('pr', i % 500) ELSE '{}'::jsonb END,
                (ARRAY['alice', 'bob', 'carol', 'ci'])[r % 4 + 1],
                CASE WHEN status = 'pending' OR (status = 'cancelled' AND r % 2 = 0) THEN NULL
                     ELSE created + interval '5 seconds' END,
                CASE WHEN status IN ('pending', 'running') OR (status = 'cancelled' AND r % 2 = 0) THEN NULL
                     ELSE created + (30 + r) * interval '1 second' END,
                created,
                CASE status WHEN 'pending' THEN 1 WHEN 'running' THEN 2 ELSE 4 END
         FROM generate_series(0, $4 - 1) i,
              LATERAL (SELECT i % $2 AS e,
                              abs(hashint8(i)) % 100 AS r,
                              timestamptz '2026-01-01' + (i / 20) * interval '1 second' AS created) x,
              LATERAL (SELECT CASE WHEN r < 5 THEN 'pending' WHEN r < 10 THEN 'running'
                                   WHEN r < 25 THEN 'failed' WHEN r < 30 THEN 'cancelled'
                                   ELSE 'completed' END AS status) s",
    )
    .bind(WORKSPACES as i64)
    .bind(ENTITIES as i64)
    .bind(BUILDS_PER_ENTITY as i64)
    .bind(rows as i64)
    .execute(&mut *conn)
    .await?;
    println!(
        "loaded {rows} deploys in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The foreign key is checked by construction; skip its per-row trigger
    // when we may (superuser).
    let replica = conn
        .execute("SET session_replication_role = replica")
        .await
        .is_ok();
    let t = Instant::now();
    conn.execute(
        "INSERT INTO deploy_steps (deploy_id, ordinal, name, status, started_at, completed_at, error)
         SELECT d.id, o, (ARRAY['build', 'upload', 'activate'])[o],
                CASE d.status
                    WHEN 'completed' THEN 'completed'
                    WHEN 'pending' THEN 'pending'
                    WHEN 'cancelled' THEN 'skipped'
                    WHEN 'failed' THEN CASE WHEN o < 3 THEN 'completed' ELSE 'failed' END
                    ELSE CASE WHEN o = 1 THEN 'completed' WHEN o = 2 THEN 'running' ELSE 'pending' END
                END,
                CASE WHEN d.started_at IS NOT NULL THEN d.started_at + o * interval '1 second' END,
                CASE WHEN d.completed_at IS NOT NULL THEN d.completed_at END,
                CASE WHEN d.status = 'failed' AND o = 3 THEN d.error END
         FROM deploys d, generate_series(1, 3) o",
    )
    .await?;
    if replica {
        conn.execute("SET session_replication_role = DEFAULT")
            .await?;
    }
    println!(
        "loaded {} steps in {:.1} s",
        rows * 3,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    // VACUUM sets the visibility map, so counts can be index-only scans.
    conn.execute("VACUUM (ANALYZE) entities, builds, deploys, deploy_steps")
        .await?;
    println!("VACUUM (ANALYZE) in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

struct Line {
    label: String,
    list: Stats,
    page: Stats,
    hand: Stats,
    count: Stats,
    deep_over_first: Option<(f64, f64)>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let knobs = Knobs {
        rows: knob::<u64>("DEPLOYD_BENCH_ROWS", 1_000_000),
        depth: knob::<u64>("DEPLOYD_BENCH_DEPTH", 500_000),
        iters: knob::<u64>("DEPLOYD_BENCH_ITERS", 200) as usize,
        min_iters: knob::<u64>("DEPLOYD_BENCH_MIN_ITERS", 20) as usize,
        budget: Duration::from_millis(knob::<u64>("DEPLOYD_BENCH_BUDGET_MS", 3000)),
    };
    if knobs.rows < 2000 {
        bail!("DEPLOYD_BENCH_ROWS must be at least 2000");
    }
    let mut url = url::Url::parse(&server_url()).context("DEPLOYD_TEST_DATABASE_URL")?;
    let name = format!("deployd_bench_list_{}", std::process::id());
    url.set_path(&name);
    let options = DbOptions {
        max_connections: 2,
        statement_timeout: Duration::ZERO,
    };
    let pool = connect_and_migrate(url.as_str(), &options).await?;
    println!("database {name}");
    let result = run(&pool, &knobs).await;
    pool.close().await;
    if std::env::var("DEPLOYD_BENCH_KEEP").as_deref() != Ok("1") {
        let mut admin = url.clone();
        admin.set_path("postgres");
        let admin = deployd::store::db::connect(admin.as_str(), &DbOptions::default()).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await?;
        println!("dropped {name}");
    }
    result
}

async fn run(pool: &PgPool, knobs: &Knobs) -> Result<()> {
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await?;
    println!(
        "PostgreSQL {version}; {} CPUs; rows={} depth={} iters={}..{} budget={:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        knobs.rows,
        knobs.depth,
        knobs.min_iters,
        knobs.iters,
        knobs.budget
    );
    load(pool, knobs.rows).await?;
    let load_before = loadavg();
    if std::env::var("DEPLOYD_BENCH_LOAD_ONLY").as_deref() == Ok("1") {
        return Ok(());
    }
    let key: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'cursor_hmac'")
            .fetch_one(pool)
            .await?;

    let all: Vec<String> = (0..WORKSPACES).map(ws).collect();
    let scopes: Vec<(&str, Vec<String>)> = vec![("1 ws", vec![ws(0)]), ("10 ws", all)];

    let mut lines: Vec<Line> = Vec::new();
    let mut offsets: Vec<(String, Stats, Stats)> = Vec::new();
    let mut totals: Vec<(String, i64, Stats, Stats)> = Vec::new();
    let mut plans: Vec<(String, String)> = Vec::new();

    for case in CASES {
        for (scope_name, scope) in &scopes {
            let scope_ids: Vec<WorkspaceId> = scope
                .iter()
                .map(|s| WorkspaceId::from_str(s))
                .collect::<Result<_, _>>()?;
            let label = format!("{} [{scope_name}]", case.name);
            eprintln!("measuring {label}");

            // total
            let first = request(case.filter, case.order_by, None);
            let (hq, ha) = hand_count(case, scope);
            let total: i64 = bind_all(&hq, &ha).fetch_one(pool).await?.get(0);
            let lib_count = count_sql(&scope_ids, &first);
            let lib_total: i64 = sqlx::query_scalar_with(&lib_count.0, lib_count.1.clone())
                .fetch_one(pool)
                .await?;
            if lib_total != total {
                bail!("{label}: library total {lib_total} != hand count {total}");
            }
            let count = measure(knobs, || async {
                let (q, v) = count_sql(&scope_ids, &first);
                sqlx::query_scalar_with::<_, i64, _>(&q, v)
                    .fetch_one(pool)
                    .await?;
                Ok(())
            })
            .await?;
            let hand_count_stats = measure(knobs, || async {
                bind_all(&hq, &ha).fetch_one(pool).await?;
                Ok(())
            })
            .await?;
            totals.push((label.clone(), total, count, hand_count_stats));
            plans.push((
                format!("{label} count"),
                explain(pool, count_sql(&scope_ids, &first)).await?,
            ));

            // the deep page: rows [depth, depth + LIMIT), after the row at depth - 1
            let depth = knobs.depth.min((total as u64 / 2) / 100 * 100).max(100);
            let (cq, ca) = hand_page(case, scope, None, depth - 1, 1);
            let before_row: DeployRow = sqlx::query_as_with(&cq, Arg::arguments(&ca)?)
                .fetch_one(pool)
                .await?;
            let deep = request(
                case.filter,
                case.order_by,
                Some(first.cursor_for(&before_row, &key)),
            );

            let db = deployd::store::Db::Postgres(pool.clone());
            let mut first_stats: Option<(Stats, Stats)> = None;
            for (page_name, req, after) in
                [("first", &first, None), ("deep", &deep, Some(&before_row))]
            {
                let (hq, ha) = hand_page(case, scope, after, 0, u64::from(LIMIT) + 1);
                // same rows from the library and by hand
                let lib = list_deploys(&db, &scope_ids, req, &key).await?;
                let hand: Vec<String> = bind_all(&hq, &ha)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
                let lib_ids: Vec<String> = lib.data.iter().map(|r| r.id.to_string()).collect();
                if lib_ids.iter().ne(hand.iter().take(LIMIT as usize)) {
                    bail!("{label} {page_name}: library and hand SQL pages differ");
                }
                if lib.page_info.total != total {
                    bail!("{label} {page_name}: total {}", lib.page_info.total);
                }
                let list = measure(knobs, || async {
                    list_deploys(&db, &scope_ids, req, &key).await?;
                    Ok(())
                })
                .await?;
                let page = measure(knobs, || async {
                    let (q, v) = page_sql(&scope_ids, req, &key)?;
                    sqlx::query_with(&q, v).fetch_all(pool).await?;
                    Ok(())
                })
                .await?;
                let hand_stats = measure(knobs, || async {
                    bind_all(&hq, &ha).fetch_all(pool).await?;
                    Ok(())
                })
                .await?;
                plans.push((
                    format!("{label} {page_name} page"),
                    explain(pool, page_sql(&scope_ids, req, &key)?).await?,
                ));
                let deep_over_first =
                    first_stats.map(|(l, p)| (list.p50 / l.p50, page.p50 / p.p50));
                if first_stats.is_none() {
                    first_stats = Some((list, page));
                }
                let page_label = if after.is_some() {
                    format!("deep@{depth}")
                } else {
                    "first".to_owned()
                };
                lines.push(Line {
                    label: format!("{label} {page_label}"),
                    list,
                    page,
                    hand: hand_stats,
                    count: hand_count_stats,
                    deep_over_first,
                });

                if after.is_some() {
                    let (oq, oa) = hand_page(case, scope, None, depth, u64::from(LIMIT) + 1);
                    let offset_ids: Vec<String> = bind_all(&oq, &oa)
                        .fetch_all(pool)
                        .await?
                        .iter()
                        .map(|r| r.get::<String, _>(0))
                        .collect();
                    if offset_ids != hand {
                        bail!("{label}: OFFSET page differs from the keyset page");
                    }
                    let offset = measure(knobs, || async {
                        bind_all(&oq, &oa).fetch_all(pool).await?;
                        Ok(())
                    })
                    .await?;
                    offsets.push((format!("{label} deep@{depth}"), offset, hand_stats));
                }
            }
        }
    }

    for (name, filter, order_by) in EXPLAIN_ONLY {
        let entity = "app_00000000000000000000000000".to_owned();
        let raw = RawListParams {
            filter: filter.map(str::to_owned),
            order_by: order_by.map(str::to_owned),
            entity_id: name.starts_with("entity").then_some(entity),
            ..Default::default()
        };
        let req = parse_list_params(&raw).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (scope_name, scope) in &scopes {
            let scope_ids: Vec<WorkspaceId> = scope
                .iter()
                .map(|s| WorkspaceId::from_str(s))
                .collect::<Result<_, _>>()?;
            plans.push((
                format!("{name} [{scope_name}] first page"),
                explain(pool, page_sql(&scope_ids, &req, &key)?).await?,
            ));
        }
    }

    println!();
    println!("Latency in ms (p50 p99), limit {LIMIT}. list = list_deploys end to end (total + page + flags);");
    println!("page = the library's page SQL alone; hand = hand-written SQL for the same page;");
    println!("list/hand = list p50 / (hand page p50 + hand count p50); deep/first = p50 ratio (list, page).");
    println!();
    println!(
        "{:<58} {:>17} {:>17} {:>17} {:>9} {:>9} {:>13}",
        "query [scope] page",
        "list p50 p99",
        "page p50 p99",
        "hand p50 p99",
        "page/hand",
        "list/hand",
        "deep/first"
    );
    for l in &lines {
        let deep = l
            .deep_over_first
            .map_or(String::new(), |(a, b)| format!("{a:.2} {b:.2}"));
        println!(
            "{:<58} {} {} {} {:>9.2} {:>9.2} {:>13}",
            l.label,
            l.list.cell(),
            l.page.cell(),
            l.hand.cell(),
            l.page.p50 / l.hand.p50,
            l.list.p50 / (l.hand.p50 + l.count.p50),
            deep,
        );
    }
    println!();
    println!("Deep page with OFFSET (hand SQL) against the keyset page (hand SQL):");
    println!(
        "{:<58} {:>17} {:>17} {:>13}",
        "query [scope] page", "OFFSET p50 p99", "keyset p50 p99", "OFFSET/keyset"
    );
    for (label, offset, keyset) in &offsets {
        println!(
            "{label:<58} {} {} {:>13.1}",
            offset.cell(),
            keyset.cell(),
            offset.p50 / keyset.p50
        );
    }
    println!();
    println!("total (exact count):");
    println!(
        "{:<52} {:>9} {:>17} {:>17} {:>9}",
        "query [scope]", "total", "lib p50 p99", "hand p50 p99", "lib/hand"
    );
    for (label, total, lib, hand) in &totals {
        println!(
            "{label:<52} {total:>9} {} {} {:>9.2}",
            lib.cell(),
            hand.cell(),
            lib.p50 / hand.p50
        );
    }
    println!();
    println!("EXPLAIN (ANALYZE, BUFFERS) of the library's SQL:");
    for (label, plan) in &plans {
        println!("  {label}: {plan}");
    }
    let n: usize = lines.iter().map(|l| l.list.n).sum();
    println!();
    println!(
        "({n} list samples in all; load average before: {load_before}, after: {})",
        loadavg()
    );
    Ok(())
}

impl Arg {
    /// The arguments as one `PgArguments`.
    fn arguments(args: &[Arg]) -> Result<PgArguments> {
        use sqlx::Arguments;
        let mut out = PgArguments::default();
        for a in args.iter().cloned() {
            match a {
                Arg::Texts(v) => out.add(v),
                Arg::Text(v) => out.add(v),
                Arg::Time(v) => out.add(v),
                Arg::Int(v) => out.add(v),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(out)
    }
}
