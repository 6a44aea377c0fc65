//! Which JSON deployd accepts from outside (request bodies, catalog
//! documents, imported events): values that both engines store and hand
//! back exactly as they were accepted. PostgreSQL keeps `jsonb` numbers as
//! `numeric` and prints them without an exponent, and refuses NUL in text;
//! SQLite keeps the JSON text. So:
//!
//! - **numbers** are integers in the signed 64-bit range, or decimals (with
//!   a fraction or an exponent: IEEE doubles, as RFC 8259 advises) that are
//!   0 or have a magnitude from 1e-16 to below 1e16, and are not `-0`.
//!   Outside that, PostgreSQL prints a double back as a different JSON
//!   number (`1e18` as the integer `1000000000000000000`, `1.7976931348623157e308`
//!   as 309 digits), or not at all as a 64-bit one;
//! - **strings and keys** contain no NUL (`\u0000`), which PostgreSQL
//!   cannot store in text;
//! - **nesting** is at most [`MAX_DEPTH`] levels, so a stored event, which
//!   wraps the value in a few levels of its own, still decodes within
//!   serde_json's recursion limit.
//!
//! [`check`] names every value outside these rules by its pointer.

use serde_json::Value;

/// Deepest nesting of arrays and objects accepted inside one value.
pub const MAX_DEPTH: usize = 32;
/// Decimals are accepted from this magnitude …
pub const MIN_DECIMAL: f64 = 1e-16;
/// … to below this one.
pub const MAX_DECIMAL: f64 = 1e16;
/// At most this many issues are reported for one value.
const MAX_ISSUES: usize = 10;

/// One value outside the rules: where (`pointer`, `/`-separated below the
/// pointer given to [`check`]) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// The issues of `value`, whose own pointer is `pointer` (empty: none).
pub fn check(value: &Value, pointer: &str) -> Vec<Issue> {
    let mut issues = Vec::new();
    walk(value, pointer.to_string(), 0, &mut issues);
    issues
}

/// Why `number` is refused, if it is.
pub fn number_issue(number: &serde_json::Number) -> Option<String> {
    if number.is_i64() {
        return None;
    }
    if number.is_u64() {
        return Some(format!(
            "integers must be from {} to {}",
            i64::MIN,
            i64::MAX
        ));
    }
    let x = number.as_f64().unwrap_or(f64::NAN);
    if x == 0.0 && x.is_sign_negative() {
        return Some("-0 is not accepted; send 0".into());
    }
    let magnitude = x.abs();
    if !(x == 0.0 || (MIN_DECIMAL..MAX_DECIMAL).contains(&magnitude)) {
        return Some(format!(
            "decimal numbers must be 0 or have a magnitude from {MIN_DECIMAL:e} to below \
             {MAX_DECIMAL:e} (integers: 64-bit), so that they read back exactly"
        ));
    }
    None
}

/// Why the string `s` is refused, if it is.
pub fn string_issue(s: &str) -> Option<&'static str> {
    s.contains('\0').then_some("must not contain NUL (\\u0000)")
}

/// A key as a pointer segment (RFC 6901 escapes; a NUL is shown as
/// `\u0000` so the pointer itself can be stored anywhere).
fn escape(key: &str) -> String {
    key.replace('~', "~0")
        .replace('/', "~1")
        .replace('\0', "\\u0000")
}

fn join(pointer: &str, part: &str) -> String {
    if pointer.is_empty() {
        part.to_string()
    } else {
        format!("{pointer}/{part}")
    }
}

fn walk(value: &Value, pointer: String, depth: usize, issues: &mut Vec<Issue>) {
    if issues.len() >= MAX_ISSUES {
        return;
    }
    let mut push = |pointer: String, message: String| {
        issues.push(Issue { pointer, message });
    };
    match value {
        Value::Null | Value::Bool(_) => {}
        Value::Number(n) => {
            if let Some(message) = number_issue(n) {
                push(pointer, message);
            }
        }
        Value::String(s) => {
            if let Some(message) = string_issue(s) {
                push(pointer, message.into());
            }
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            push(pointer, format!("nested more than {MAX_DEPTH} levels deep"));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, join(&pointer, &i.to_string()), depth + 1, issues);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let at = join(&pointer, &escape(key));
                if let Some(message) = string_issue(key) {
                    if issues.len() < MAX_ISSUES {
                        issues.push(Issue {
                            pointer: at.clone(),
                            message: format!("keys {message}"),
                        });
                    }
                }
                walk(item, at, depth + 1, issues);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(text: &str) -> Vec<String> {
        let value: Value = serde_json::from_str(text).unwrap();
        check(&value, "body")
            .into_iter()
            .map(|i| i.pointer)
            .collect()
    }

    #[test]
    fn ordinary_values_are_accepted() {
        let ok = json!({"pr": 42, "ratio": 0.5, "big": i64::MAX, "small": i64::MIN,
                        "tiny": 1.5e-16, "almost": 9.999999999999998e15, "zero": 0.0,
                        "s": "ünïcödé", "list": [1, "a", null, true], "nested": {"a": {"b": 1}}});
        assert_eq!(check(&ok, "body"), vec![]);
    }

    #[test]
    fn numbers_that_would_not_read_back_exactly_are_refused_by_pointer() {
        assert_eq!(
            refused(
                r#"{"a": 1.7976931348623157e308, "b": 1e16, "c": 18446744073709551615, "d": -0.0, "e": 5e-324, "f": [1, 1e300]}"#
            ),
            vec!["body/a", "body/b", "body/c", "body/d", "body/e", "body/f/1"]
        );
    }

    #[test]
    fn nul_in_strings_and_keys_is_refused() {
        assert_eq!(
            refused(r#"{"a\u0000b": 1, "c": "x\u0000", "d/e": ["\u0000"]}"#),
            vec!["body/a\\u0000b", "body/c", "body/d~1e/0"]
        );
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_once() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(check(&deep, ""), vec![]);
        let deeper = json!([deep]);
        assert_eq!(check(&deeper, "").len(), 1);
    }
}
