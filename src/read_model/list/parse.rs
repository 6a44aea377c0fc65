//! Parsing a filter by hand from `serde_json::Value`, so that each rejection
//! has our message and a pointer into the parameter, e.g.
//! `filter/or/1/sequenceNumber/gt`: "expected an integer". The limits
//! (size, depth, comparisons, list lengths) are enforced here too.

use serde_json::{Map, Value};

use super::filter::{
    BuildFilter, Comparator, DeployFilter, EntityFilter, FilterValue, MetadataComparator,
    StepFilter, StepsFilter, StringComparator, MAX_COMPARISONS, MAX_DEPTH, MAX_FILTER_BYTES,
    MAX_IN_VALUES,
};
use crate::domain::FieldError;

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
    // A NUL can be in no stored text (PostgreSQL refuses it): the same 400
    // on both engines rather than an error from one of them.
    if let Some(at) = crate::domain::json::duplicate_key(text.as_bytes()) {
        return Err(vec![FieldError::new(
            format!("{pointer}/{at}"),
            "this key appears more than once in its object",
        )]);
    }
    let nul = crate::domain::json::nul_issues(&value, pointer);
    if !nul.is_empty() {
        return Err(nul
            .into_iter()
            .map(|i| FieldError::new(i.pointer, i.message))
            .collect());
    }
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
    match obj {
        None => cx.err(p, "expected an object of comparators, e.g. {\"eq\": …}"),
        // `{}` would match everything: a mistake, not a filter.
        Some(o) if o.is_empty() => cx.err(p, "give at least one comparator, e.g. {\"eq\": …}"),
        Some(_) => {}
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
    "target" => target: parse_comparator,
    "live" => live: parse_comparator,
    "rollbackOf" => rollback_of: parse_string_comparator,
    "promotedFrom" => promoted_from: parse_string_comparator,
    "supersededBy" => superseded_by: parse_string_comparator,
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
    "deployPolicy" => deploy_policy: parse_comparator,
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
