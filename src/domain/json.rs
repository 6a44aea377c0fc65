//! Which JSON deployd accepts from outside (request bodies, catalog
//! documents, imported events): values that both engines store and hand
//! back exactly as they were accepted. PostgreSQL keeps `jsonb` numbers as
//! `numeric` and prints them without an exponent, and refuses NUL in text;
//! SQLite keeps the JSON text. So:
//!
//! - **numbers** are integers in the signed 64-bit range (a longer integer
//!   literal would be rounded by the parser itself: [`integer_literal_issue`]
//!   finds one in the raw text), or decimals (a fraction or an exponent:
//!   IEEE doubles, as RFC 8259 advises) except `-0` and those from 1e16 to
//!   the 64-bit limits in magnitude: PostgreSQL prints a double without an
//!   exponent, so `1e18` comes back as the integer `1000000000000000000`
//!   (another JSON value), and `-0` as `0`. Larger decimals come back as
//!   the same double (serde_json's `float_roundtrip` reads PostgreSQL's 309
//!   digits of `1.7976931348623157e308` exactly);
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
/// Decimals from this magnitude up to the 64-bit integer limits read back
/// from PostgreSQL as integers, and are refused.
pub const INTEGRAL_DECIMAL: f64 = 1e16;
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
    // PostgreSQL prints these without an exponent, as integers a 64-bit
    // reader then takes for integers: not the value that was accepted.
    let integral_window = if x > 0.0 {
        (INTEGRAL_DECIMAL..18_446_744_073_709_551_616.0).contains(&x)
    } else {
        (-9_223_372_036_854_775_808.0..=-INTEGRAL_DECIMAL).contains(&x)
    };
    if integral_window {
        return Some(format!(
            "decimals of magnitude {INTEGRAL_DECIMAL:e} up to the 64-bit integer limits read \
             back as integers; send a 64-bit integer, or the number as a string"
        ));
    }
    None
}

/// The first integer literal of the JSON `text` (no fraction, no
/// exponent) outside the signed 64-bit range, with why: the parser would
/// round it to a double, so what was sent could not be read back.
pub fn integer_literal_issue(text: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                // Skip the string, with its escapes.
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < text.len()
                    && matches!(text[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = std::str::from_utf8(&text[start..i]).unwrap_or("");
                let integral = !literal.contains(['.', 'e', 'E']);
                if integral && literal.parse::<i64>().is_err() {
                    return Some(format!(
                        "the integer {literal} is outside the signed 64-bit range; send it as a \
                         string"
                    ));
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The strings (values and keys) of `value` that hold a NUL, by pointer:
/// text no PostgreSQL column can hold, so no stored value can equal it.
pub fn nul_issues(value: &Value, pointer: &str) -> Vec<Issue> {
    fn walk(value: &Value, pointer: String, issues: &mut Vec<Issue>) {
        match value {
            Value::String(s) if s.contains('\0') => issues.push(Issue {
                pointer,
                message: "must not contain NUL (\\u0000)".into(),
            }),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, join(&pointer, &i.to_string()), issues);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let at = join(&pointer, &escape(key));
                    if key.contains('\0') {
                        issues.push(Issue {
                            pointer: at.clone(),
                            message: "keys must not contain NUL (\\u0000)".into(),
                        });
                    }
                    walk(item, at, issues);
                }
            }
            _ => {}
        }
    }
    let mut issues = Vec::new();
    walk(value, pointer.to_string(), &mut issues);
    issues.truncate(MAX_ISSUES);
    issues
}

/// The pointer of the first key that appears twice in one object of the
/// JSON `text` (serde_json would keep the last silently); `None` when
/// there is none or the text is not JSON (the parser says why).
pub fn duplicate_key(text: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Seed<'a> {
        pointer: String,
        found: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            while seq
                .next_element_seed(Seed {
                    pointer: join(&self.pointer, &i.to_string()),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let pointer = join(&self.pointer, &escape(&key));
                if !seen.insert(key) && self.found.borrow().is_none() {
                    *self.found.borrow_mut() = Some(pointer.clone());
                }
                map.next_value_seed(Seed {
                    pointer,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let _ = Seed {
        pointer: String::new(),
        found: &found,
    }
    .deserialize(&mut deserializer);
    found.into_inner()
}

/// `value` as text with every object's keys sorted: the same JSON, however
/// its keys were ordered, gives the same text (an idempotency fingerprint).
pub fn canonical_text(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
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
                        "tiny": 5e-324, "almost": 9.999999999999998e15, "zero": 0.0,
                        "huge": 1e21, "max": f64::MAX, "negative": -1e300,
                        "s": "ünïcödé", "list": [1, "a", null, true], "nested": {"a": {"b": 1}}});
        assert_eq!(check(&ok, "body"), vec![]);
    }

    #[test]
    fn numbers_that_would_not_read_back_exactly_are_refused_by_pointer() {
        assert_eq!(
            refused(
                r#"{"a": 1.8e19, "b": 1e16, "c": 18446744073709551615, "d": -0.0, "e": -1e16, "f": [1, -9.2e18]}"#
            ),
            vec!["body/a", "body/b", "body/c", "body/d", "body/e", "body/f/1"]
        );
    }

    #[test]
    fn integer_literals_beyond_64_bits_are_found_in_the_text() {
        let none = |t: &str| integer_literal_issue(t.as_bytes());
        assert_eq!(
            none(r#"{"a": 1, "b": -9223372036854775808, "c": 1e400, "d": 2.5}"#),
            None
        );
        assert_eq!(
            none(r#"{"a": "18446744073709551616 \" 99999999999999999999"}"#),
            None
        );
        assert!(none(r#"{"a": [18446744073709551616]}"#).is_some());
        assert!(none(r#"{"a": -9223372036854775809}"#).is_some());
    }

    #[test]
    fn a_key_twice_in_one_object_is_found_by_pointer() {
        assert_eq!(duplicate_key(br#"{"a": 1, "b": {"c": 1, "d": 2}}"#), None);
        assert_eq!(duplicate_key(br#"{"a": 1, "a": 2}"#), Some("a".into()));
        assert_eq!(
            duplicate_key(br#"{"m": [{"x": 1}, {"x": 1, "y": 2, "x": 3}]}"#),
            Some("m/1/x".into())
        );
        assert_eq!(duplicate_key(b"not json"), None);
    }

    #[test]
    fn canonical_text_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": 2}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": 2, "y": [1, {"p": 2, "q": 1}]}, "b": 1}"#).unwrap();
        assert_eq!(canonical_text(&a), canonical_text(&b));
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
