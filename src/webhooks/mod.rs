//! Signed webhooks (`spec/feeds.md`): the endpoints of a workspace receive
//! its events as Standard Webhooks POSTs.
//!
//! Two halves, both safe across restarts and processes:
//! - the [`fanout`], a checkpointed reader of the log,
//!   writes one delivery row per (enabled webhook, event it wants) in the
//!   transaction that moves its checkpoint: an event is fanned out exactly
//!   once, however the process dies;
//! - the [`sender`] sends due deliveries and records each attempt. One
//!   sender is active per installation (a lease: a session advisory lock,
//!   or a lock in the embedded process), so processes do not send an event
//!   twice as a matter of course; a delivery whose answer was not recorded
//!   before a crash is still pending and is sent again (at least once,
//!   same `webhook-id`).

pub mod address;
pub mod fanout;
pub mod sender;
pub mod signing;
pub mod store;

use std::time::Duration;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Send to loopback and private addresses (`DEPLOYD_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// The waits before each retry; after the last, a delivery is `failed`
    /// (`DEPLOYD_WEBHOOK_RETRY_SCHEDULE`).
    pub retry_schedule: Vec<Duration>,
    /// How long an endpoint has to answer.
    pub timeout: Duration,
    /// A webhook whose deliveries all failed for this long is disabled.
    pub disable_after: Duration,
    /// How long the secret before a rotation still signs.
    pub rotation_overlap: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_schedule: parse_schedule("5s,1m,10m,1h,6h").expect("the default schedule"),
            timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(3 * 24 * 3600),
            rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

/// Reads `5s,1m,10m,1h,6h` (units `ms`, `s`, `m`, `h`, `d`).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &part[digits.len()..];
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("{part:?} is not a duration like 5s, 1m, 6h"))?;
            let ms = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("{part:?}: the unit must be ms, s, m, h or d")),
            };
            Ok(Duration::from_millis(n * ms))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_reads_as_its_durations() {
        assert_eq!(
            parse_schedule("5s, 1m,10m,1h,6h,250ms,1d").unwrap(),
            [5, 60, 600, 3600, 21600]
                .iter()
                .map(|s| Duration::from_secs(*s))
                .chain([Duration::from_millis(250), Duration::from_secs(86400)])
                .collect::<Vec<_>>()
        );
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("s").is_err());
    }
}
