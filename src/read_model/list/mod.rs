//! The list query language of `GET /api/deploys`: parameters, filter,
//! order, and exact keyset pagination.
//!
//! - [`parse_list_params`] validates the raw query string into a
//!   [`ListRequest`]; every rejection is a [`FieldError`] whose pointer names
//!   the parameter and the path inside it.
//! - [`list_deploys`] runs it: `total`, the page and both page flags come
//!   from one `REPEATABLE READ READ ONLY` transaction, and nothing outside the
//!   caller's workspaces is returned, counted or matched through a relation.
//! - [`page_sql`] and [`count_sql`] give the SQL `list_deploys` runs, for
//!   `EXPLAIN` (`tests/it/list_indexes.rs`, `benches/list.rs`);
//!   [`ListRequest::cursor_for`] makes the cursor of a row found otherwise.
//!
//! Filter null semantics are SQL's three-valued logic; see [`filter`].
//!
//! ```ignore
//! async fn list(
//!     State(app): State<App>,
//!     caller: Caller,
//!     Query(raw): Query<RawListParams>,
//! ) -> Result<Json<ListPage>, Problem> {
//!     let req = parse_list_params(&raw).map_err(Problem::invalid)?;
//!     let key = app.cursor_key(); // server_secrets 'cursor_hmac'
//!     Ok(Json(list_deploys(&app.pool, caller.workspaces(), &req, &key).await?))
//! }
//! ```

pub(crate) mod cursor;
pub mod filter;
mod lower;
pub mod order;
mod parse;
mod run;
mod sql;

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use filter::{
    BuildFilter, BuildStatus, Comparator, DeployFilter, EntityFilter, MetadataComparator,
    StepFilter, StepsFilter, StringComparator,
};
pub use order::{DeployOrderBy, Direction, OrderKey, SortField};
pub use run::{count_sql, list_deploys, page_sql};

use crate::domain::ids::{BuildId, DeployId, EntityId, WorkspaceId};
use crate::domain::FieldError;
use crate::domain::{DeployStatus, Target, Trigger};
use crate::read_model::DeployRow;
use lower::{CmpOp, Lower, Node, Test};

/// The default and largest page size.
pub const MAX_LIMIT: u32 = 100;
/// The most ids `ids` may list.
pub const MAX_IDS: usize = 100;

/// Raw query-string parameters of GET /api/deploys, all as received.
/// Each documents its own schema (`params`), the one the parser enforces;
/// the filter language is the reference's section "The list's query
/// language" (`docs/filter.md`).
#[derive(Debug, Default, Clone, serde::Deserialize, schemars::JsonSchema)]
pub struct RawListParams {
    /// Page size, 1 to 100 (default 100).
    #[serde(default)]
    #[schemars(schema_with = "params::limit")]
    pub limit: Option<String>,
    /// The page after this cursor: the previous page's
    /// `pageInfo.endCursor`, with the same `filter`, `orderBy` and
    /// shorthands. Not with `before`.
    #[serde(default)]
    #[schemars(schema_with = "params::cursor")]
    pub after: Option<String>,
    /// The page before this cursor: the next page's
    /// `pageInfo.startCursor`, with the same `filter`, `orderBy` and
    /// shorthands. Not with `after`.
    #[serde(default)]
    #[schemars(schema_with = "params::cursor")]
    pub before: Option<String>,
    /// Only these deploys: comma-separated ids, at most 100 (ids outside
    /// the caller's workspaces match nothing).
    #[serde(default)]
    #[schemars(schema_with = "params::ids")]
    pub ids: Option<String>,
    /// A `DeployFilter` as JSON, URL-encoded:
    /// `{"status":{"in":["failed","cancelled"]},"build":{"branch":{"eq":"main"}}}`.
    /// See "The list's query language".
    #[serde(default)]
    #[schemars(schema_with = "params::filter")]
    pub filter: Option<String>,
    /// A `DeployOrderBy` array as JSON, URL-encoded, at most 5 keys:
    /// `[{"completedAt":"descNullsLast"},{"sequenceNumber":"asc"}]`
    /// (default `[{"createdAt":"desc"}]`).
    #[serde(default, rename = "orderBy")]
    #[schemars(schema_with = "params::order_by")]
    pub order_by: Option<String>,
    /// Only deploys of this workspace (`ws_…`).
    #[serde(default)]
    #[schemars(schema_with = "params::workspace_id")]
    pub workspace_id: Option<String>,
    /// Only deploys of this app or function (`app_…`, `fn_…`).
    #[serde(default)]
    #[schemars(schema_with = "params::entity_id")]
    pub entity_id: Option<String>,
    /// Only deploys of this build (`bld_…`).
    #[serde(default)]
    #[schemars(schema_with = "params::build_id")]
    pub build_id: Option<String>,
    /// Only deploys in this status.
    #[serde(default)]
    #[schemars(schema_with = "params::status")]
    pub status: Option<String>,
    /// Only deploys with this trigger.
    #[serde(default)]
    #[schemars(schema_with = "params::trigger")]
    pub trigger: Option<String>,
    /// Only deploys created by this principal (a token's name, or
    /// `system` for automatic deploys).
    #[serde(default)]
    #[schemars(schema_with = "params::created_by")]
    pub created_by: Option<String>,
    /// Only deploys of this target (`production`, `preview`).
    pub target: Option<String>,
}

