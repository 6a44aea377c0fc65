//! The `orderBy` parameter: `[{"createdAt": "desc"}, …]`, normalised to a
//! list of [`OrderKey`]s that always ends in a unique key (`id`), so every
//! row has one exact position and keyset pagination can seek to it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::parse::child;
use crate::domain::FieldError;
use crate::read_model::DeployRow;

/// The most keys `orderBy` may have.
pub const MAX_ORDER_KEYS: usize = 5;

/// A sort direction. Plain `asc` puts nulls last, plain `desc` first
/// (PostgreSQL's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Asc,
    Desc,
    AscNullsFirst,
    AscNullsLast,
    DescNullsFirst,
    DescNullsLast,
}

impl Direction {
    const NAMES: &'static [(&'static str, Direction)] = &[
        ("asc", Direction::Asc),
        ("desc", Direction::Desc),
        ("ascNullsFirst", Direction::AscNullsFirst),
        ("ascNullsLast", Direction::AscNullsLast),
        ("descNullsFirst", Direction::DescNullsFirst),
        ("descNullsLast", Direction::DescNullsLast),
    ];

    /// `(descending, nulls_first)`.
    fn resolve(self) -> (bool, bool) {
        match self {
            Direction::Asc | Direction::AscNullsLast => (false, false),
            Direction::AscNullsFirst => (false, true),
            Direction::Desc | Direction::DescNullsFirst => (true, true),
            Direction::DescNullsLast => (true, false),
        }
    }
}

macro_rules! sort_fields {
    ($($variant:ident => $name:literal, $column:literal, $kind:ident);* $(;)?) => {
        /// One element of `orderBy`: a sortable deploy field and its direction.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub enum DeployOrderBy { $($variant(Direction)),* }

        /// A sortable column of `deploys`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub enum SortField { $($variant),* }

        impl SortField {
            pub(crate) const ALL: &'static [SortField] = &[$(SortField::$variant),*];

            /// The API name.
            pub fn name(self) -> &'static str {
                match self { $(SortField::$variant => $name),* }
            }
            /// The column of `deploys`.
            pub(crate) fn column(self) -> &'static str {
                match self { $(SortField::$variant => $column),* }
            }
            /// What the column holds.
            pub(crate) fn kind(self) -> KeyKind {
                match self { $(SortField::$variant => KeyKind::$kind),* }
            }
        }

        impl DeployOrderBy {
            fn new(field: SortField, direction: Direction) -> Self {
                match field { $(SortField::$variant => DeployOrderBy::$variant(direction)),* }
            }
            /// The field and direction.
            pub fn parts(self) -> (SortField, Direction) {
                match self { $(DeployOrderBy::$variant(d) => (SortField::$variant, d)),* }
            }
        }
    };
}

sort_fields! {
    Id => "id", "id", Text;
    WorkspaceId => "workspaceId", "workspace_id", Text;
    EntityId => "entityId", "entity_id", Text;
    SequenceNumber => "sequenceNumber", "sequence_number", Int;
    BuildId => "buildId", "build_id", Text;
    Status => "status", "status", Text;
    Trigger => "trigger", "trigger", Text;
    SourceEventId => "sourceEventId", "source_event_id", Text;
    ProductionUrl => "productionUrl", "production_url", Text;
    PreviewUrl => "previewUrl", "preview_url", Text;
    Error => "error", "error", Text;
    CreatedBy => "createdBy", "created_by", Text;
    StartedAt => "startedAt", "started_at", Time;
    CompletedAt => "completedAt", "completed_at", Time;
    CreatedAt => "createdAt", "created_at", Time;
    Target => "target", "target", Text;
    Live => "live", "live", Bool;
}

/// The type of a sort key's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Text,
    Int,
    Time,
    Bool,
}

/// One sort key, resolved: which column, which way, where nulls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OrderKey {
    pub field: SortField,
    pub descending: bool,
    pub nulls_first: bool,
}

impl OrderKey {
    /// The same key walked the other way: direction and null placement
    /// both flip, so the order is exactly reversed.
    pub(crate) fn reversed(self) -> Self {
        Self {
            field: self.field,
            descending: !self.descending,
            nulls_first: !self.nulls_first,
        }
    }
}

/// A sort key's value in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyValue {
    Null,
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
    Bool(bool),
}

impl KeyValue {
    pub(crate) fn to_sql(&self) -> sea_query::Value {
        match self {
            KeyValue::Null => sea_query::Value::String(None),
            KeyValue::Text(s) => s.clone().into(),
            KeyValue::Int(i) => (*i).into(),
            KeyValue::Time(t) => (*t).into(),
            KeyValue::Bool(b) => (*b).into(),
        }
    }
}

