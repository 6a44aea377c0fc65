//! Property test of `GET /api/deploys`' query language against PostgreSQL:
//! random read models (two workspaces, nulls and ties everywhere), random
//! filters over every field, relation and operator, random multi-key orders
//! and page sizes. Every list is walked forward and then backward, and
//! compared page by page with an in-memory oracle that evaluates the same
//! filter and order in Rust (byte-order strings, SQL three-valued logic).
//!
//! Cases come from proptest strategies drawn with a `TestRunner` inside the
//! async sqlx test (so no shrinking: a failure prints its case).

use crate::support;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use deployd::domain::ids::WorkspaceId;
use deployd::read_model::list::{list_deploys, parse_list_params, ListPage, RawListParams};
use deployd::store::Db;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use std::cmp::Ordering;

const CASES: u32 = 32;
const QUERIES_PER_CASE: usize = 10;

// ---------------------------------------------------------------------------
// Value pools shared by data and filters, so that filters do match
// ---------------------------------------------------------------------------

const TEXTS: &[&str] = &[
    "", "a", "A", "ab", "aB", "b", "a%", "a_b", "x\\y", "%", "_", "é", "É", "Z", "ab%c",
];
const INTS: &[i64] = &[-1, 0, 1, 2, 3, 10, 11];
/// Microseconds after 2026-01-01T00:00:00Z.
const TIMES: &[i64] = &[0, 1, 2, 999_999, 1_000_000, 86_400_000_000];
const DEPLOY_STATUSES: &[&str] = &["pending", "running", "completed", "failed", "cancelled"];
const TRIGGERS: &[&str] = &["auto", "manual", "rollback"];
const STEP_STATUSES: &[&str] = &[
    "pending",
    "running",
    "completed",
    "failed",
    "discarded",
    "skipped",
];
const BUILD_STATUSES: &[&str] = &["succeeded", "failed"];
const KINDS: &[&str] = &["app", "function"];
const METADATA: &[&str] = &[
    r#"{}"#,
    r#"{"env":"prod"}"#,
    r#"{"env":"dev","n":1}"#,
    r#"{"env":"prod","n":2,"tags":["a","b"]}"#,
    r#"{"tags":["b"]}"#,
    r#"{"nested":{"k":"v","x":1}}"#,
];
const CONTAINS: &[&str] = &[
    r#"{}"#,
    r#"{"env":"prod"}"#,
    r#"{"n":1}"#,
    r#"{"tags":["a"]}"#,
    r#"{"nested":{"k":"v"}}"#,
    r#"{"env":"prod","n":2}"#,
];
const KEYS: &[&str] = &["env", "n", "tags", "nested", "missing"];

fn ws(n: u32) -> String {
    format!("ws_{n:026}")
}
fn ws_a() -> String {
    ws(1)
}
fn entity_id(n: usize) -> String {
    let prefix = if n.is_multiple_of(2) { "app" } else { "fn" };
    format!("{prefix}_{n:026}")
}
fn build_id(n: usize) -> String {
    format!("bld_{n:026}")
}
fn version_id(n: usize) -> String {
    format!("ver_{n:026}")
}
fn deploy_id(n: usize) -> String {
    format!("dep_{n:026}")
}
fn time(micros: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::microseconds(micros)
}

/// Entities 0..3 (3 is in the other workspace); builds 0..4 exist (3 is in
/// the other workspace), build 4 is referenced but has no row.
const ENTITIES: usize = 4;
const BUILDS: usize = 4;
const BUILD_REFS: usize = 5;
const DEPLOY_IDS: usize = 60;

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Deploy {
    id: String,
    workspace_id: String,
    entity_id: String,
    sequence_number: i64,
    build_id: String,
    status: String,
    trigger: String,
    source_event_id: Option<String>,
    production_url: Option<String>,
    preview_url: Option<String>,
    error: Option<String>,
    metadata: Value,
    created_by: String,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Step {
    name: String,
    status: String,
    error: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Build {
    id: String,
    workspace_id: String,
    entity_id: String,
    version_id: String,
    status: String,
    artifact_dir: Option<String>,
    commit_sha: Option<String>,
    branch: Option<String>,
    error: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Entity {
    id: String,
    workspace_id: String,
    kind: String,
    name: String,
    default_version_id: Option<String>,
    auto_deploy: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct World {
    deploys: Vec<Deploy>,
    builds: Vec<Build>,
    entities: Vec<Entity>,
}

fn text() -> impl Strategy<Value = String> {
    select(TEXTS).prop_map(str::to_owned)
}
fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.6, text())
}
fn at() -> impl Strategy<Value = DateTime<Utc>> {
    select(TIMES).prop_map(time)
}
fn opt_at() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::weighted(0.6, at())
}
fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(pool).prop_map(str::to_owned)
}

fn step() -> impl Strategy<Value = Step> {
    (text(), pick(STEP_STATUSES), opt_text(), opt_at(), opt_at()).prop_map(
        |(name, status, error, started_at, completed_at)| Step {
            name,
            status,
            error,
            started_at,
            completed_at,
        },
    )
}

