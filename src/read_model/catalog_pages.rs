//! `GET /api/entities` and `GET /api/builds`: the catalog as clients find
//! the ids they deploy, with each entity's release (what is live, whether
//! production is pinned). Keyset pages with the deploy list's `limit`,
//! `after`/`before` and `pageInfo`, and its signed cursors; entities in id
//! order, builds newest first (`createdAt`, then `id`, descending).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::catalog::EntityEvent;
use crate::domain::ids::{EntityId, WorkspaceId};
use crate::domain::FieldError;
use crate::on_db;
use crate::read_model::list::cursor;
use crate::read_model::list::order::KeyValue;
use crate::read_model::list::{CursorSide, OrderKey, PageInfo, SortField, MAX_LIMIT};
use crate::read_model::releases::{release_as_of, LiveDeploy};
use crate::store::bind::{any_of, TextList};
use crate::store::db::Db;

/// An entity with its release.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntityView {
    pub id: String,
    pub workspace_id: String,
    /// `app` or `function`.
    pub kind: String,
    pub name: String,
    pub default_version_id: Option<String>,
    pub auto_deploy: bool,
    /// `queue` or `latest`.
    pub deploy_policy: String,
    /// The entity's production URL (once a production deploy completed).
    pub production_url: Option<String>,
    /// The deploy its production URL serves, since when.
    pub live: Option<LiveDeploy>,
    /// Whether a rollback pins production.
    pub pinned: bool,
    /// The rollback that pins it.
    pub pinned_by: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub updated_at: DateTime<Utc>,
}

impl EntityView {
    /// The view as answered: its production URL absolute under
    /// `public_url` (`domain::location`).
    pub fn resolved(mut self, public_url: &str) -> Self {
        if let Some(url) = &mut self.production_url {
            *url = crate::domain::location::resolve(public_url, url);
        }
        self
    }
}

#[derive(sqlx::FromRow)]
struct EntityRow {
    id: String,
    workspace_id: String,
    kind: String,
    name: String,
    default_version_id: Option<String>,
    auto_deploy: bool,
    deploy_policy: String,
    updated_at: DateTime<Utc>,
    production_url: Option<String>,
    live_deploy_id: Option<String>,
    live_build_id: Option<String>,
    live_since: Option<DateTime<Utc>>,
    pinned_by: Option<String>,
}

impl From<EntityRow> for EntityView {
    fn from(r: EntityRow) -> Self {
        let live = match (r.live_deploy_id, r.live_build_id, r.live_since) {
            (Some(deploy_id), Some(build_id), Some(since)) => Some(LiveDeploy {
                deploy_id,
                build_id,
                since,
            }),
            _ => None,
        };
        EntityView {
            id: r.id,
            workspace_id: r.workspace_id,
            kind: r.kind,
            name: r.name,
            default_version_id: r.default_version_id,
            auto_deploy: r.auto_deploy,
            deploy_policy: r.deploy_policy,
            production_url: r.production_url,
            live,
            pinned: r.pinned_by.is_some(),
            pinned_by: r.pinned_by,
            updated_at: r.updated_at,
        }
    }
}

/// A build as upstream reported it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct BuildView {
    pub id: String,
    pub workspace_id: String,
    pub entity_id: String,
    pub version_id: String,
    /// `succeeded` or `failed`.
    pub status: String,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub error: Option<String>,
    /// How many files the build has, once a deploy of it scanned them.
    pub file_count: Option<i64>,
    /// Their size in bytes, likewise.
    pub total_bytes: Option<i64>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    pub page_info: PageInfo,
}

/// Raw query parameters of `GET /api/entities` and `GET /api/builds`: the
/// paging both take and the shorthands of either.
#[derive(Debug, Default, Clone)]
pub struct CatalogParams {
    pub page: PageParams,
    /// Entities: only this kind (`app`, `function`).
    pub kind: Option<String>,
    /// Entities: only those with this name (exactly).
    pub name: Option<String>,
    /// Builds: only builds of this entity.
    pub entity_id: Option<String>,
    /// Builds: only this status (`succeeded`, `failed`).
    pub status: Option<String>,
}

