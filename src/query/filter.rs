//! The `filter` parameter: a typed AST (`DeployFilter` and the filters of its
//! relations), parsed by hand from JSON so every rejection carries a pointer
//! into the parameter (`filter/or/1/sequenceNumber/gt`) and a message of ours,
//! and lowered to a [`Node`] tree that both the SQL builder and the limits
//! work on.
//!
//! # Null semantics
//!
//! Filters follow SQL's three-valued logic, on purpose and everywhere:
//!
//! - every comparator except `null` (`eq`, `neq`, `in`, `nin`, `lt` … `gte`,
//!   the string comparators) is UNKNOWN on a null field: a null field matches
//!   none of them, also not `neq` or `nin`;
//! - `in: []` is FALSE on a non-null field and `nin: []` TRUE, both UNKNOWN on
//!   a null field (they are rendered `x <> x` and `x = x`);
//! - `and`/`or`/`not` are Kleene's: `not` of UNKNOWN is UNKNOWN, so
//!   `{"not": {"error": {"eq": "x"}}}` does not match a null `error` either;
//! - `null: true|false`, `metadata` and the relations are never UNKNOWN;
//! - a row is listed only when the whole filter is TRUE.
//!
//! `and: []` and `{}` are TRUE, `or: []` is FALSE. Relations: `build` and
//! `entity` are TRUE when the related row (in the caller's workspaces)
//! matches; `steps.some` when at least one step matches, `steps.none` when
//! none does, `steps.every` when every step's filter is TRUE (so a deploy
//! without steps matches `every`).

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::problem::FieldError;
use crate::domain::{DeployStatus, StepStatus, Trigger};
use crate::ids::EntityKind;

/// The deepest a filter may nest: the top object is level 1, each
/// `and`/`or`/`not` element or relation filter one more.
pub const MAX_DEPTH: usize = 8;
/// The most comparisons (comparator keys) one filter may hold.
pub const MAX_COMPARISONS: usize = 50;
/// The most values of one `in`/`nin` list.
pub const MAX_IN_VALUES: usize = 100;
/// The longest filter text, in bytes.
pub const MAX_FILTER_BYTES: usize = 8 * 1024;

/// Comparators of a number, timestamp, enum or boolean field. Several keys
/// are ANDed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Comparator<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eq: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neq: Option<T>,
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_: Option<Vec<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nin: Option<Vec<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lt: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lte: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gt: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gte: Option<T>,
    /// `true`: the field is null; `false`: it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null: Option<bool>,
}

impl<T> Default for Comparator<T> {
    fn default() -> Self {
        Self {
            eq: None,
            neq: None,
            in_: None,
            nin: None,
            lt: None,
            lte: None,
            gt: None,
            gte: None,
            null: None,
        }
    }
}

/// Comparators of a string field: byte-order comparisons and substring
/// matches in which `%`, `_` and `\` are literal. `containsIgnoreCase`
/// folds ASCII letters only (the columns use the "C" collation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringComparator {
    #[serde(flatten)]
    pub base: Comparator<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_contains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains_ignore_case: Option<String>,
}

/// Comparators of `metadata` (a JSON object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataComparator {
    /// JSON containment (`@>`): the metadata holds all of this object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<Map<String, Value>>,
    /// The metadata has this top-level key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_key: Option<String>,
}

/// The status of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    Succeeded,
    Failed,
}

macro_rules! filter_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// All of these match.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub and: Vec<$name>,
            /// At least one of these matches.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub or: Option<Vec<$name>>,
            /// This does not match (SQL `NOT`: UNKNOWN stays UNKNOWN).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub not: Option<Box<$name>>,
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

filter_struct!(
    /// A filter over deploys: fields of the deploy, its build, its entity
    /// and its steps. Keys of one object are ANDed.
    DeployFilter {
        id: StringComparator,
        workspace_id: StringComparator,
        entity_id: StringComparator,
        sequence_number: Comparator<i64>,
        build_id: StringComparator,
        status: Comparator<DeployStatus>,
        trigger: Comparator<Trigger>,
        source_event_id: StringComparator,
        production_url: StringComparator,
        preview_url: StringComparator,
        error: StringComparator,
        metadata: MetadataComparator,
        created_by: StringComparator,
        started_at: Comparator<DateTime<Utc>>,
        completed_at: Comparator<DateTime<Utc>>,
        created_at: Comparator<DateTime<Utc>>,
        /// The deploy's build matches.
        build: BuildFilter,
        /// The deploy's entity matches.
        entity: EntityFilter,
        /// The deploy's steps match.
        steps: StepsFilter,
    }
);