fn deploy() -> impl Strategy<Value = Deploy> {
    let head = (
        select(vec![1u32, 1, 1, 2]),
        0..ENTITIES,
        0i64..4,
        0..BUILD_REFS,
        pick(DEPLOY_STATUSES),
        pick(TRIGGERS),
        0..DEPLOY_IDS,
    );
    let middle = (
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        select(METADATA),
        text(),
    );
    // few created_at values: ties are the point
    let tail = (
        opt_at(),
        opt_at(),
        select(&TIMES[..3]).prop_map(time),
        vec(step(), 0..3),
    );
    (head, middle, tail).prop_map(|(h, m, t)| Deploy {
        id: deploy_id(h.6),
        workspace_id: ws(h.0),
        entity_id: entity_id(h.1),
        sequence_number: h.2,
        build_id: build_id(h.3),
        status: h.4,
        trigger: h.5,
        source_event_id: m.0,
        production_url: m.1,
        preview_url: m.2,
        error: m.3,
        metadata: serde_json::from_str(m.4).unwrap(),
        created_by: m.5,
        started_at: t.0,
        completed_at: t.1,
        created_at: t.2,
        steps: t.3,
    })
}

fn world() -> impl Strategy<Value = World> {
    let build = (
        0..ENTITIES,
        0..2usize,
        pick(BUILD_STATUSES),
        opt_text(),
        opt_text(),
        opt_text(),
        opt_text(),
        at(),
    );
    let entity = (
        pick(KINDS),
        text(),
        prop::option::weighted(0.6, 0..2usize),
        any::<bool>(),
        at(),
        at(),
    );
    (
        vec(deploy(), 0..25),
        vec(build, BUILDS),
        vec(entity, ENTITIES),
    )
        .prop_map(|(mut deploys, builds, entities)| {
            // ids unique, (entity, sequence) unique
            let mut ids = std::collections::HashSet::new();
            let mut seqs = std::collections::HashSet::new();
            for (i, d) in deploys.iter_mut().enumerate() {
                let mut n = d.id[4..].parse::<usize>().unwrap();
                while !ids.insert(n) {
                    n = (n + 7 + i) % 1000;
                }
                d.id = deploy_id(n);
                while !seqs.insert((d.entity_id.clone(), d.sequence_number)) {
                    d.sequence_number += 10;
                }
            }
            let builds = builds
                .into_iter()
                .enumerate()
                .map(|(i, b)| Build {
                    id: build_id(i),
                    workspace_id: ws(if i == 3 { 2 } else { 1 }),
                    entity_id: entity_id(b.0),
                    version_id: version_id(b.1),
                    status: b.2,
                    artifact_dir: b.3,
                    commit_sha: b.4,
                    branch: b.5,
                    error: b.6,
                    created_at: b.7,
                })
                .collect();
            let entities = entities
                .into_iter()
                .enumerate()
                .map(|(i, e)| Entity {
                    id: entity_id(i),
                    workspace_id: ws(if i == 3 { 2 } else { 1 }),
                    // the kind the id's prefix says
                    kind: (if i % 2 == 0 { "app" } else { "function" }).to_owned(),
                    name: e.1,
                    default_version_id: e.2.map(version_id),
                    auto_deploy: e.3,
                    created_at: e.4,
                    updated_at: e.5,
                })
                .collect();
            World {
                deploys,
                builds,
                entities,
            }
        })
}

async fn load(pool: &Db, w: &World) {
    for table in ["deploy_steps", "deploys", "builds", "entities"] {
        deployd::on_writer!(pool.writer().await, p => sqlx::query(&format!("DELETE FROM {table}"))
            .execute(p)
            .await
            .unwrap()
            .rows_affected());
    }
    for e in &w.entities {
        deployd::on_writer!(pool.writer().await, p => sqlx::query(
            "INSERT INTO entities (id, workspace_id, kind, name, default_version_id, auto_deploy, \
                                   created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
            .bind(&e.id)
            .bind(&e.workspace_id)
            .bind(&e.kind)
            .bind(&e.name)
            .bind(&e.default_version_id)
            .bind(e.auto_deploy)
            .bind(e.created_at)
            .bind(e.updated_at)
            .execute(p)
            .await
            .unwrap()
            .rows_affected());
    }
    for b in &w.builds {
        deployd::on_writer!(pool.writer().await, p => sqlx::query(
            "INSERT INTO builds (id, workspace_id, entity_id, version_id, status, artifact_dir,
                commit_sha, branch, error, source_event_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'evt_x', $10)",
        )
        .bind(&b.id)
        .bind(&b.workspace_id)
        .bind(&b.entity_id)
        .bind(&b.version_id)
        .bind(&b.status)
        .bind(&b.artifact_dir)
        .bind(&b.commit_sha)
        .bind(&b.branch)
        .bind(&b.error)
        .bind(b.created_at)
        .execute(p)
        .await
        .unwrap()
            .rows_affected());
    }
    for d in &w.deploys {
        deployd::on_writer!(pool.writer().await, p => sqlx::query(
            "INSERT INTO deploys (id, workspace_id, entity_id, sequence_number, build_id, status,
                trigger, source_event_id, production_url, preview_url, error, metadata, created_by,
                started_at, completed_at, created_at, event_sequence)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 1)",
        )
        .bind(&d.id)
        .bind(&d.workspace_id)
        .bind(&d.entity_id)
        .bind(d.sequence_number)
        .bind(&d.build_id)
        .bind(&d.status)
        .bind(&d.trigger)
        .bind(&d.source_event_id)
        .bind(&d.production_url)
        .bind(&d.preview_url)
        .bind(&d.error)
        .bind(&d.metadata)
        .bind(&d.created_by)
        .bind(d.started_at)
        .bind(d.completed_at)
        .bind(d.created_at)
        .execute(p)
        .await
        .unwrap()
            .rows_affected());
        for (i, s) in d.steps.iter().enumerate() {
            deployd::on_writer!(pool.writer().await, p => sqlx::query("INSERT INTO deploy_steps VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&d.id)
                .bind(i as i32)
                .bind(&s.name)
                .bind(&s.status)
                .bind(s.started_at)
                .bind(s.completed_at)
                .bind(&s.error)
                .execute(p)
                .await
                .unwrap()
            .rows_affected());
        }
    }
}

