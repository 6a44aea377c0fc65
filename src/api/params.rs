//! Strict query strings: a parameter the endpoint does not take is a 400
//! naming it (a typo such as `entityId=` must not silently list
//! everything), as is a parameter given twice or one whose value is not
//! UTF-8 once percent-decoded (never decoded lossily).

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::api::problem::{FieldError, Problem};

/// Checks the raw query string against the parameters an endpoint takes.
pub fn check(query: Option<&str>, known: &[&str]) -> Result<(), Problem> {
    let Some(query) = query else {
        return Ok(());
    };
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = match decode(raw_name) {
            Some(name) => name,
            None => {
                errors.push(FieldError::new(
                    "query",
                    "a parameter name is not UTF-8 once percent-decoded",
                ));
                continue;
            }
        };
        if !known.contains(&name.as_str()) {
            errors.push(FieldError::new(
                name.clone(),
                if known.is_empty() {
                    "unknown parameter; this endpoint takes none".to_string()
                } else {
                    format!("unknown parameter; expected one of {}", known.join(", "))
                },
            ));
            continue;
        }
        if !seen.insert(name.clone()) {
            errors.push(FieldError::new(name.clone(), "given more than once"));
        }
        if decode(raw_value).is_none() {
            errors.push(FieldError::new(name, "is not UTF-8 once percent-decoded"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors))
    }
}

/// Percent-decodes a query component (`+` is a space); `None` when the
/// bytes are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// An extractor that refuses query parameters the endpoint does not take:
/// those its documented parameter type `P` (the one its `Query<P>`
/// describes in the OpenAPI document) does not name. The document and the
/// server agree by construction.
pub struct Strict<P>(std::marker::PhantomData<P>);

/// The names of `P`'s properties, as serde reads them (computed once per
/// type).
pub fn known<P: schemars::JsonSchema + 'static>() -> Arc<[String]> {
    static KNOWN: LazyLock<RwLock<HashMap<TypeId, Arc<[String]>>>> =
        LazyLock::new(Default::default);
    let id = TypeId::of::<P>();
    if let Some(names) = KNOWN.read().ok().and_then(|m| m.get(&id).cloned()) {
        return names;
    }
    let schema = schemars::schema_for!(P);
    let names: Arc<[String]> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if let Ok(mut map) = KNOWN.write() {
        map.insert(id, names.clone());
    }
    names
}

impl<S: Send + Sync, P: schemars::JsonSchema + 'static> FromRequestParts<S> for Strict<P> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let known = known::<P>();
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        check(parts.uri.query(), &names)?;
        Ok(Strict(std::marker::PhantomData))
    }
}

impl<P> aide::operation::OperationInput for Strict<P> {}

/// The query of an endpoint that takes no parameters.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct NoQuery {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(query: &str) -> Vec<String> {
        match check(Some(query), &["limit", "status"]) {
            Ok(()) => vec![],
            Err(p) => p.errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn the_known_parameters_are_the_documented_types_properties() {
        let list = known::<crate::read_model::list::RawListParams>();
        assert!(list.iter().any(|n| n == "orderBy"));
        assert!(list.iter().any(|n| n == "entity_id"));
        assert!(known::<NoQuery>().is_empty());
    }

    #[test]
    fn unknown_repeated_and_non_utf8_parameters_are_named() {
        assert_eq!(pointers("limit=1&status=pending"), Vec::<String>::new());
        assert_eq!(pointers("entityId=app_1"), vec!["entityId"]);
        assert_eq!(pointers("limit=1&limit=2"), vec!["limit"]);
        assert_eq!(pointers("status=%FF"), vec!["status"]);
        assert_eq!(pointers("status=caf%C3%A9+x"), Vec::<String>::new());
    }
}