filter_struct!(
    /// A filter over the build a deploy was made from.
    BuildFilter {
        id: StringComparator,
        status: Comparator<BuildStatus>,
        branch: StringComparator,
        commit_sha: StringComparator,
        version_id: StringComparator,
        entity_id: StringComparator,
        created_at: Comparator<DateTime<Utc>>,
        error: StringComparator,
        artifact_dir: StringComparator,
    }
);

filter_struct!(
    /// A filter over the entity (app or function) a deploy puts live.
    EntityFilter {
        id: StringComparator,
        kind: Comparator<EntityKind>,
        name: StringComparator,
        default_version_id: StringComparator,
        auto_deploy: Comparator<bool>,
        created_at: Comparator<DateTime<Utc>>,
        updated_at: Comparator<DateTime<Utc>>,
    }
);

filter_struct!(
    /// A filter over one step of a deploy.
    StepFilter {
        name: StringComparator,
        status: Comparator<StepStatus>,
        error: StringComparator,
        started_at: Comparator<DateTime<Utc>>,
        completed_at: Comparator<DateTime<Utc>>,
    }
);

/// Quantifiers over a deploy's steps. Several keys are ANDed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepsFilter {
    /// At least one step matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub some: Option<StepFilter>,
    /// Every step matches (TRUE when the deploy has no steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<StepFilter>,
    /// No step matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none: Option<StepFilter>,
}

// ---------------------------------------------------------------------------
// The lowered tree
// ---------------------------------------------------------------------------

/// A filter lowered to what SQL needs: boolean structure, column tests and
/// relation subqueries. Columns are bare names; the SQL builder qualifies
/// them with the table the node is evaluated on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// TRUE when empty.
    All(Vec<Node>),
    /// FALSE when empty.
    Any(Vec<Node>),
    Not(Box<Node>),
    Test {
        column: &'static str,
        test: Test,
    },
    Related {
        relation: Relation,
        node: Box<Node>,
    },
}

/// A relation of `deploys` a filter can traverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    Build,
    Entity,
    SomeStep,
    EveryStep,
    NoStep,
}

/// A comparison operator between a column and a bound value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// One test of one column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    Cmp(CmpOp, sea_query::Value),
    In(Vec<sea_query::Value>),
    NotIn(Vec<sea_query::Value>),
    /// `LIKE pattern ESCAPE '\'`; the pattern is already escaped.
    Like {
        pattern: String,
        negated: bool,
        fold_case: bool,
    },
    IsNull(bool),
    JsonContains(Value),
    HasKey(String),
}

fn test(column: &'static str, test: Test) -> Node {
    Node::Test { column, test }
}

/// A value a comparator can hold: parsed from JSON with our message, and
/// bound into SQL as a parameter.
pub(crate) trait FilterValue: Sized {
    /// What the value must be, for the error message ("an integer").
    fn parse(v: &Value) -> Result<Self, String>;
    fn to_sql(&self) -> sea_query::Value;
}

impl FilterValue for String {
    fn parse(v: &Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| expected("a string", v))
    }
    fn to_sql(&self) -> sea_query::Value {
        self.clone().into()
    }
}

impl FilterValue for i64 {
    fn parse(v: &Value) -> Result<Self, String> {
        v.as_i64().ok_or_else(|| expected("an integer", v))
    }
    fn to_sql(&self) -> sea_query::Value {
        (*self).into()
    }
}

impl FilterValue for bool {
    fn parse(v: &Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| expected("true or false", v))
    }
    fn to_sql(&self) -> sea_query::Value {
        (*self).into()
    }
}