/// The OpenAPI schema of each list parameter: what the parser accepts.
pub(crate) mod params {
    use schemars::{json_schema, Schema, SchemaGenerator};

    const ULID: &str = "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}";

    fn id(prefix: &str) -> Schema {
        json_schema!({"type": "string", "pattern": format!("^{prefix}{ULID}$")})
    }

    pub fn limit(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1, "maximum": super::MAX_LIMIT, "default": super::MAX_LIMIT})
    }

    pub fn cursor(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "minLength": 1})
    }

    pub fn ids(_: &mut SchemaGenerator) -> Schema {
        let one = format!("dep_{ULID}");
        json_schema!({
            "type": "string",
            "pattern": format!("^{one}(,{one}){{0,{}}}$", super::MAX_IDS - 1),
        })
    }

    pub fn filter(generator: &mut SchemaGenerator) -> Schema {
        let filter = generator.subschema_for::<super::DeployFilter>();
        json_schema!({
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": filter,
        })
    }

    pub fn order_by(generator: &mut SchemaGenerator) -> Schema {
        let order = generator.subschema_for::<Vec<super::DeployOrderBy>>();
        json_schema!({
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": order,
        })
    }

    pub fn workspace_id(_: &mut SchemaGenerator) -> Schema {
        id("ws_")
    }

    pub fn entity_id(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": format!("^(app|fn)_{ULID}$")})
    }

    pub fn build_id(_: &mut SchemaGenerator) -> Schema {
        id("bld_")
    }

    pub fn status(_: &mut SchemaGenerator) -> Schema {
        let values: Vec<&str> = crate::domain::DeployStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        json_schema!({"type": "string", "enum": values})
    }

    pub fn trigger(_: &mut SchemaGenerator) -> Schema {
        let values: Vec<&str> = crate::domain::Trigger::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        json_schema!({"type": "string", "enum": values})
    }

    pub fn created_by(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "minLength": 1})
    }
}

/// Which way a cursor points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorSide {
    /// `after`: the rows following the cursor.
    After,
    /// `before`: the rows preceding it.
    Before,
}

impl CursorSide {
    /// The query parameter, used as the error pointer.
    pub fn param(self) -> &'static str {
        match self {
            CursorSide::After => "after",
            CursorSide::Before => "before",
        }
    }
}

/// The shorthand parameters, validated and canonical.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
struct Shorthands {
    workspace_id: Option<String>,
    entity_id: Option<String>,
    build_id: Option<String>,
    status: Option<DeployStatus>,
    trigger: Option<Trigger>,
    created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Target>,
}

/// A validated list request.
#[derive(Debug, Clone)]
pub struct ListRequest {
    limit: u32,
    cursor: Option<(CursorSide, String)>,
    filter: DeployFilter,
    order: Vec<DeployOrderBy>,
    keys: Vec<OrderKey>,
    /// filter AND shorthands AND ids, lowered
    node: Node,
    /// What cursors of this request are bound to (see [`binding`]).
    binding: String,
}