// ---------------------------------------------------------------------------
// Fields, as the oracle sees them
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Ty {
    Text,
    DeployId,
    WorkspaceId,
    EntityId,
    BuildId,
    VersionId,
    Int,
    Time,
    Bool,
    Enum(&'static [&'static str]),
    Json,
}

const DEPLOY_FIELDS: &[(&str, Ty)] = &[
    ("id", Ty::DeployId),
    ("workspaceId", Ty::WorkspaceId),
    ("entityId", Ty::EntityId),
    ("sequenceNumber", Ty::Int),
    ("buildId", Ty::BuildId),
    ("status", Ty::Enum(DEPLOY_STATUSES)),
    ("trigger", Ty::Enum(TRIGGERS)),
    ("sourceEventId", Ty::Text),
    ("productionUrl", Ty::Text),
    ("previewUrl", Ty::Text),
    ("error", Ty::Text),
    ("metadata", Ty::Json),
    ("createdBy", Ty::Text),
    ("startedAt", Ty::Time),
    ("completedAt", Ty::Time),
    ("createdAt", Ty::Time),
];
const BUILD_FIELDS: &[(&str, Ty)] = &[
    ("id", Ty::BuildId),
    ("status", Ty::Enum(BUILD_STATUSES)),
    ("branch", Ty::Text),
    ("commitSha", Ty::Text),
    ("versionId", Ty::VersionId),
    ("entityId", Ty::EntityId),
    ("createdAt", Ty::Time),
    ("error", Ty::Text),
    ("artifactDir", Ty::Text),
];
const ENTITY_FIELDS: &[(&str, Ty)] = &[
    ("id", Ty::EntityId),
    ("kind", Ty::Enum(KINDS)),
    ("name", Ty::Text),
    ("defaultVersionId", Ty::VersionId),
    ("autoDeploy", Ty::Bool),
    ("createdAt", Ty::Time),
    ("updatedAt", Ty::Time),
];
const STEP_FIELDS: &[(&str, Ty)] = &[
    ("name", Ty::Text),
    ("status", Ty::Enum(STEP_STATUSES)),
    ("error", Ty::Text),
    ("startedAt", Ty::Time),
    ("completedAt", Ty::Time),
];

/// A field's value in a record.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
    Bool(bool),
    Json(Value),
}

fn t(s: &str) -> V {
    V::Text(s.to_owned())
}
fn ot(s: &Option<String>) -> V {
    s.as_deref().map_or(V::Null, t)
}
fn otime(x: &Option<DateTime<Utc>>) -> V {
    x.map_or(V::Null, V::Time)
}

fn deploy_field(d: &Deploy, f: &str) -> V {
    match f {
        "id" => t(&d.id),
        "workspaceId" => t(&d.workspace_id),
        "entityId" => t(&d.entity_id),
        "sequenceNumber" => V::Int(d.sequence_number),
        "buildId" => t(&d.build_id),
        "status" => t(&d.status),
        "trigger" => t(&d.trigger),
        "sourceEventId" => ot(&d.source_event_id),
        "productionUrl" => ot(&d.production_url),
        "previewUrl" => ot(&d.preview_url),
        "error" => ot(&d.error),
        "metadata" => V::Json(d.metadata.clone()),
        "createdBy" => t(&d.created_by),
        "startedAt" => otime(&d.started_at),
        "completedAt" => otime(&d.completed_at),
        "createdAt" => V::Time(d.created_at),
        _ => unreachable!("{f}"),
    }
}

fn build_field(b: &Build, f: &str) -> V {
    match f {
        "id" => t(&b.id),
        "status" => t(&b.status),
        "branch" => ot(&b.branch),
        "commitSha" => ot(&b.commit_sha),
        "versionId" => t(&b.version_id),
        "entityId" => t(&b.entity_id),
        "createdAt" => V::Time(b.created_at),
        "error" => ot(&b.error),
        "artifactDir" => ot(&b.artifact_dir),
        _ => unreachable!("{f}"),
    }
}

fn entity_field(e: &Entity, f: &str) -> V {
    match f {
        "id" => t(&e.id),
        "kind" => t(&e.kind),
        "name" => t(&e.name),
        "defaultVersionId" => ot(&e.default_version_id),
        "autoDeploy" => V::Bool(e.auto_deploy),
        "createdAt" => V::Time(e.created_at),
        "updatedAt" => V::Time(e.updated_at),
        _ => unreachable!("{f}"),
    }
}

fn step_field(s: &Step, f: &str) -> V {
    match f {
        "name" => t(&s.name),
        "status" => t(&s.status),
        "error" => ot(&s.error),
        "startedAt" => otime(&s.started_at),
        "completedAt" => otime(&s.completed_at),
        _ => unreachable!("{f}"),
    }
}

// ---------------------------------------------------------------------------
// Filters: generated, rendered to JSON, evaluated by the oracle
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Deploy,
    Build,
    Entity,
    Step,
}