/// The paging and workspace parameters both catalog lists take.
#[derive(Debug, Default, Clone, serde::Deserialize, schemars::JsonSchema)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 100).
    #[serde(default)]
    #[schemars(schema_with = "crate::read_model::list::params::limit")]
    pub limit: Option<String>,
    /// The page after this cursor: the previous page's
    /// `pageInfo.endCursor`, with the same shorthands. Not with `before`.
    #[serde(default)]
    #[schemars(schema_with = "crate::read_model::list::params::cursor")]
    pub after: Option<String>,
    /// The page before this cursor: the next page's
    /// `pageInfo.startCursor`, with the same shorthands. Not with `after`.
    #[serde(default)]
    #[schemars(schema_with = "crate::read_model::list::params::cursor")]
    pub before: Option<String>,
    /// Only this one of the caller's workspaces (`ws_…`).
    #[serde(default)]
    #[schemars(schema_with = "crate::read_model::list::params::workspace_id")]
    pub workspace_id: Option<String>,
}

/// The query of `GET /api/entities` (what the server takes; parsed as
/// [`CatalogParams`]).
#[derive(Debug, Default, Clone, serde::Deserialize, schemars::JsonSchema)]
pub struct EntitiesParams {
    #[serde(flatten)]
    pub page: PageParams,
    /// Only this kind.
    #[serde(default)]
    #[schemars(schema_with = "kind_schema")]
    pub kind: Option<String>,
    /// Only the entity with this name (exactly).
    pub name: Option<String>,
}

/// The query of `GET /api/builds` (what the server takes; parsed as
/// [`CatalogParams`]).
#[derive(Debug, Default, Clone, serde::Deserialize, schemars::JsonSchema)]
pub struct BuildsParams {
    #[serde(flatten)]
    pub page: PageParams,
    /// Only builds of this app or function (`app_…`, `fn_…`).
    #[serde(default)]
    #[schemars(schema_with = "crate::read_model::list::params::entity_id")]
    pub entity_id: Option<String>,
    /// Only builds in this status.
    #[serde(default)]
    #[schemars(schema_with = "build_status_schema")]
    pub status: Option<String>,
}

fn kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["app", "function"]})
}

fn build_status_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["succeeded", "failed"]})
}

impl From<EntitiesParams> for CatalogParams {
    fn from(p: EntitiesParams) -> Self {
        CatalogParams {
            page: p.page,
            kind: p.kind,
            name: p.name,
            ..CatalogParams::default()
        }
    }
}

impl From<BuildsParams> for CatalogParams {
    fn from(p: BuildsParams) -> Self {
        CatalogParams {
            page: p.page,
            entity_id: p.entity_id,
            status: p.status,
            ..CatalogParams::default()
        }
    }
}

/// Validated paging and shorthands.
struct Request {
    limit: u32,
    cursor: Option<(CursorSide, Vec<KeyValue>)>,
    workspace_id: Option<String>,
    /// `kind` (entities) or `entity_id` (builds).
    first: Option<String>,
    /// `status` (builds) or `name` (entities).
    second: Option<String>,
}

const ENTITY_KEYS: &[OrderKey] = &[OrderKey {
    field: SortField::Id,
    descending: false,
    nulls_first: false,
}];
const BUILD_KEYS: &[OrderKey] = &[
    OrderKey {
        field: SortField::CreatedAt,
        descending: true,
        nulls_first: true,
    },
    OrderKey {
        field: SortField::Id,
        descending: true,
        nulls_first: true,
    },
];