impl FilterValue for DateTime<Utc> {
    /// RFC 3339 with an offset; digits below the microsecond (PostgreSQL's
    /// precision) are dropped.
    fn parse(v: &Value) -> Result<Self, String> {
        let text = v
            .as_str()
            .ok_or_else(|| expected("an RFC 3339 timestamp with an offset", v))?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
            .map_err(|_| "expected an RFC 3339 timestamp with an offset".to_owned())
    }
    fn to_sql(&self) -> sea_query::Value {
        (*self).into()
    }
}

macro_rules! enum_value {
    ($ty:ty, [$($variant:path => $text:literal),+]) => {
        impl FilterValue for $ty {
            fn parse(v: &Value) -> Result<Self, String> {
                let names = [$($text),+].join(", ");
                match v.as_str() {
                    $(Some($text) => Ok($variant),)+
                    _ => Err(format!("expected one of {names}")),
                }
            }
            fn to_sql(&self) -> sea_query::Value {
                match self { $($variant => $text,)+ }.into()
            }
        }
    };
}

enum_value!(DeployStatus, [
    DeployStatus::Pending => "pending", DeployStatus::Running => "running",
    DeployStatus::Completed => "completed", DeployStatus::Failed => "failed",
    DeployStatus::Cancelled => "cancelled"
]);
enum_value!(Trigger, [
    Trigger::Auto => "auto", Trigger::Manual => "manual", Trigger::Rollback => "rollback"
]);
enum_value!(StepStatus, [
    StepStatus::Pending => "pending", StepStatus::Running => "running",
    StepStatus::Completed => "completed", StepStatus::Failed => "failed",
    StepStatus::Discarded => "discarded", StepStatus::Skipped => "skipped"
]);
enum_value!(BuildStatus, [BuildStatus::Succeeded => "succeeded", BuildStatus::Failed => "failed"]);
enum_value!(EntityKind, [EntityKind::App => "app", EntityKind::Function => "function"]);

fn expected(what: &str, got: &Value) -> String {
    if got.is_null() {
        format!("expected {what}; use {{\"null\": true}} to match nulls")
    } else {
        format!("expected {what}")
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Parse state: the errors found so far and the comparisons counted.
pub(crate) struct Cx {
    pub errors: Vec<FieldError>,
    pub comparisons: usize,
}

impl Cx {
    fn err(&mut self, pointer: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(pointer, message));
    }
}

/// `parent/segment`, with the segment escaped as in a JSON Pointer.
pub(crate) fn child(parent: &str, segment: &str) -> String {
    format!("{parent}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

fn quoted_list(names: &[&str]) -> String {
    names.join(", ")
}

/// Parses the text of the `filter` parameter.
pub(crate) fn parse_filter_text(
    text: &str,
    pointer: &str,
) -> Result<DeployFilter, Vec<FieldError>> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(vec![FieldError::new(
            pointer,
            format!("is longer than {MAX_FILTER_BYTES} bytes"),
        )]);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| vec![FieldError::new(pointer, format!("is not valid JSON: {e}"))])?;
    parse_filter_value(&value, pointer)
}

/// Parses a filter already read as JSON.
pub(crate) fn parse_filter_value(
    value: &Value,
    pointer: &str,
) -> Result<DeployFilter, Vec<FieldError>> {
    let mut cx = Cx {
        errors: Vec::new(),
        comparisons: 0,
    };
    let filter = parse_object::<DeployFilter>(value, pointer, 1, &mut cx);
    if cx.comparisons > MAX_COMPARISONS {
        cx.err(
            pointer,
            format!(
                "has {} comparisons; at most {MAX_COMPARISONS} are allowed",
                cx.comparisons
            ),
        );
    }
    if cx.errors.is_empty() {
        Ok(filter)
    } else {
        Err(cx.errors)
    }
}

/// A filter object: `and`/`or`/`not` plus its own fields.
trait FilterObject: Default {
    /// The field keys, for "unknown field" messages.
    const FIELDS: &'static [&'static str];
    fn logic(
        &mut self,
    ) -> (
        &mut Vec<Self>,
        &mut Option<Vec<Self>>,
        &mut Option<Box<Self>>,
    );
    /// Parses one field key; false when the key is not a field.
    fn set_field(&mut self, key: &str, v: &Value, p: &str, depth: usize, cx: &mut Cx) -> bool;
}