impl Level {
    fn fields(self) -> &'static [(&'static str, Ty)] {
        match self {
            Level::Deploy => DEPLOY_FIELDS,
            Level::Build => BUILD_FIELDS,
            Level::Entity => ENTITY_FIELDS,
            Level::Step => STEP_FIELDS,
        }
    }
}

#[derive(Debug, Clone)]
enum G {
    All(Vec<G>),
    Any(Vec<G>),
    Not(Box<G>),
    Leaf {
        field: &'static str,
        ty: Ty,
        op: &'static str,
        arg: Value,
    },
    /// `build`, `entity`, or `steps.some|every|none`
    Rel(&'static str, Box<G>),
}

const SCALAR_OPS: &[&str] = &["eq", "neq", "in", "nin", "lt", "lte", "gt", "gte", "null"];
const TEXT_OPS: &[&str] = &[
    "eq",
    "neq",
    "in",
    "nin",
    "lt",
    "lte",
    "gt",
    "gte",
    "null",
    "contains",
    "notContains",
    "startsWith",
    "endsWith",
    "containsIgnoreCase",
];

fn ops(ty: Ty) -> &'static [&'static str] {
    match ty {
        Ty::Text | Ty::DeployId | Ty::WorkspaceId | Ty::EntityId | Ty::BuildId | Ty::VersionId => {
            TEXT_OPS
        }
        Ty::Json => &["contains", "hasKey"],
        _ => SCALAR_OPS,
    }
}

/// A value of the type, from a seed.
fn sample(ty: Ty, seed: usize) -> Value {
    match ty {
        Ty::Text => json!(TEXTS[seed % TEXTS.len()]),
        Ty::DeployId => json!(deploy_id(seed % DEPLOY_IDS)),
        Ty::WorkspaceId => json!(ws(1 + (seed % 2) as u32)),
        Ty::EntityId => json!(entity_id(seed % ENTITIES)),
        Ty::BuildId => json!(build_id(seed % BUILD_REFS)),
        Ty::VersionId => json!(version_id(seed % 2)),
        Ty::Int => json!(INTS[seed % INTS.len()]),
        Ty::Time => {
            let at = time(TIMES[seed % TIMES.len()]);
            // the same instant, sometimes with another offset
            let text = if seed.is_multiple_of(2) {
                at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            } else {
                at.with_timezone(&FixedOffset::east_opt(2 * 3600).unwrap())
                    .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
                    .to_string()
            };
            json!(text)
        }
        Ty::Bool => json!(seed.is_multiple_of(2)),
        Ty::Enum(values) => json!(values[seed % values.len()]),
        Ty::Json => unreachable!(),
    }
}

fn leaf(level: Level) -> impl Strategy<Value = G> {
    let fields = level.fields();
    (0..fields.len(), 0..100usize, vec(0..1000usize, 0..4)).prop_map(move |(f, o, seeds)| {
        let (field, ty) = fields[f];
        let ops = ops(ty);
        let op = ops[o % ops.len()];
        let first = seeds.first().copied().unwrap_or(o);
        let arg = match op {
            "in" | "nin" => Value::Array(seeds.iter().map(|s| sample(ty, *s)).collect()),
            "null" => json!(first % 2 == 0),
            "contains" if matches!(ty, Ty::Json) => {
                serde_json::from_str(CONTAINS[first % CONTAINS.len()]).unwrap()
            }
            "hasKey" => json!(KEYS[first % KEYS.len()]),
            _ => sample(ty, first),
        };
        G::Leaf { field, ty, op, arg }
    })
}

fn logic(level: Level, depth: u32) -> impl Strategy<Value = G> {
    leaf(level).prop_recursive(depth, 12, 3, |inner| {
        prop_oneof![
            2 => vec(inner.clone(), 0..3).prop_map(G::All),
            2 => vec(inner.clone(), 1..3).prop_map(G::Any),
            2 => inner.prop_map(|g| G::Not(Box::new(g))),
        ]
    })
}

fn deploy_filter() -> impl Strategy<Value = G> {
    let rel = prop_oneof![
        logic(Level::Build, 2).prop_map(|g| G::Rel("build", Box::new(g))),
        logic(Level::Entity, 2).prop_map(|g| G::Rel("entity", Box::new(g))),
        (select(vec!["some", "every", "none"]), logic(Level::Step, 2))
            .prop_map(|(q, g)| G::Rel(q, Box::new(g))),
    ];
    let base = prop_oneof![3 => leaf(Level::Deploy), 1 => rel];
    base.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            2 => vec(inner.clone(), 1..4).prop_map(G::All),
            2 => vec(inner.clone(), 1..3).prop_map(G::Any),
            2 => inner.prop_map(|g| G::Not(Box::new(g))),
            1 => Just(G::Any(Vec::new())),
        ]
    })
}

fn render(g: &G) -> Value {
    match g {
        G::All(parts) => {
            // leaves on distinct fields share one object (keys are ANDed)
            let mut obj = serde_json::Map::new();
            let mergeable = parts.len() > 1
                && parts.iter().all(|p| match p {
                    G::Leaf { field, .. } => {
                        !obj.contains_key(*field) && {
                            obj.insert(field.to_string(), Value::Null);
                            true
                        }
                    }
                    _ => false,
                });
            if mergeable {
                let mut obj = serde_json::Map::new();
                for p in parts {
                    if let Value::Object(o) = render(p) {
                        obj.extend(o);
                    }
                }
                Value::Object(obj)
            } else {
                json!({"and": parts.iter().map(render).collect::<Vec<_>>()})
            }
        }
        G::Any(parts) => json!({"or": parts.iter().map(render).collect::<Vec<_>>()}),
        G::Not(inner) => json!({"not": render(inner)}),
        G::Leaf { field, op, arg, .. } => json!({ *field: { *op: arg } }),
        G::Rel(rel @ ("build" | "entity"), inner) => json!({ *rel: render(inner) }),
        G::Rel(quantifier, inner) => json!({"steps": { *quantifier: render(inner) }}),
    }
}

