//! The SQL functions the embedded schema calls (`migrations/sqlite/`),
//! registered on every SQLite connection before it is used. SQLite has no
//! ULID, no RFC 3339 clock in sqlx's rendering and no SHA-256, and the
//! events trigger needs all three in the appending transaction, exactly as
//! the PostgreSQL triggers have them.
//!
//! - `deployd_ulid()`: a new ULID (text).
//! - `deployd_now()`: now, as sqlx writes a `DateTime<Utc>` to SQLite, so
//!   the database's own timestamps compare with bound ones as text.
//! - `deployd_event_hash(previous, aggregate_type, aggregate_id, sequence,
//!   event_type, event_version, payload, metadata, event_id)`: the hash
//!   chain link of `audit::chain`, over the event as stored.
//! - `deployd_json_contains(document, pattern)` and
//!   `deployd_json_has_key(document, key)`: PostgreSQL's jsonb `@>` and `?`,
//!   for the list's metadata filters.

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

use crate::store::chain::{self, Hashed};

/// Registers the functions on one connection.
///
/// # Safety
/// `db` must be a live connection handle, used by no other thread during
/// the call (sqlx's `LockedSqliteHandle` guarantees both).
pub unsafe fn register(db: NonNull<ffi::sqlite3>) -> Result<(), String> {
    type Func =
        unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);
    let pure = ffi::SQLITE_DETERMINISTIC;
    let functions: [(&str, c_int, c_int, Func); 5] = [
        ("deployd_ulid", 0, 0, ulid),
        ("deployd_now", 0, 0, now),
        ("deployd_event_hash", 9, pure, event_hash),
        ("deployd_json_contains", 2, pure, json_contains),
        ("deployd_json_has_key", 2, pure, json_has_key),
    ];
    for (name, args, flags, func) in functions {
        let c_name = CString::new(name).expect("no NUL in a function name");
        let rc = ffi::sqlite3_create_function_v2(
            db.as_ptr(),
            c_name.as_ptr(),
            args,
            ffi::SQLITE_UTF8 | flags,
            std::ptr::null_mut(),
            Some(func),
            None,
            None,
            None,
        );
        if rc != ffi::SQLITE_OK {
            return Err(format!("registering {name} failed with SQLite code {rc}"));
        }
    }
    Ok(())
}

/// The time as sqlx renders a `DateTime<Utc>` for SQLite.
pub fn render_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

unsafe fn result_text(ctx: *mut ffi::sqlite3_context, text: &str) {
    ffi::sqlite3_result_text(
        ctx,
        text.as_ptr() as *const c_char,
        text.len() as c_int,
        ffi::SQLITE_TRANSIENT(),
    );
}

unsafe extern "C" fn ulid(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    result_text(ctx, &ulid::Ulid::generate().to_string());
}

unsafe extern "C" fn now(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    result_text(ctx, &render_time(&crate::domain::time::now()));
}

/// The bytes of a text or blob argument; `None` for NULL.
unsafe fn bytes<'a>(value: *mut ffi::sqlite3_value) -> Option<&'a [u8]> {
    match ffi::sqlite3_value_type(value) {
        ffi::SQLITE_NULL => None,
        ffi::SQLITE_BLOB => {
            let len = ffi::sqlite3_value_bytes(value) as usize;
            let ptr = ffi::sqlite3_value_blob(value) as *const u8;
            Some(if len == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(ptr, len)
            })
        }
        _ => {
            // text (numbers are converted to their text by SQLite)
            let ptr = ffi::sqlite3_value_text(value);
            let len = ffi::sqlite3_value_bytes(value) as usize;
            Some(if ptr.is_null() || len == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(ptr, len)
            })
        }
    }
}

unsafe fn text<'a>(value: *mut ffi::sqlite3_value) -> Result<&'a str, &'static str> {
    std::str::from_utf8(bytes(value).ok_or("a NULL where text was expected")?)
        .map_err(|_| "text that is not UTF-8")
}