fn parse_object<F: FilterObject>(value: &Value, p: &str, depth: usize, cx: &mut Cx) -> F {
    let mut f = F::default();
    let Some(obj) = value.as_object() else {
        cx.err(p, "expected a filter object");
        return f;
    };
    if depth > MAX_DEPTH {
        cx.err(p, format!("nests deeper than {MAX_DEPTH} levels"));
        return f;
    }
    for (key, v) in obj {
        let kp = child(p, key);
        match key.as_str() {
            "and" | "or" => {
                let Some(items) = v.as_array() else {
                    cx.err(&kp, "expected an array of filter objects");
                    continue;
                };
                let parsed: Vec<F> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_object(item, &child(&kp, &i.to_string()), depth + 1, cx))
                    .collect();
                let (and, or, _) = f.logic();
                if key == "and" {
                    *and = parsed;
                } else {
                    *or = Some(parsed);
                }
            }
            "not" => {
                let parsed = parse_object(v, &kp, depth + 1, cx);
                *f.logic().2 = Some(Box::new(parsed));
            }
            _ => {
                if !f.set_field(key, v, &kp, depth, cx) {
                    cx.err(
                        &kp,
                        format!(
                            "unknown field {key:?}; expected and, or, not, {}",
                            quoted_list(F::FIELDS)
                        ),
                    );
                }
            }
        }
    }
    f
}

/// The comparator keys of a non-string field.
const BASE_OPS: &[&str] = &["eq", "neq", "in", "nin", "lt", "lte", "gt", "gte", "null"];
/// The comparator keys of a string field.
const STRING_OPS: &[&str] = &[
    "eq",
    "neq",
    "in",
    "nin",
    "lt",
    "lte",
    "gt",
    "gte",
    "contains",
    "notContains",
    "startsWith",
    "endsWith",
    "containsIgnoreCase",
    "null",
];

fn comparator_object<'v>(v: &'v Value, p: &str, cx: &mut Cx) -> Option<&'v Map<String, Value>> {
    let obj = v.as_object();
    if obj.is_none() {
        cx.err(p, "expected an object of comparators, e.g. {\"eq\": …}");
    }
    obj
}

fn parse_one<T: FilterValue>(v: &Value, p: &str, cx: &mut Cx) -> Option<T> {
    T::parse(v).map_err(|m| cx.err(p, m)).ok()
}

fn parse_many<T: FilterValue>(v: &Value, p: &str, cx: &mut Cx) -> Option<Vec<T>> {
    let Some(items) = v.as_array() else {
        cx.err(p, "expected an array");
        return None;
    };
    if items.len() > MAX_IN_VALUES {
        cx.err(
            p,
            format!(
                "has {} values; at most {MAX_IN_VALUES} are allowed",
                items.len()
            ),
        );
        return None;
    }
    let before = cx.errors.len();
    let parsed: Vec<T> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| parse_one(item, &child(p, &i.to_string()), cx))
        .collect();
    (cx.errors.len() == before).then_some(parsed)
}

/// Parses one key of a base comparator; false when the key is not one.
fn set_base_op<T: FilterValue>(
    c: &mut Comparator<T>,
    key: &str,
    v: &Value,
    p: &str,
    cx: &mut Cx,
) -> bool {
    match key {
        "eq" => c.eq = parse_one(v, p, cx),
        "neq" => c.neq = parse_one(v, p, cx),
        "in" => c.in_ = parse_many(v, p, cx),
        "nin" => c.nin = parse_many(v, p, cx),
        "lt" => c.lt = parse_one(v, p, cx),
        "lte" => c.lte = parse_one(v, p, cx),
        "gt" => c.gt = parse_one(v, p, cx),
        "gte" => c.gte = parse_one(v, p, cx),
        "null" => c.null = parse_one(v, p, cx),
        _ => return false,
    }
    cx.comparisons += 1;
    true
}

fn unknown_op(p: &str, key: &str, ops: &[&str], cx: &mut Cx) {
    cx.err(
        p,
        format!(
            "unknown operator {key:?}; expected one of {}",
            quoted_list(ops)
        ),
    );
}