/// The argument as a value of the field's type.
fn typed(ty: Ty, arg: &Value) -> V {
    match ty {
        Ty::Int => V::Int(arg.as_i64().unwrap()),
        Ty::Bool => V::Bool(arg.as_bool().unwrap()),
        Ty::Time => V::Time(
            DateTime::parse_from_rfc3339(arg.as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc),
        ),
        _ => V::Text(arg.as_str().unwrap().to_owned()),
    }
}

fn compare(a: &V, b: &V) -> Ordering {
    match (a, b) {
        // Rust compares `String`s by their UTF-8 bytes: the "C" collation
        (V::Text(x), V::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::Time(x), V::Time(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        _ => panic!("incomparable {a:?} {b:?}"),
    }
}

/// jsonb `@>` for the shapes the test uses.
fn json_contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| json_contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            w.iter().all(|wv| h.iter().any(|hv| json_contains(hv, wv)))
        }
        (h, w) => h == w,
    }
}

/// SQL three-valued evaluation of one comparison.
fn eval_leaf(value: &V, ty: Ty, op: &str, arg: &Value) -> Option<bool> {
    if op == "null" {
        return Some((*value == V::Null) == arg.as_bool().unwrap());
    }
    if let V::Json(meta) = value {
        return Some(match op {
            "contains" => json_contains(meta, arg),
            "hasKey" => meta.get(arg.as_str().unwrap()).is_some(),
            _ => unreachable!(),
        });
    }
    if *value == V::Null {
        return None;
    }
    let text = |v: &V| match v {
        V::Text(s) => s.clone(),
        _ => unreachable!(),
    };
    let arg_s = || arg.as_str().unwrap().to_owned();
    let cmp = || compare(value, &typed(ty, arg));
    let is_in = || {
        arg.as_array()
            .unwrap()
            .iter()
            .any(|a| compare(value, &typed(ty, a)) == Ordering::Equal)
    };
    Some(match op {
        "eq" => cmp() == Ordering::Equal,
        "neq" => cmp() != Ordering::Equal,
        "lt" => cmp() == Ordering::Less,
        "lte" => cmp() != Ordering::Greater,
        "gt" => cmp() == Ordering::Greater,
        "gte" => cmp() != Ordering::Less,
        "in" => is_in(),
        "nin" => !is_in(),
        "contains" => text(value).contains(&arg_s()),
        "notContains" => !text(value).contains(&arg_s()),
        "startsWith" => text(value).starts_with(&arg_s()),
        "endsWith" => text(value).ends_with(&arg_s()),
        // the "C" collation folds ASCII letters only
        "containsIgnoreCase" => text(value)
            .to_ascii_lowercase()
            .contains(&arg_s().to_ascii_lowercase()),
        _ => unreachable!("{op}"),
    })
}

/// Kleene logic over a record whose fields `get` reads; `rel` evaluates
/// relations (deploy level only).
fn eval(g: &G, get: &dyn Fn(&str) -> V, rel: &dyn Fn(&str, &G) -> bool) -> Option<bool> {
    match g {
        G::All(parts) => parts
            .iter()
            .try_fold(Some(true), |acc, p| match (acc, eval(p, get, rel)) {
                (_, Some(false)) => Err(()),
                (Some(true), Some(true)) => Ok(Some(true)),
                _ => Ok(None),
            })
            .unwrap_or(Some(false)),
        G::Any(parts) => parts
            .iter()
            .try_fold(Some(false), |acc, p| match (acc, eval(p, get, rel)) {
                (_, Some(true)) => Err(()),
                (Some(false), Some(false)) => Ok(Some(false)),
                _ => Ok(None),
            })
            .unwrap_or(Some(true)),
        G::Not(inner) => eval(inner, get, rel).map(|b| !b),
        G::Leaf { field, ty, op, arg } => eval_leaf(&get(field), *ty, op, arg),
        G::Rel(name, inner) => Some(rel(name, inner)),
    }
}

fn no_rel(_: &str, _: &G) -> bool {
    unreachable!("relations only at the deploy level")
}

fn deploy_matches(w: &World, scope: &str, d: &Deploy, g: &G) -> bool {
    let rel = |name: &str, inner: &G| -> bool {
        let is_true = |v: Option<bool>| v == Some(true);
        match name {
            "build" => w.builds.iter().any(|b| {
                b.id == d.build_id
                    && b.workspace_id == scope
                    && is_true(eval(inner, &|f| build_field(b, f), &no_rel))
            }),
            "entity" => w.entities.iter().any(|e| {
                e.id == d.entity_id
                    && e.workspace_id == scope
                    && is_true(eval(inner, &|f| entity_field(e, f), &no_rel))
            }),
            quantifier => {
                let mut results = d
                    .steps
                    .iter()
                    .map(|s| is_true(eval(inner, &|f| step_field(s, f), &no_rel)));
                match quantifier {
                    "some" => results.any(|b| b),
                    "every" => results.all(|b| b),
                    "none" => !results.any(|b| b),
                    _ => unreachable!(),
                }
            }
        }
    };
    eval(g, &|f| deploy_field(d, f), &rel) == Some(true)
}

