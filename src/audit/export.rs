//! `deployd events export`: the log as JSON lines, in log order.
//!
//! Each line is one event: `position`, `tx` (the appending transaction),
//! `eventId`, `stream` (`{type, id}`), `sequence`, `type`, `version`,
//! `recordedAt`, `metadata`, `data` and `hash` (hex). Events are brought to
//! their current version first (`store::upcast`), so `version` and `data`
//! are what the code reads today; `hash` is over the event as stored
//! (`audit::chain`).
//!
//! `--workspace` keeps the events of streams in that workspace: a stream's
//! workspace is the `workspaceId` of its first event that has one (every
//! `DeployCreated`, `EntityUpserted` and build event carries it; later
//! deploy events do not repeat it).
//!
//! Order is the log's: `(tx, position)`, and only below the gap-safe horizon
//! (`store::log`), so an export never shows an event that a later export
//! would have to put before one already shown. `--from` resumes an export:
//! it takes the `tx:position` of the last line already exported (positions
//! alone are not in log order; a bare position `P` means "after the event at
//! position P").

use std::collections::HashMap;
use std::io::Write;

use crate::store::Db;
use chrono::SecondsFormat;
use serde_json::{json, Value};

use crate::store::log::{self, LogPosition, StoredEvent};

const BATCH: i64 = 5_000;

/// Where an export starts: after this point of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// `tx:position`, as the `tx` and `position` of an exported line.
    Log(LogPosition),
    /// A bare position: after the event stored at that position.
    Position(i64),
}

impl std::str::FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected POSITION or TX:POSITION, got {s:?}");
        match s.split_once(':') {
            Some((tx, position)) => Ok(From::Log(LogPosition {
                tx: tx.trim().parse().map_err(|_| bad())?,
                position: position.trim().parse().map_err(|_| bad())?,
            })),
            None => Ok(From::Position(s.trim().parse().map_err(|_| bad())?)),
        }
    }
}

/// One exported line.
pub fn line(event: &StoredEvent, hash: Option<&[u8]>) -> Value {
    json!({
        "position": event.log.position,
        "tx": event.log.tx,
        "eventId": event.event_id,
        "stream": {"type": event.aggregate_type, "id": event.aggregate_id},
        "sequence": event.sequence,
        "type": event.event_type,
        "version": event.version_json(),
        "recordedAt": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "metadata": event.metadata,
        "data": event.data(),
        "hash": hash.map(crate::store::chain::hex),
    })
}

/// Writes the log after `from` (only events whose data has this
/// `workspaceId`, when given) to `out`; returns how many lines.
pub async fn export(
    db: &Db,
    from: Option<From>,
    workspace: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    let mut at = match from {
        None => LogPosition::START,
        Some(From::Log(at)) => at,
        Some(From::Position(position)) => log::at_position(db, position)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no event at position {position}"))?,
    };
    let mut written = 0;
    let mut workspaces: HashMap<(String, String), Option<String>> = HashMap::new();
    loop {
        let events = log::read_after(db, at, BATCH).await?;
        let Some(last) = events.last().map(|e| e.log) else {
            break;
        };
        if workspace.is_some() {
            let unknown: Vec<(String, String)> = events
                .iter()
                .map(|e| (e.aggregate_type.clone(), e.aggregate_id.clone()))
                .filter(|key| !workspaces.contains_key(key))
                .collect::<std::collections::HashSet<_>>()
                .into_iter()
                .collect();
            let found = log::stream_workspaces(db, &unknown).await?;
            for key in unknown {
                let ws = found.get(&key).cloned();
                workspaces.insert(key, ws);
            }
        }
        for event in &events {
            if let Some(ws) = workspace {
                let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
                if workspaces.get(&key).and_then(Option::as_deref) != Some(ws) {
                    continue;
                }
            }
            serde_json::to_writer(&mut *out, &line(event, event.hash.as_deref()))?;
            out.write_all(b"\n")?;
            written += 1;
        }
        at = last;
    }
    out.flush()?;
    Ok(written)
}
