//! The `filter` parameter: a typed AST (`DeployFilter` and the filters of its
//! relations), parsed by hand from JSON so every rejection carries a pointer
//! into the parameter (`filter/or/1/sequenceNumber/gt`) and a message of ours,
//! (see `parse.rs`), and lowered to a `Node` tree for the SQL builder (see
//! `lower.rs`).
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

use crate::domain::ids::EntityKind;
use crate::domain::{DeployPolicy, DeployStatus, StepStatus, Target, Trigger};

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
#[schemars(rename = "{T}Comparator")]
pub struct Comparator<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eq: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neq: Option<T>,
    /// One of these (`[]` matches nothing).
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub in_: Option<Vec<T>>,
    /// None of these, and not null (`[]` matches every non-null value).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
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
        target: Comparator<Target>,
        /// Whether it is its entity's live deploy now.
        live: Comparator<bool>,
        rollback_of: StringComparator,
        promoted_from: StringComparator,
        superseded_by: StringComparator,
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
        /// `queue` or `latest`.
        deploy_policy: Comparator<DeployPolicy>,
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
enum_value!(DeployPolicy, [DeployPolicy::Queue => "queue", DeployPolicy::Latest => "latest"]);
enum_value!(Target, [Target::Production => "production", Target::Preview => "preview"]);
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

impl StringComparator {
    /// Every operand through `f`.
    fn map_operands(&mut self, f: &impl Fn(&mut String)) {
        let b = &mut self.base;
        for one in [
            &mut b.eq, &mut b.neq, &mut b.lt, &mut b.lte, &mut b.gt, &mut b.gte,
        ]
        .into_iter()
        .flatten()
        {
            f(one);
        }
        for many in [&mut b.in_, &mut b.nin].into_iter().flatten() {
            many.iter_mut().for_each(f);
        }
        for one in [
            &mut self.contains,
            &mut self.not_contains,
            &mut self.starts_with,
            &mut self.ends_with,
            &mut self.contains_ignore_case,
        ]
        .into_iter()
        .flatten()
        {
            f(one);
        }
    }
}

impl DeployFilter {
    /// Operands of `previewUrl` and `productionUrl` that name this
    /// server's public URL, as the locations the rows hold: the rows keep
    /// deployd's own serving as paths (`domain::location`) and the API
    /// answers them under `public_url`, so a URL copied from an answer
    /// matches its row.
    pub fn relocate(&mut self, public_url: &str) {
        let base = public_url.trim_end_matches('/');
        let strip = |s: &mut String| {
            if let Some(rest) = s.strip_prefix(base) {
                if rest.starts_with('/') {
                    *s = rest.to_string();
                }
            }
        };
        for c in [&mut self.preview_url, &mut self.production_url]
            .into_iter()
            .flatten()
        {
            c.map_operands(&strip);
        }
        for f in self.and.iter_mut() {
            f.relocate(public_url);
        }
        for f in self.or.iter_mut().flatten() {
            f.relocate(public_url);
        }
        if let Some(f) = self.not.as_mut() {
            f.relocate(public_url);
        }
    }
}