fn parse(
    raw: &CatalogParams,
    resource: &str,
    keys: &[OrderKey],
    cursor_key: &[u8],
) -> Result<(Request, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let limit = match raw.page.limit.as_deref() {
        None => MAX_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "limit",
                    format!("expected an integer from 1 to {MAX_LIMIT}"),
                ));
                MAX_LIMIT
            }),
    };
    let workspace_id = raw.page.workspace_id.as_deref().and_then(|w| {
        w.parse::<WorkspaceId>()
            .map(|w| w.to_string())
            .map_err(|e| errors.push(FieldError::new("workspace_id", e.to_string())))
            .ok()
    });
    let (first, second) = if resource == "entities" {
        for (name, value) in [("entity_id", &raw.entity_id), ("status", &raw.status)] {
            if value.is_some() {
                errors.push(FieldError::new(name, "not a parameter of this list"));
            }
        }
        let kind = raw.kind.as_deref().and_then(|k| match k {
            "app" | "function" => Some(k.to_string()),
            _ => {
                errors.push(FieldError::new("kind", "expected one of app, function"));
                None
            }
        });
        (kind, raw.name.clone())
    } else {
        for (name, value) in [("kind", &raw.kind), ("name", &raw.name)] {
            if value.is_some() {
                errors.push(FieldError::new(name, "not a parameter of this list"));
            }
        }
        let entity = raw.entity_id.as_deref().and_then(|e| {
            e.parse::<EntityId>()
                .map(|e| e.to_string())
                .map_err(|e| errors.push(FieldError::new("entity_id", e.to_string())))
                .ok()
        });
        let status = raw.status.as_deref().and_then(|s| match s {
            "succeeded" | "failed" => Some(s.to_string()),
            _ => {
                errors.push(FieldError::new(
                    "status",
                    "expected one of succeeded, failed",
                ));
                None
            }
        });
        (entity, status)
    };
    let binding = format!(
        "{resource}|{}|{}|{}",
        workspace_id.as_deref().unwrap_or(""),
        first.as_deref().unwrap_or(""),
        second.as_deref().unwrap_or("")
    );
    let cursor = match (&raw.page.after, &raw.page.before) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("before", "give after or before, not both"));
            None
        }
        (Some(token), None) | (None, Some(token)) => {
            let side = if raw.page.after.is_some() {
                CursorSide::After
            } else {
                CursorSide::Before
            };
            match cursor::decode(cursor_key, &binding, keys, token) {
                Ok(values) => Some((side, values)),
                Err(message) => {
                    errors.push(FieldError::new(side.param(), message));
                    None
                }
            }
        }
        (None, None) => None,
    };
    if errors.is_empty() {
        Ok((
            Request {
                limit,
                cursor,
                workspace_id,
                first,
                second,
            },
            binding,
        ))
    } else {
        Err(errors)
    }
}

/// Rows strictly beyond the cursor in the walking direction, as SQL over
/// the cursor's values bound from `$first` on, in key order.
fn beyond(keys: &[(&str, bool)], forward: bool, first: usize) -> String {
    let mut branches = Vec::new();
    for (i, (col, desc)) in keys.iter().enumerate() {
        let mut parts: Vec<String> = keys[..i]
            .iter()
            .enumerate()
            .map(|(j, (col, _))| format!("{col} = ${}", first + j))
            .collect();
        // ascending and walking forward: greater; each flip turns it over
        let op = if *desc != forward { ">" } else { "<" };
        parts.push(format!("{col} {op} ${}", first + i));
        branches.push(format!("({})", parts.join(" AND ")));
    }
    format!("({})", branches.join(" OR "))
}

