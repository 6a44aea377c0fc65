//! Opaque, signed keyset cursors.
//!
//! A cursor is `base64url(payload ‖ HMAC-SHA256(key, payload))`, no padding,
//! where `payload` is the JSON `{"b": binding, "k": [values…]}`: the row's
//! sort-key values in key order (the last key is always `id`; timestamps as
//! integer microseconds since the epoch, nulls as `null`) and `binding`, a
//! hash of the canonical query the cursor was made for (see
//! [`super::binding`]). The signature makes forged or truncated cursors
//! fail; the binding makes a cursor of another `orderBy`/`filter` fail.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::DateTime;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::order::{KeyKind, KeyValue, OrderKey};

type HmacSha256 = Hmac<Sha256>;

const MAC_LEN: usize = 32;
/// Longer tokens are refused before any decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;
const INVALID: &str = "is not a valid cursor";
const MISMATCH: &str = "was made for another orderBy, filter, ids or shorthand parameters";

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"deployd/cursor/v1\0");
    mac
}

/// Encodes a signed cursor for a row with these sort-key `values`.
pub(crate) fn encode(key: &[u8], binding: &str, values: &[KeyValue]) -> String {
    let values: Vec<Value> = values
        .iter()
        .map(|v| match v {
            KeyValue::Null => Value::Null,
            KeyValue::Text(s) => Value::String(s.clone()),
            KeyValue::Int(i) => json!(i),
            KeyValue::Bool(b) => json!(b),
            KeyValue::Time(t) => json!(t.timestamp_micros()),
        })
        .collect();
    let mut bytes = json!({"b": binding, "k": values}).to_string().into_bytes();
    let mut m = mac(key);
    m.update(&bytes);
    bytes.extend_from_slice(&m.finalize().into_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Verifies and decodes a cursor made for `binding` under `keys`. The error
/// is a message for a [`crate::domain::FieldError`].
pub(crate) fn decode(
    key: &[u8],
    binding: &str,
    keys: &[OrderKey],
    token: &str,
) -> Result<Vec<KeyValue>, &'static str> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(INVALID);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| INVALID)?;
    if bytes.len() <= MAC_LEN {
        return Err(INVALID);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    let mut m = mac(key);
    m.update(payload);
    m.verify_slice(tag).map_err(|_| INVALID)?;
    // Signed by us: from here on a failure means the query changed.
    let payload: Value = serde_json::from_slice(payload).map_err(|_| INVALID)?;
    if payload.get("b").and_then(Value::as_str) != Some(binding) {
        return Err(MISMATCH);
    }
    let values = payload.get("k").and_then(Value::as_array).ok_or(INVALID)?;
    if values.len() != keys.len() {
        return Err(MISMATCH);
    }
    keys.iter()
        .zip(values)
        .map(|(k, v)| match (k.field.kind(), v) {
            (_, Value::Null) => Ok(KeyValue::Null),
            (KeyKind::Text, Value::String(s)) => Ok(KeyValue::Text(s.clone())),
            (KeyKind::Int, v) => v.as_i64().map(KeyValue::Int).ok_or(MISMATCH),
            (KeyKind::Bool, Value::Bool(b)) => Ok(KeyValue::Bool(*b)),
            (KeyKind::Time, v) => v
                .as_i64()
                .and_then(DateTime::from_timestamp_micros)
                .map(KeyValue::Time)
                .ok_or(MISMATCH),
            _ => Err(MISMATCH),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_model::list::order::{resolve, DeployOrderBy, Direction};

    fn keys() -> Vec<OrderKey> {
        resolve(&[
            DeployOrderBy::CreatedAt(Direction::Desc),
            DeployOrderBy::Error(Direction::Asc),
        ])
    }

    fn values() -> Vec<KeyValue> {
        vec![
            KeyValue::Time(DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap()),
            KeyValue::Null,
            KeyValue::Text("dep_X".into()),
        ]
    }

    #[test]
    fn a_cursor_round_trips_with_microseconds_and_nulls() {
        let token = encode(b"k", "bind", &values());
        assert_eq!(decode(b"k", "bind", &keys(), &token), Ok(values()));
        assert!(!token.contains('='));
    }

    #[test]
    fn forged_truncated_or_foreign_cursors_are_refused() {
        let token = encode(b"k", "bind", &values());
        assert_eq!(decode(b"other", "bind", &keys(), &token), Err(INVALID));
        assert_eq!(
            decode(b"k", "bind", &keys(), &token[..token.len() - 2]),
            Err(INVALID)
        );
        assert_eq!(decode(b"k", "bind", &keys(), "!!"), Err(INVALID));
        assert_eq!(decode(b"k", "bind", &keys(), ""), Err(INVALID));
        assert_eq!(decode(b"k", "other", &keys(), &token), Err(MISMATCH));
        // a payload edited without the key
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[10] ^= 1;
        let edited = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(decode(b"k", "bind", &keys(), &edited), Err(INVALID));
    }
}