// ---------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------

const SORTABLE: &[&str] = &[
    "id",
    "workspaceId",
    "entityId",
    "sequenceNumber",
    "buildId",
    "status",
    "trigger",
    "sourceEventId",
    "productionUrl",
    "previewUrl",
    "error",
    "createdBy",
    "startedAt",
    "completedAt",
    "createdAt",
];
const DIRECTIONS: &[&str] = &[
    "asc",
    "desc",
    "ascNullsFirst",
    "ascNullsLast",
    "descNullsFirst",
    "descNullsLast",
];

#[derive(Debug, Clone)]
struct Q {
    filter: Option<G>,
    /// None: the default order
    order: Option<Vec<(&'static str, &'static str)>>,
    limit: usize,
    status: Option<String>,
    trigger: Option<String>,
    entity_id: Option<String>,
    workspace_id: Option<String>,
    ids: Option<Vec<String>>,
}

fn query() -> impl Strategy<Value = Q> {
    let order = prop::option::weighted(
        0.85,
        vec((select(SORTABLE), select(DIRECTIONS)), 1..=5).prop_map(|mut keys| {
            let mut seen = std::collections::HashSet::new();
            keys.retain(|(f, _)| seen.insert(*f));
            keys
        }),
    );
    let shorthands = (
        prop::option::weighted(0.1, pick(DEPLOY_STATUSES)),
        prop::option::weighted(0.1, pick(TRIGGERS)),
        prop::option::weighted(0.1, (0..ENTITIES).prop_map(entity_id)),
        prop::option::weighted(0.1, (1u32..=2).prop_map(ws)),
        prop::option::weighted(0.1, vec((0..DEPLOY_IDS).prop_map(deploy_id), 1..20)),
    );
    (
        prop::option::weighted(0.8, deploy_filter()),
        order,
        1usize..6,
        shorthands,
    )
        .prop_map(|(filter, order, limit, s)| Q {
            filter,
            order,
            limit,
            status: s.0,
            trigger: s.1,
            entity_id: s.2,
            workspace_id: s.3,
            ids: s.4,
        })
}

impl Q {
    fn raw(&self) -> RawListParams {
        RawListParams {
            limit: Some(self.limit.to_string()),
            filter: self.filter.as_ref().map(|g| render(g).to_string()),
            order_by: self.order.as_ref().map(|keys| {
                Value::Array(keys.iter().map(|(f, d)| json!({ *f: *d })).collect()).to_string()
            }),
            status: self.status.clone(),
            trigger: self.trigger.clone(),
            entity_id: self.entity_id.clone(),
            workspace_id: self.workspace_id.clone(),
            ids: self.ids.as_ref().map(|ids| ids.join(",")),
            ..Default::default()
        }
    }