impl ListRequest {
    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }
    /// The cursor parameter, not yet verified (that needs the key).
    pub fn cursor(&self) -> Option<(CursorSide, &str)> {
        self.cursor.as_ref().map(|(s, t)| (*s, t.as_str()))
    }
    /// The parsed `filter` (empty when absent).
    pub fn filter(&self) -> &DeployFilter {
        &self.filter
    }
    /// The order as given (or the default).
    pub fn order_by(&self) -> &[DeployOrderBy] {
        &self.order
    }
    /// The resolved sort keys, ending in `id`.
    pub fn sort_keys(&self) -> &[OrderKey] {
        &self.keys
    }
    /// The request with URL operands of this server's public URL read as
    /// the locations the rows hold ([`DeployFilter::relocate`]).
    pub fn relocated(mut self, public_url: &str) -> Self {
        let mut filter = self.filter.clone();
        filter.relocate(public_url);
        if filter != self.filter {
            if let Node::All(parts) = &mut self.node {
                // The filter's node is the first part (`parse_list_params`).
                parts[0] = filter.lower();
            }
        }
        self
    }
    /// The cursor [`list_deploys`] gives `row` under this request (as its
    /// `startCursor`/`endCursor`): `after` it continues with the rows that
    /// follow `row`. Lets a tool start a walk at a row found otherwise.
    pub fn cursor_for(&self, row: &DeployRow, cursor_key: &[u8]) -> String {
        let values: Vec<order::KeyValue> = self
            .keys
            .iter()
            .map(|k| order::key_value(row, k.field))
            .collect();
        cursor::encode(cursor_key, &self.binding, &values)
    }
}

/// Paging facts of one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Rows matching scope, filter, shorthands and ids, regardless of cursor.
    pub total: i64,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    /// The first row's cursor; null on an empty page.
    pub start_cursor: Option<String>,
    /// The last row's cursor; null on an empty page.
    pub end_cursor: Option<String>,
}

/// One page of deploys.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    pub data: Vec<DeployRow>,
    pub page_info: PageInfo,
}

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// Bad input (a cursor): answer 400 with these errors.
    #[error("invalid list request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Validates the raw parameters. All problems found are returned together.
pub fn parse_list_params(raw: &RawListParams) -> Result<ListRequest, Vec<FieldError>> {
    let mut errors = Vec::new();

    let limit = match raw.limit.as_deref() {
        None => MAX_LIMIT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("expected an integer from 1 to {MAX_LIMIT}"),
                ));
                MAX_LIMIT
            }
        },
    };

    let cursor = match (&raw.after, &raw.before) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "before",
                "cannot be given together with after",
            ));
            None
        }
        (Some(a), None) => Some((CursorSide::After, a.clone())),
        (None, Some(b)) => Some((CursorSide::Before, b.clone())),
        (None, None) => None,
    };

    let filter = match raw.filter.as_deref() {
        None => DeployFilter::default(),
        Some(text) => parse::parse_filter_text(text, "filter").unwrap_or_else(|e| {
            errors.extend(e);
            DeployFilter::default()
        }),
    };

    let order = match raw.order_by.as_deref() {
        None => order::default_order(),
        Some(text) => order::parse_order_text(text, "orderBy").unwrap_or_else(|e| {
            errors.extend(e);
            order::default_order()
        }),
    };

    let ids = raw.ids.as_deref().and_then(|s| parse_ids(s, &mut errors));
    let shorthands = parse_shorthands(raw, &mut errors);

    if !errors.is_empty() {
        return Err(errors);
    }
    let keys = order::resolve(&order);
    let binding = binding(&keys, &filter, &shorthands, ids.as_deref());
    let mut parts = vec![filter.lower()];
    parts.extend(shorthand_nodes(&shorthands));
    if let Some(ids) = ids {
        let values = ids.into_iter().map(Into::into).collect();
        parts.push(Node::Test {
            column: "id",
            test: Test::In(values),
        });
    }
    Ok(ListRequest {
        limit,
        cursor,
        filter,
        order,
        keys,
        node: Node::All(parts),
        binding,
    })
}

/// `ids`: comma-separated deploy ids (spaces around them ignored), made
/// canonical, sorted and deduplicated.
fn parse_ids(text: &str, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() > MAX_IDS {
        errors.push(FieldError::new(
            "ids",
            format!("has {} ids; at most {MAX_IDS} are allowed", parts.len()),
        ));
        return None;
    }
    let before = errors.len();
    let mut ids: Vec<String> = parts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match DeployId::from_str(s.trim()) {
            Ok(id) => Some(id.to_string()),
            Err(e) => {
                errors.push(FieldError::new(format!("ids/{i}"), e.to_string()));
                None
            }
        })
        .collect();
    ids.sort();
    ids.dedup();
    (errors.len() == before).then_some(ids)
}