unsafe extern "C" fn event_hash(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let args = std::slice::from_raw_parts(argv, argc as usize);
    let computed = (|| -> Result<[u8; 32], &'static str> {
        let previous = bytes(args[0]);
        let event = Hashed {
            aggregate_type: text(args[1])?,
            aggregate_id: text(args[2])?,
            sequence: ffi::sqlite3_value_int64(args[3]),
            event_type: text(args[4])?,
            event_version: text(args[5])?,
            payload: text(args[6])?,
            metadata: text(args[7])?,
            event_id: text(args[8])?,
        };
        Ok(chain::chain(previous, &event))
    })();
    match computed {
        Ok(hash) => ffi::sqlite3_result_blob(
            ctx,
            hash.as_ptr() as *const c_void,
            hash.len() as c_int,
            ffi::SQLITE_TRANSIENT(),
        ),
        Err(message) => ffi::sqlite3_result_error(
            ctx,
            message.as_ptr() as *const c_char,
            message.len() as c_int,
        ),
    }
}

/// jsonb containment (`document @> pattern`): objects contain the pattern's
/// keys with contained values, arrays contain each of the pattern's
/// elements somewhere, a top-level array contains a bare scalar, scalars
/// are equal.
pub fn json_contains_value(document: &serde_json::Value, pattern: &serde_json::Value) -> bool {
    fn contains(d: &serde_json::Value, p: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match (d, p) {
            (Object(d), Object(p)) => p
                .iter()
                .all(|(k, pv)| d.get(k).is_some_and(|dv| contains(dv, pv))),
            (Array(d), Array(p)) => p.iter().all(|pv| d.iter().any(|dv| contains(dv, pv))),
            (Number(a), Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        }
    }
    match (document, pattern) {
        (serde_json::Value::Array(d), p) if !p.is_array() && !p.is_object() => {
            d.iter().any(|dv| contains(dv, p))
        }
        (d, p) => contains(d, p),
    }
}

/// jsonb key existence (`document ? key`): an object's key, an array's
/// string element, or the string itself.
pub fn json_has_key_value(document: &serde_json::Value, key: &str) -> bool {
    match document {
        serde_json::Value::Object(m) => m.contains_key(key),
        serde_json::Value::Array(a) => a.iter().any(|v| v.as_str() == Some(key)),
        serde_json::Value::String(s) => s == key,
        _ => false,
    }
}

unsafe fn json_arg(value: *mut ffi::sqlite3_value) -> Option<serde_json::Value> {
    serde_json::from_slice(bytes(value)?).ok()
}

unsafe extern "C" fn json_contains(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let args = std::slice::from_raw_parts(argv, argc as usize);
    match (json_arg(args[0]), json_arg(args[1])) {
        (Some(d), Some(p)) => ffi::sqlite3_result_int(ctx, json_contains_value(&d, &p) as c_int),
        _ => ffi::sqlite3_result_null(ctx),
    }
}

unsafe extern "C" fn json_has_key(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    let args = std::slice::from_raw_parts(argv, argc as usize);
    match (json_arg(args[0]), text(args[1])) {
        (Some(d), Ok(k)) => ffi::sqlite3_result_int(ctx, json_has_key_value(&d, k) as c_int),
        _ => ffi::sqlite3_result_null(ctx),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn containment_follows_jsonb() {
        let doc = json!({"team": "web", "tags": ["a", "b"], "n": 1, "deep": {"x": {"y": 2}}});
        assert!(json_contains_value(&doc, &json!({})));
        assert!(json_contains_value(&doc, &json!({"team": "web"})));
        assert!(json_contains_value(&doc, &json!({"n": 1.0})));
        assert!(json_contains_value(&doc, &json!({"tags": ["b"]})));
        assert!(json_contains_value(&doc, &json!({"deep": {"x": {}}})));
        assert!(!json_contains_value(&doc, &json!({"team": "api"})));
        assert!(!json_contains_value(&doc, &json!({"tags": "a"})));
        assert!(!json_contains_value(&doc, &json!({"missing": null})));
        assert!(json_contains_value(&json!(["a", 1]), &json!("a")));
    }

    #[test]
    fn key_existence_follows_jsonb() {
        assert!(json_has_key_value(&json!({"a": null}), "a"));
        assert!(!json_has_key_value(&json!({"a": {"b": 1}}), "b"));
        assert!(json_has_key_value(&json!(["a"]), "a"));
        assert!(!json_has_key_value(&json!(1), "1"));
    }
}