fn order(keys: &[(&str, bool)], forward: bool) -> String {
    keys.iter()
        .map(|(col, desc)| {
            let desc = *desc == forward;
            format!("{col} {}", if desc { "DESC" } else { "ASC" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const ENTITY_SELECT: &str = "SELECT e.id, e.workspace_id, e.kind, e.name, e.default_version_id, \
     e.auto_deploy, e.deploy_policy, e.updated_at, r.production_url, r.live_deploy_id, \
     r.live_build_id, r.live_since, r.pinned_by \
     FROM entities e LEFT JOIN releases r ON r.entity_id = e.id";

const BUILD_SELECT: &str = "SELECT b.id, b.workspace_id, b.entity_id, b.version_id, b.status, \
     b.branch, b.commit_sha, b.error, CAST(NULL AS bigint) AS file_count, \
     CAST(NULL AS bigint) AS total_bytes, b.created_at FROM builds b";

fn text(v: &KeyValue) -> Option<String> {
    match v {
        KeyValue::Text(s) => Some(s.clone()),
        _ => None,
    }
}

fn time(v: &KeyValue) -> Option<DateTime<Utc>> {
    match v {
        KeyValue::Time(t) => Some(*t),
        _ => None,
    }
}

/// The scope (`$1`) and workspace shorthand (`$2`), and `filters`.
fn matching(db: &Db, alias: &str, filters: &[&str]) -> String {
    let mut parts = vec![
        any_of(db.engine(), &format!("{alias}.workspace_id"), 1),
        format!("($2 IS NULL OR {alias}.workspace_id = $2)"),
    ];
    parts.extend(filters.iter().map(|f| f.to_string()));
    parts.join(" AND ")
}

/// The page and its flags from the rows fetched (`limit + 1` in walking
/// order) and whether anything lies behind the cursor.
fn finish<T>(
    mut rows: Vec<T>,
    req: &Request,
    behind: bool,
    total: i64,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = req.limit as usize;
    let more_ahead = rows.len() > limit;
    rows.truncate(limit);
    let forward = !matches!(req.cursor, Some((CursorSide::Before, _)));
    if !forward {
        rows.reverse();
    }
    let (has_next_page, has_previous_page) = if forward {
        (more_ahead, behind)
    } else {
        (behind, more_ahead)
    };
    Page {
        page_info: PageInfo {
            total,
            has_next_page,
            has_previous_page,
            start_cursor: rows.first().map(&cursor_of),
            end_cursor: rows.last().map(&cursor_of),
        },
        data: rows,
    }
}

/// A page of entities in `scope`, in id order.
pub async fn entities(
    db: &Db,
    scope: &[String],
    raw: &CatalogParams,
    cursor_key: &[u8],
) -> Result<Result<Page<EntityView>, Vec<FieldError>>, sqlx::Error> {
    let (req, binding) = match parse(raw, "entities", ENTITY_KEYS, cursor_key) {
        Ok(r) => r,
        Err(errors) => return Ok(Err(errors)),
    };
    let keys = [("e.id", false)];
    let forward = !matches!(req.cursor, Some((CursorSide::Before, _)));
    let base = matching(
        db,
        "e",
        &["($3 IS NULL OR e.kind = $3)", "($5 IS NULL OR e.name = $5)"],
    );
    let seek = beyond(&keys, forward, 4);
    let at = req.cursor.as_ref().and_then(|(_, v)| text(&v[0]));
    let page_sql = format!(
        "{ENTITY_SELECT} WHERE {base} AND ($4 IS NULL OR {seek}) ORDER BY {} LIMIT {}",
        order(&keys, forward),
        req.limit + 1
    );
    let count_sql = format!("SELECT count(*) FROM entities e WHERE {base} AND $4 IS NULL");
    let behind_sql =
        format!("SELECT count(*) FROM entities e WHERE {base} AND $4 IS NOT NULL AND NOT {seek}");
    let (ws, kind, name) = (
        req.workspace_id.clone(),
        req.first.clone(),
        req.second.clone(),
    );
    let (rows, total, behind): (Vec<EntityRow>, i64, i64) = on_db!(db, pool => {
        let rows = sqlx::query_as(&page_sql)
            .bind(TextList(scope)).bind(&ws).bind(&kind).bind(&at).bind(&name)
            .fetch_all(pool).await?;
        let total = sqlx::query_scalar(&count_sql)
            .bind(TextList(scope)).bind(&ws).bind(&kind).bind(None::<String>).bind(&name)
            .fetch_one(pool).await?;
        let behind = sqlx::query_scalar(&behind_sql)
            .bind(TextList(scope)).bind(&ws).bind(&kind).bind(&at).bind(&name)
            .fetch_one(pool).await?;
        (rows, total, behind)
    });
    let views: Vec<EntityView> = rows.into_iter().map(EntityView::from).collect();
    Ok(Ok(finish(views, &req, behind > 0, total, |e| {
        cursor::encode(cursor_key, &binding, &[KeyValue::Text(e.id.clone())])
    })))
}

/// A page of builds in `scope`, newest first.
pub async fn builds(
    db: &Db,
    scope: &[String],
    raw: &CatalogParams,
    cursor_key: &[u8],
) -> Result<Result<Page<BuildView>, Vec<FieldError>>, sqlx::Error> {
    let (req, binding) = match parse(raw, "builds", BUILD_KEYS, cursor_key) {
        Ok(r) => r,
        Err(errors) => return Ok(Err(errors)),
    };
    let keys = [("b.created_at", true), ("b.id", true)];
    let forward = !matches!(req.cursor, Some((CursorSide::Before, _)));
    let base = matching(
        db,
        "b",
        &[
            "($3 IS NULL OR b.entity_id = $3)",
            "($4 IS NULL OR b.status = $4)",
        ],
    );
    let seek = beyond(&keys, forward, 5);
    let (t, i) = match &req.cursor {
        Some((_, v)) => (time(&v[0]), text(&v[1])),
        None => (None, None),
    };
    let page_sql = format!(
        "{BUILD_SELECT} WHERE {base} AND ($6 IS NULL OR {seek}) ORDER BY {} LIMIT {}",
        order(&keys, forward),
        req.limit + 1
    );
    let count_sql = format!("SELECT count(*) FROM builds b WHERE {base}");
    let behind_sql =
        format!("SELECT count(*) FROM builds b WHERE {base} AND $6 IS NOT NULL AND NOT {seek}");
    let (ws, entity, status) = (
        req.workspace_id.clone(),
        req.first.clone(),
        req.second.clone(),
    );
    let (rows, total, behind): (Vec<BuildView>, i64, i64) = on_db!(db, pool => {
        let rows = sqlx::query_as(&page_sql)
            .bind(TextList(scope)).bind(&ws).bind(&entity).bind(&status).bind(t).bind(&i)
            .fetch_all(pool).await?;
        let total = sqlx::query_scalar(&count_sql)
            .bind(TextList(scope)).bind(&ws).bind(&entity).bind(&status)
            .fetch_one(pool).await?;
        let behind = sqlx::query_scalar(&behind_sql)
            .bind(TextList(scope)).bind(&ws).bind(&entity).bind(&status).bind(t).bind(&i)
            .fetch_one(pool).await?;
        (rows, total, behind)
    });
    Ok(Ok(finish(rows, &req, behind > 0, total, |b| {
        cursor::encode(
            cursor_key,
            &binding,
            &[KeyValue::Time(b.created_at), KeyValue::Text(b.id.clone())],
        )
    })))
}

/// Entity `id` in `scope`, with its release now.
pub async fn entity(db: &Db, id: &str, scope: &[String]) -> sqlx::Result<Option<EntityView>> {
    let sql = format!(
        "{ENTITY_SELECT} WHERE e.id = $1 AND {}",
        any_of(db.engine(), "e.workspace_id", 2)
    );
    let row: Option<EntityRow> = on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(TextList(scope))
        .fetch_optional(pool)
        .await)?;
    Ok(row.map(EntityView::from))
}

/// Entity `id` as the log stood at `as_of`: its description then (its
/// events up to that instant) and what was live (its deploys'
/// completions up to then). `None` before it existed or outside `scope`.
pub async fn entity_as_of(
    db: &Db,
    id: &str,
    scope: &[String],
    as_of: DateTime<Utc>,
) -> anyhow::Result<Option<EntityView>> {
    let events = crate::store::log::read_stream(db, "Entity", id, 0, i64::MAX).await?;
    let mut last = None;
    for e in events.iter().filter(|e| e.recorded_at <= as_of) {
        let EntityEvent::EntityUpserted(u) = serde_json::from_value(e.payload.clone())?;
        last = Some(u);
    }
    let Some(u) = last else { return Ok(None) };
    if !scope.contains(&u.workspace_id.to_string()) {
        return Ok(None);
    }
    let release = release_as_of(db, id, as_of).await?;
    Ok(Some(EntityView {
        id: u.entity_id.to_string(),
        workspace_id: u.workspace_id.to_string(),
        kind: u.kind.as_str().to_string(),
        name: u.name,
        default_version_id: u.default_version_id.map(|v| v.to_string()),
        auto_deploy: u.auto_deploy,
        deploy_policy: u.deploy_policy.as_str().to_string(),
        production_url: release.production_url,
        live: release.live,
        pinned: release.pinned_by.is_some(),
        pinned_by: release.pinned_by,
        updated_at: u.occurred_at,
    }))
}

/// Build `id` in `scope`.
pub async fn build(db: &Db, id: &str, scope: &[String]) -> sqlx::Result<Option<BuildView>> {
    let sql = format!(
        "{BUILD_SELECT} WHERE b.id = $1 AND {}",
        any_of(db.engine(), "b.workspace_id", 2)
    );
    on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(TextList(scope))
        .fetch_optional(pool)
        .await)
}