fn parse_shorthands(raw: &RawListParams, errors: &mut Vec<FieldError>) -> Shorthands {
    /// Parses one shorthand with `T::from_str`, keeping its canonical form.
    fn one<T: FromStr>(
        value: &Option<String>,
        name: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let s = value.as_deref()?;
        T::from_str(s)
            .map_err(|e| errors.push(FieldError::new(name, e.to_string())))
            .ok()
    }
    let workspace_id = one::<WorkspaceId>(&raw.workspace_id, "workspace_id", errors);
    let entity_id = one::<EntityId>(&raw.entity_id, "entity_id", errors);
    let build_id = one::<BuildId>(&raw.build_id, "build_id", errors);
    let status = one(&raw.status, "status", errors);
    let trigger = one(&raw.trigger, "trigger", errors);
    let target = one(&raw.target, "target", errors);
    let created_by = match raw.created_by.as_deref() {
        Some("") => {
            errors.push(FieldError::new("created_by", "must not be empty"));
            None
        }
        Some(s) if s.contains('\0') => {
            errors.push(FieldError::new(
                "created_by",
                "must not contain NUL (\\u0000)",
            ));
            None
        }
        other => other.map(str::to_owned),
    };
    Shorthands {
        workspace_id: workspace_id.map(|i| i.to_string()),
        entity_id: entity_id.map(|i| i.to_string()),
        build_id: build_id.map(|i| i.to_string()),
        status,
        trigger,
        created_by,
        target,
    }
}

fn shorthand_nodes(s: &Shorthands) -> Vec<Node> {
    let eq = |column, value: sea_query::Value| Node::Test {
        column,
        test: Test::Cmp(CmpOp::Eq, value),
    };
    let mut out = Vec::new();
    out.extend(s.workspace_id.clone().map(|v| eq("workspace_id", v.into())));
    out.extend(s.entity_id.clone().map(|v| eq("entity_id", v.into())));
    out.extend(s.build_id.clone().map(|v| eq("build_id", v.into())));
    out.extend(s.status.map(|v| eq("status", v.as_str().into())));
    out.extend(s.trigger.map(|v| eq("trigger", v.as_str().into())));
    out.extend(s.created_by.clone().map(|v| eq("created_by", v.into())));
    out.extend(s.target.map(|v| eq("target", v.as_str().into())));
    out
}

/// A hash of the canonical query (sort keys, filter, shorthands, ids): a
/// cursor made under another one is refused.
fn binding(
    keys: &[OrderKey],
    filter: &DeployFilter,
    shorthands: &Shorthands,
    ids: Option<&[String]>,
) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        version: u8,
        keys: &'a [OrderKey],
        filter: &'a DeployFilter,
        shorthands: &'a Shorthands,
        ids: Option<&'a [String]>,
    }
    let canonical = Canonical {
        version: 1,
        keys,
        filter,
        shorthands,
        ids,
    };
    // Serialising plain structs, strings and numbers cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(&Sha256::digest(&bytes)[..16])
}

/// JSON Schemas of the `filter` and `orderBy` element types, by name.
///
/// `Option` fields are "absent or the value": the parser refuses an explicit
/// `null` (`{"eq": null}` is almost always a mistake for `{"null": true}`),
/// so the `null` alternatives schemars adds for them are taken out.
pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    let mut out = vec![
        ("DeployFilter", schemars::schema_for!(DeployFilter)),
        ("DeployOrderBy", schemars::schema_for!(DeployOrderBy)),
    ];
    for (_, schema) in &mut out {
        strip_null(schema);
    }
    out
}

/// Removes `null` alternatives (`anyOf: [X, {type: null}]`, `type: [x,
/// "null"]`) from a schema and all its subschemas.
fn strip_null(schema: &mut schemars::Schema) {
    use serde_json::Value;
    if let Some(obj) = schema.as_object_mut() {
        if let Some(Value::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                obj.insert("type".into(), only);
            }
        }
        let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
        if let Some(Value::Array(any)) = obj.get("anyOf") {
            if let ([a, b], true) = (any.as_slice(), any.iter().any(is_null)) {
                let keep = if is_null(a) { b.clone() } else { a.clone() };
                obj.remove("anyOf");
                if let Value::Object(keep) = keep {
                    obj.extend(keep);
                }
            }
        }
    }
    schemars::transform::transform_subschemas(&mut strip_null, schema);
}

#[cfg(test)]
mod tests;