    /// The oracle: matching deploys in order.
    fn expected(&self, w: &World, scope: &str) -> Vec<String> {
        let mut rows: Vec<&Deploy> = w
            .deploys
            .iter()
            .filter(|d| d.workspace_id == scope)
            .filter(|d| {
                self.filter
                    .as_ref()
                    .is_none_or(|g| deploy_matches(w, scope, d, g))
            })
            .filter(|d| self.status.as_ref().is_none_or(|s| *s == d.status))
            .filter(|d| self.trigger.as_ref().is_none_or(|s| *s == d.trigger))
            .filter(|d| self.entity_id.as_ref().is_none_or(|s| *s == d.entity_id))
            .filter(|d| {
                self.workspace_id
                    .as_ref()
                    .is_none_or(|s| *s == d.workspace_id)
            })
            .filter(|d| self.ids.as_ref().is_none_or(|ids| ids.contains(&d.id)))
            .collect();
        let mut keys = self
            .order
            .clone()
            .unwrap_or_else(|| vec![("createdAt", "desc")]);
        if !keys.iter().any(|(f, _)| *f == "id") {
            let last_desc = keys.last().is_some_and(|(_, d)| d.starts_with("desc"));
            keys.push(("id", if last_desc { "desc" } else { "asc" }));
        }
        rows.sort_by(|a, b| {
            for (field, dir) in &keys {
                let (x, y) = (deploy_field(a, field), deploy_field(b, field));
                let desc = dir.starts_with("desc");
                let nulls_first = !matches!(*dir, "asc" | "ascNullsLast" | "descNullsLast");
                let ord = match (&x, &y) {
                    (V::Null, V::Null) => Ordering::Equal,
                    (V::Null, _) if nulls_first => Ordering::Less,
                    (V::Null, _) => Ordering::Greater,
                    (_, V::Null) if nulls_first => Ordering::Greater,
                    (_, V::Null) => Ordering::Less,
                    _ if desc => compare(&x, &y).reverse(),
                    _ => compare(&x, &y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        rows.into_iter().map(|d| d.id.clone()).collect()
    }
}

async fn page(
    pool: &Db,
    scope: &[WorkspaceId],
    key: &[u8],
    q: &Q,
    after: Option<String>,
    before: Option<String>,
) -> ListPage {
    let mut raw = q.raw();
    raw.after = after;
    raw.before = before;
    let req = parse_list_params(&raw).unwrap_or_else(|e| panic!("{raw:?} refused: {e:?}"));
    list_deploys(pool, scope, &req, key).await.unwrap()
}

fn ids(p: &ListPage) -> Vec<String> {
    p.data.iter().map(|r| r.id.to_string()).collect()
}

/// Walks `q` forward then backward, checking every page against `expected`.
async fn walk(pool: &Db, scope: &[WorkspaceId], key: &[u8], q: &Q, expected: &[String]) {
    let total = expected.len() as i64;
    let check = |p: &ListPage, start: usize| {
        let got = ids(p);
        assert_eq!(p.page_info.total, total, "total");
        assert_eq!(got, expected[start..start + got.len()], "page at {start}");
        assert!(
            p.data.iter().all(|r| r.workspace_id.to_string() == ws_a()),
            "another workspace leaked"
        );
        if !got.is_empty() {
            assert_eq!(
                p.page_info.has_previous_page,
                start > 0,
                "hasPreviousPage at {start}"
            );
            assert_eq!(
                p.page_info.has_next_page,
                start + got.len() < expected.len(),
                "hasNextPage at {start}"
            );
        }
        assert_eq!(p.page_info.start_cursor.is_some(), !got.is_empty());
        assert_eq!(p.page_info.end_cursor.is_some(), !got.is_empty());
    };

    // forward
    let mut seen = 0;
    let mut cursor = None;
    let mut last = None;
    for _ in 0..=expected.len() + 1 {
        let p = page(pool, scope, key, q, cursor.clone(), None).await;
        check(&p, seen);
        assert!(
            p.data.len() == q.limit || !p.page_info.has_next_page,
            "short page"
        );
        seen += p.data.len();
        let more = p.page_info.has_next_page;
        cursor = p.page_info.end_cursor.clone();
        last = Some(p);
        if !more {
            break;
        }
    }
    assert_eq!(seen, expected.len(), "forward walk");
    let last = last.unwrap();
    if expected.is_empty() {
        assert!(!last.page_info.has_next_page && !last.page_info.has_previous_page);
        return;
    }

    // past the end: an empty page, with rows behind it
    let end = page(pool, scope, key, q, last.page_info.end_cursor.clone(), None).await;
    assert!(end.data.is_empty());
    assert!(!end.page_info.has_next_page && end.page_info.has_previous_page);

    // backward from the last page
    let mut start = expected.len() - last.data.len();
    let mut cursor = last.page_info.start_cursor.clone();
    let mut more = last.page_info.has_previous_page;
    while more {
        let p = page(pool, scope, key, q, None, cursor.clone()).await;
        assert!(!p.data.is_empty(), "empty page walking back");
        assert!(p.data.len() <= start, "walked back past the start");
        start -= p.data.len();
        check(&p, start);
        more = p.page_info.has_previous_page;
        cursor = p.page_info.start_cursor.clone();
    }
    assert_eq!(start, 0, "backward walk");

    // before the start: an empty page, with rows after it
    let begin = page(pool, scope, key, q, None, cursor).await;
    assert!(begin.data.is_empty());
    assert!(begin.page_info.has_next_page && !begin.page_info.has_previous_page);
}

async fn pages_walk_every_matching_row_once_in_both_directions() {
    support::with_store(pages_walk_every_matching_row_once_in_both_directions_on).await;
}

async fn pages_walk_every_matching_row_once_in_both_directions_on(pool: Db) {
    let key = deployd::store::access::cursor_key(&pool).await.unwrap();
    let scope: Vec<WorkspaceId> = vec![ws_a().parse().unwrap()];
    let mut runner = TestRunner::new(Config::with_cases(CASES));
    let strategy = (world(), vec(query(), QUERIES_PER_CASE));
    for case in 0..CASES {
        let (w, queries) = strategy.new_tree(&mut runner).unwrap().current();
        load(&pool, &w).await;
        for q in &queries {
            let expected = q.expected(&w, &ws_a());
            let run = std::panic::AssertUnwindSafe(walk(&pool, &scope, &key, q, &expected));
            if let Err(panic) = futures::FutureExt::catch_unwind(run).await {
                eprintln!("case {case} failed\nquery: {q:#?}\nraw: {:#?}\nexpected: {expected:?}\nworld: {w:#?}", q.raw());
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// A deploy-level leaf, typed from the field table.
fn lf(field: &'static str, op: &'static str, arg: Value) -> G {
    let (field, ty) = *DEPLOY_FIELDS.iter().find(|(f, _)| *f == field).unwrap();
    G::Leaf { field, ty, op, arg }
}

fn not(g: G) -> G {
    G::Not(Box::new(g))
}

/// The corners of three-valued logic, each over nullable fields, on a few
/// random worlds: the random filters above reach them only rarely.
async fn null_semantics_follow_sql() {
    support::with_store(null_semantics_follow_sql_on).await;
}

async fn null_semantics_follow_sql_on(pool: Db) {
    let key = deployd::store::access::cursor_key(&pool).await.unwrap();
    let scope: Vec<WorkspaceId> = vec![ws_a().parse().unwrap()];
    let filters = vec![
        lf("error", "neq", json!("a")),
        not(lf("error", "eq", json!("a"))),
        lf("error", "nin", json!([])),
        not(lf("error", "nin", json!([]))),
        lf("startedAt", "in", json!([])),
        not(lf("startedAt", "in", json!([]))),
        not(lf("previewUrl", "nin", json!(["a", "b"]))),
        lf("previewUrl", "notContains", json!("a")),
        not(lf("previewUrl", "notContains", json!("a"))),
        G::Any(vec![
            lf("error", "eq", json!("a")),
            lf("error", "null", json!(true)),
        ]),
        not(G::Any(vec![
            lf("error", "eq", json!("a")),
            lf("completedAt", "gt", json!("2026-01-01T00:00:00Z")),
        ])),
        not(G::All(vec![
            lf("error", "neq", json!("a")),
            lf("sourceEventId", "lt", json!("b")),
        ])),
        G::Rel(
            "every",
            Box::new(G::Leaf {
                field: "error",
                ty: Ty::Text,
                op: "neq",
                arg: json!("a"),
            }),
        ),
        G::Rel(
            "none",
            Box::new(G::Leaf {
                field: "error",
                ty: Ty::Text,
                op: "eq",
                arg: json!("a"),
            }),
        ),
        not(G::Rel(
            "build",
            Box::new(G::Leaf {
                field: "branch",
                ty: Ty::Text,
                op: "nin",
                arg: json!([]),
            }),
        )),
    ];
    let mut runner = TestRunner::deterministic();
    for _ in 0..8 {
        let w = world().new_tree(&mut runner).unwrap().current();
        load(&pool, &w).await;
        for filter in &filters {
            let q = Q {
                filter: Some(filter.clone()),
                order: Some(vec![("error", "ascNullsFirst"), ("startedAt", "desc")]),
                limit: 3,
                status: None,
                trigger: None,
                entity_id: None,
                workspace_id: None,
                ids: None,
            };
            let expected = q.expected(&w, &ws_a());
            walk(&pool, &scope, &key, &q, &expected).await;
        }
    }
}

/// A cursor only works for the query it was made for, and only when signed
/// with the server's key.
async fn cursors_of_another_query_or_forged_are_refused() {
    support::with_store(cursors_of_another_query_or_forged_are_refused_on).await;
}

async fn cursors_of_another_query_or_forged_are_refused_on(pool: Db) {
    use deployd::read_model::list::ListError;
    let key = deployd::store::access::cursor_key(&pool).await.unwrap();
    let scope: Vec<WorkspaceId> = vec![ws_a().parse().unwrap()];
    let w = world()
        .new_tree(&mut TestRunner::deterministic())
        .unwrap()
        .current();
    load(&pool, &w).await;
    let base = RawListParams {
        limit: Some("1".into()),
        filter: Some(r#"{"sequenceNumber": {"gte": 0}}"#.into()),
        order_by: Some(r#"[{"createdAt": "asc"}]"#.into()),
        ..Default::default()
    };
    let first = list_deploys(&pool, &scope, &parse_list_params(&base).unwrap(), &key)
        .await
        .unwrap();
    let cursor = first
        .page_info
        .end_cursor
        .expect("the world has rows in scope");

    let refused = |raw: RawListParams, pointer: &'static str| {
        let pool = pool.clone();
        let scope = scope.clone();
        let key = key.clone();
        async move {
            let req = parse_list_params(&raw).unwrap();
            match list_deploys(&pool, &scope, &req, &key).await {
                Err(ListError::Invalid(e)) => assert_eq!(e[0].pointer, pointer, "{e:?}"),
                other => panic!("{raw:?} gave {other:?}"),
            }
        }
    };
    // another order, another filter, another shorthand
    refused(
        RawListParams {
            after: Some(cursor.clone()),
            order_by: Some(r#"[{"createdAt": "desc"}]"#.into()),
            ..base.clone()
        },
        "after",
    )
    .await;
    refused(
        RawListParams {
            before: Some(cursor.clone()),
            filter: Some(r#"{"sequenceNumber": {"gte": 1}}"#.into()),
            ..base.clone()
        },
        "before",
    )
    .await;
    refused(
        RawListParams {
            after: Some(cursor.clone()),
            status: Some("failed".into()),
            ..base.clone()
        },
        "after",
    )
    .await;
    // forged, truncated, garbage
    let mut forged = cursor.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(forged).unwrap(),
        cursor[..cursor.len() - 4].to_owned(),
        "not a cursor".to_owned(),
        String::new(),
    ] {
        refused(
            RawListParams {
                after: Some(bad),
                ..base.clone()
            },
            "after",
        )
        .await;
    }
    // signed with another key
    let req = parse_list_params(&RawListParams {
        after: Some(cursor.clone()),
        ..base.clone()
    })
    .unwrap();
    assert!(matches!(
        list_deploys(&pool, &scope, &req, b"another key").await,
        Err(ListError::Invalid(_))
    ));
    // the page size may change between pages
    let next = list_deploys(
        &pool,
        &scope,
        &parse_list_params(&RawListParams {
            after: Some(cursor),
            limit: Some("100".into()),
            ..base.clone()
        })
        .unwrap(),
        &key,
    )
    .await
    .unwrap();
    assert_eq!(next.data.len() as i64, first.page_info.total - 1);
    // an empty scope sees nothing
    let none = list_deploys(&pool, &[], &parse_list_params(&base).unwrap(), &key)
        .await
        .unwrap();
    assert_eq!(none.page_info.total, 0);
    assert!(none.data.is_empty() && none.page_info.start_cursor.is_none());
}

crate::backend_tests!(
    pages_walk_every_matching_row_once_in_both_directions,
    null_semantics_follow_sql,
    cursors_of_another_query_or_forged_are_refused,
);
