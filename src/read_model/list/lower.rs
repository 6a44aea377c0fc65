//! Lowering a typed filter to a [`Node`] tree: boolean structure, column
//! tests with bound values, and relation subqueries, which is all the SQL
//! builder needs.

use serde_json::Value;

use super::filter::{
    BuildFilter, Comparator, DeployFilter, EntityFilter, FilterValue, StepFilter, StringComparator,
};

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
            lower_base target => "target",
            lower_base live => "live",
            lower_string rollback_of => "rollback_of",
            lower_string promoted_from => "promoted_from",
            lower_string superseded_by => "superseded_by",
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
            lower_base deploy_policy => "deploy_policy",
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
