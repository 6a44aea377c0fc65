//! What every benchmark binary shares. Included with
//! `#[path = "common/mod.rs"] mod common;`.

#![allow(dead_code)] // each bench uses part of it

/// A number from the environment (`_` separators allowed), or `default`.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The PostgreSQL server, as the tests find it (`DEPLOYD_TEST_DATABASE_URL`,
/// default local trust auth); benches make and drop databases of their own
/// on it.
pub fn server_url() -> String {
    std::env::var("DEPLOYD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// The 1, 5 and 15 minute load averages (other work on the machine).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// p50 and p99 (nearest rank) of `values`, in the values' unit.
pub fn percentiles(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| {
        let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        values[i]
    };
    (rank(0.50), rank(0.99))
}