fn parse_comparator<T: FilterValue>(v: &Value, p: &str, cx: &mut Cx) -> Comparator<T> {
    let mut c = Comparator::default();
    for (key, v) in comparator_object(v, p, cx).into_iter().flatten() {
        let kp = child(p, key);
        if !set_base_op(&mut c, key, v, &kp, cx) {
            unknown_op(&kp, key, BASE_OPS, cx);
        }
    }
    c
}

fn parse_string_comparator(v: &Value, p: &str, cx: &mut Cx) -> StringComparator {
    let mut c = StringComparator::default();
    for (key, v) in comparator_object(v, p, cx).into_iter().flatten() {
        let kp = child(p, key);
        if set_base_op(&mut c.base, key, v, &kp, cx) {
            continue;
        }
        let slot = match key.as_str() {
            "contains" => &mut c.contains,
            "notContains" => &mut c.not_contains,
            "startsWith" => &mut c.starts_with,
            "endsWith" => &mut c.ends_with,
            "containsIgnoreCase" => &mut c.contains_ignore_case,
            _ => {
                unknown_op(&kp, key, STRING_OPS, cx);
                continue;
            }
        };
        *slot = parse_one(v, &kp, cx);
        cx.comparisons += 1;
    }
    c
}

fn parse_metadata(v: &Value, p: &str, cx: &mut Cx) -> MetadataComparator {
    let mut c = MetadataComparator::default();
    for (key, v) in comparator_object(v, p, cx).into_iter().flatten() {
        let kp = child(p, key);
        match key.as_str() {
            "contains" => match v.as_object() {
                Some(obj) => c.contains = Some(obj.clone()),
                None => cx.err(&kp, "expected a JSON object"),
            },
            "hasKey" => c.has_key = parse_one(v, &kp, cx),
            _ => {
                unknown_op(&kp, key, &["contains", "hasKey"], cx);
                continue;
            }
        }
        cx.comparisons += 1;
    }
    c
}

fn parse_steps(v: &Value, p: &str, depth: usize, cx: &mut Cx) -> StepsFilter {
    let mut s = StepsFilter::default();
    let Some(obj) = v.as_object() else {
        cx.err(p, "expected an object with some, every or none");
        return s;
    };
    for (key, v) in obj {
        let kp = child(p, key);
        let slot = match key.as_str() {
            "some" => &mut s.some,
            "every" => &mut s.every,
            "none" => &mut s.none,
            _ => {
                unknown_op(&kp, key, &["some", "every", "none"], cx);
                continue;
            }
        };
        *slot = Some(parse_object(v, &kp, depth + 1, cx));
    }
    s
}

/// Implements [`FilterObject`] for a filter struct: each field key maps to
/// its parser. Relation keys are given as `key => parser` separately.
macro_rules! filter_object {
    ($name:ident {
        $($key:literal => $field:ident : $parse:expr),* $(,)?
    } $(relations { $($rkey:literal => $rfield:ident : $rparse:expr),* $(,)? })?) => {
        impl FilterObject for $name {
            const FIELDS: &'static [&'static str] = &[$($key),* $($(, $rkey)*)?];
            fn logic(&mut self) -> (&mut Vec<Self>, &mut Option<Vec<Self>>, &mut Option<Box<Self>>) {
                (&mut self.and, &mut self.or, &mut self.not)
            }
            #[allow(clippy::redundant_closure_call)]
            fn set_field(&mut self, key: &str, v: &Value, p: &str, depth: usize, cx: &mut Cx) -> bool {
                let _ = depth;
                match key {
                    $($key => self.$field = Some(($parse)(v, p, cx)),)*
                    $($($rkey => self.$rfield = Some(($rparse)(v, p, depth + 1, cx)),)*)?
                    _ => return false,
                }
                true
            }
        }
    };
}