/// The value of `field` in `row`.
pub(crate) fn key_value(row: &DeployRow, field: SortField) -> KeyValue {
    let text = |s: &str| KeyValue::Text(s.to_owned());
    let opt_text = |s: &Option<String>| s.as_deref().map_or(KeyValue::Null, text);
    let opt_time = |t: &Option<DateTime<Utc>>| t.map_or(KeyValue::Null, KeyValue::Time);
    match field {
        SortField::Id => KeyValue::Text(row.id.to_string()),
        SortField::WorkspaceId => KeyValue::Text(row.workspace_id.to_string()),
        SortField::EntityId => KeyValue::Text(row.entity_id.to_string()),
        SortField::SequenceNumber => KeyValue::Int(row.sequence_number),
        SortField::BuildId => KeyValue::Text(row.build_id.to_string()),
        SortField::Status => text(row.status.0.as_str()),
        SortField::Trigger => text(row.trigger.0.as_str()),
        SortField::SourceEventId => opt_text(&row.source_event_id),
        SortField::ProductionUrl => opt_text(&row.production_url),
        SortField::PreviewUrl => opt_text(&row.preview_url),
        SortField::Error => opt_text(&row.error),
        SortField::CreatedBy => text(&row.created_by),
        SortField::StartedAt => opt_time(&row.started_at),
        SortField::CompletedAt => opt_time(&row.completed_at),
        SortField::CreatedAt => KeyValue::Time(row.created_at),
        SortField::Target => text(row.target.0.as_str()),
        SortField::Live => KeyValue::Bool(row.live),
    }
}

/// The order when `orderBy` is absent: newest first.
pub(crate) fn default_order() -> Vec<DeployOrderBy> {
    vec![DeployOrderBy::CreatedAt(Direction::Desc)]
}

/// Parses the text of `orderBy` (pointer `orderBy`).
pub(crate) fn parse_order_text(text: &str, p: &str) -> Result<Vec<DeployOrderBy>, Vec<FieldError>> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| vec![FieldError::new(p, format!("is not valid JSON: {e}"))])?;
    if let Some(at) = crate::domain::json::duplicate_key(text.as_bytes()) {
        return Err(vec![FieldError::new(
            format!("{p}/{at}"),
            "this key appears more than once in its object",
        )]);
    }
    let Some(items) = value.as_array() else {
        return Err(vec![FieldError::new(
            p,
            "expected an array such as [{\"createdAt\": \"desc\"}]",
        )]);
    };
    if items.is_empty() || items.len() > MAX_ORDER_KEYS {
        return Err(vec![FieldError::new(
            p,
            format!("expected 1 to {MAX_ORDER_KEYS} keys, got {}", items.len()),
        )]);
    }
    let mut errors = Vec::new();
    let mut out: Vec<DeployOrderBy> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = child(p, &i.to_string());
        let one = item.as_object().filter(|o| o.len() == 1);
        let Some((name, dir)) = one.and_then(|o| o.iter().next()) else {
            errors.push(FieldError::new(
                ip,
                "expected an object with exactly one field, e.g. {\"createdAt\": \"desc\"}",
            ));
            continue;
        };
        let fp = child(&ip, name);
        let Some(field) = SortField::ALL.iter().copied().find(|f| f.name() == name) else {
            let names: Vec<&str> = SortField::ALL.iter().map(|f| f.name()).collect();
            errors.push(FieldError::new(
                fp,
                format!(
                    "unknown or unsortable field {name:?}; expected one of {}",
                    names.join(", ")
                ),
            ));
            continue;
        };
        let direction = Direction::NAMES
            .iter()
            .find(|(n, _)| Some(*n) == dir.as_str())
            .map(|(_, d)| *d);
        let Some(direction) = direction else {
            let names: Vec<&str> = Direction::NAMES.iter().map(|(n, _)| *n).collect();
            errors.push(FieldError::new(
                fp,
                format!(
                    "unknown direction {dir}; expected one of {}",
                    names.join(", ")
                ),
            ));
            continue;
        };
        if out.iter().any(|o| o.parts().0 == field) {
            errors.push(FieldError::new(fp, format!("{name} appears twice")));
            continue;
        }
        out.push(DeployOrderBy::new(field, direction));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Resolves an order to keys, adding `id` (in the direction of the last
/// key) unless the order already has it.
pub(crate) fn resolve(order: &[DeployOrderBy]) -> Vec<OrderKey> {
    let mut keys: Vec<OrderKey> = order
        .iter()
        .map(|o| {
            let (field, direction) = o.parts();
            let (descending, nulls_first) = direction.resolve();
            OrderKey {
                field,
                descending,
                nulls_first,
            }
        })
        .collect();
    if !keys.iter().any(|k| k.field == SortField::Id) {
        let descending = keys.last().is_some_and(|k| k.descending);
        keys.push(OrderKey {
            field: SortField::Id,
            descending,
            // `id` is never null; this only keeps NULLS FIRST/LAST explicit.
            nulls_first: descending,
        });
    }
    keys
}