filter_object!(DeployFilter {
    "id" => id: parse_string_comparator,
    "workspaceId" => workspace_id: parse_string_comparator,
    "entityId" => entity_id: parse_string_comparator,
    "sequenceNumber" => sequence_number: parse_comparator,
    "buildId" => build_id: parse_string_comparator,
    "status" => status: parse_comparator,
    "trigger" => trigger: parse_comparator,
    "sourceEventId" => source_event_id: parse_string_comparator,
    "productionUrl" => production_url: parse_string_comparator,
    "previewUrl" => preview_url: parse_string_comparator,
    "error" => error: parse_string_comparator,
    "metadata" => metadata: parse_metadata,
    "createdBy" => created_by: parse_string_comparator,
    "startedAt" => started_at: parse_comparator,
    "completedAt" => completed_at: parse_comparator,
    "createdAt" => created_at: parse_comparator,
} relations {
    "build" => build: parse_object,
    "entity" => entity: parse_object,
    "steps" => steps: parse_steps,
});

filter_object!(BuildFilter {
    "id" => id: parse_string_comparator,
    "status" => status: parse_comparator,
    "branch" => branch: parse_string_comparator,
    "commitSha" => commit_sha: parse_string_comparator,
    "versionId" => version_id: parse_string_comparator,
    "entityId" => entity_id: parse_string_comparator,
    "createdAt" => created_at: parse_comparator,
    "error" => error: parse_string_comparator,
    "artifactDir" => artifact_dir: parse_string_comparator,
});

filter_object!(EntityFilter {
    "id" => id: parse_string_comparator,
    "kind" => kind: parse_comparator,
    "name" => name: parse_string_comparator,
    "defaultVersionId" => default_version_id: parse_string_comparator,
    "autoDeploy" => auto_deploy: parse_comparator,
    "createdAt" => created_at: parse_comparator,
    "updatedAt" => updated_at: parse_comparator,
});

filter_object!(StepFilter {
    "name" => name: parse_string_comparator,
    "status" => status: parse_comparator,
    "error" => error: parse_string_comparator,
    "startedAt" => started_at: parse_comparator,
    "completedAt" => completed_at: parse_comparator,
});

// ---------------------------------------------------------------------------
// Lowering
// ---------------------------------------------------------------------------

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn lower_base<T: FilterValue>(column: &'static str, c: &Comparator<T>, out: &mut Vec<Node>) {
    let cmp = |op, v: &Option<T>| v.as_ref().map(|v| test(column, Test::Cmp(op, v.to_sql())));
    out.extend(cmp(CmpOp::Eq, &c.eq));
    out.extend(cmp(CmpOp::Neq, &c.neq));
    let list = |vs: &[T]| vs.iter().map(FilterValue::to_sql).collect::<Vec<_>>();
    out.extend(c.in_.as_deref().map(|vs| test(column, Test::In(list(vs)))));
    out.extend(
        c.nin
            .as_deref()
            .map(|vs| test(column, Test::NotIn(list(vs)))),
    );
    out.extend(cmp(CmpOp::Lt, &c.lt));
    out.extend(cmp(CmpOp::Lte, &c.lte));
    out.extend(cmp(CmpOp::Gt, &c.gt));
    out.extend(cmp(CmpOp::Gte, &c.gte));
    out.extend(c.null.map(|n| test(column, Test::IsNull(n))));
}

fn lower_string(column: &'static str, c: &StringComparator, out: &mut Vec<Node>) {
    lower_base(column, &c.base, out);
    let like = |pattern: String, negated, fold_case| {
        test(
            column,
            Test::Like {
                pattern,
                negated,
                fold_case,
            },
        )
    };
    let inner = |s: &String| format!("%{}%", escape_like(s));
    out.extend(c.contains.as_ref().map(|s| like(inner(s), false, false)));
    out.extend(c.not_contains.as_ref().map(|s| like(inner(s), true, false)));
    out.extend(
        c.starts_with
            .as_ref()
            .map(|s| like(format!("{}%", escape_like(s)), false, false)),
    );
    out.extend(
        c.ends_with
            .as_ref()
            .map(|s| like(format!("%{}", escape_like(s)), false, false)),
    );
    out.extend(
        c.contains_ignore_case
            .as_ref()
            .map(|s| like(inner(&s.to_ascii_lowercase()), false, true)),
    );
}

/// Lowers a typed filter to a [`Node`] (columns unqualified).
pub(crate) trait Lower {
    fn lower(&self) -> Node;
}

fn lower_logic<F: Lower>(
    and: &[F],
    or: &Option<Vec<F>>,
    not: &Option<Box<F>>,
    out: &mut Vec<Node>,
) {
    out.extend(and.iter().map(Lower::lower));
    if let Some(or) = or {
        out.push(Node::Any(or.iter().map(Lower::lower).collect()));
    }
    if let Some(not) = not {
        out.push(Node::Not(Box::new(not.lower())));
    }
}

macro_rules! lower_fields {
    ($self:ident, $out:ident, $($kind:ident $field:ident => $column:literal),* $(,)?) => {
        $( if let Some(c) = &$self.$field { $kind($column, c, &mut $out); } )*
    };
}

impl Lower for DeployFilter {
    fn lower(&self) -> Node {
        let mut out = Vec::new();
        lower_logic(&self.and, &self.or, &self.not, &mut out);
        lower_fields!(self, out,
            lower_string id => "id",
            lower_string workspace_id => "workspace_id",
            lower_string entity_id => "entity_id",
            lower_base sequence_number => "sequence_number",
            lower_string build_id => "build_id",
            lower_base status => "status",
            lower_base trigger => "trigger",
            lower_string source_event_id => "source_event_id",
            lower_string production_url => "production_url",
            lower_string preview_url => "preview_url",
            lower_string error => "error",
            lower_string created_by => "created_by",
            lower_base started_at => "started_at",
            lower_base completed_at => "completed_at",
            lower_base created_at => "created_at",
        );
        if let Some(m) = &self.metadata {
            if let Some(obj) = &m.contains {
                out.push(test(
                    "metadata",
                    Test::JsonContains(Value::Object(obj.clone())),
                ));
            }
            if let Some(key) = &m.has_key {
                out.push(test("metadata", Test::HasKey(key.clone())));
            }
        }
        let related = |relation, node: Node| Node::Related {
            relation,
            node: Box::new(node),
        };
        if let Some(b) = &self.build {
            out.push(related(Relation::Build, b.lower()));
        }
        if let Some(e) = &self.entity {
            out.push(related(Relation::Entity, e.lower()));
        }
        if let Some(s) = &self.steps {
            out.extend(
                s.some
                    .as_ref()
                    .map(|f| related(Relation::SomeStep, f.lower())),
            );
            out.extend(
                s.every
                    .as_ref()
                    .map(|f| related(Relation::EveryStep, f.lower())),
            );
            out.extend(
                s.none
                    .as_ref()
                    .map(|f| related(Relation::NoStep, f.lower())),
            );
        }
        Node::All(out)
    }
}

impl Lower for BuildFilter {
    fn lower(&self) -> Node {
        let mut out = Vec::new();
        lower_logic(&self.and, &self.or, &self.not, &mut out);
        lower_fields!(self, out,
            lower_string id => "id",
            lower_base status => "status",
            lower_string branch => "branch",
            lower_string commit_sha => "commit_sha",
            lower_string version_id => "version_id",
            lower_string entity_id => "entity_id",
            lower_base created_at => "created_at",
            lower_string error => "error",
            lower_string artifact_dir => "artifact_dir",
        );
        Node::All(out)
    }
}

impl Lower for EntityFilter {
    fn lower(&self) -> Node {
        let mut out = Vec::new();
        lower_logic(&self.and, &self.or, &self.not, &mut out);
        lower_fields!(self, out,
            lower_string id => "id",
            lower_base kind => "kind",
            lower_string name => "name",
            lower_string default_version_id => "default_version_id",
            lower_base auto_deploy => "auto_deploy",
            lower_base created_at => "created_at",
            lower_base updated_at => "updated_at",
        );
        Node::All(out)
    }
}

impl Lower for StepFilter {
    fn lower(&self) -> Node {
        let mut out = Vec::new();
        lower_logic(&self.and, &self.or, &self.not, &mut out);
        lower_fields!(self, out,
            lower_string name => "name",
            lower_base status => "status",
            lower_string error => "error",
            lower_base started_at => "started_at",
            lower_base completed_at => "completed_at",
        );
        Node::All(out)
    }
}
