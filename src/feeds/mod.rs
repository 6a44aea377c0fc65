//! Push feeds of the one event log (`spec/feeds.md`): Server-Sent Events
//! (`api/events.rs`), signed webhooks (`webhooks/`) and NATS (the relay)
//! all send an event as the same JSON ([`body`]), carrying its `eventId`
//! and `position`.
//!
//! What they share lives here: the event types a filter may name, the
//! position token (`<tx>:<position>`, the log's order on both engines), and
//! what a stream belongs to ([`Streams`]: its workspace and entity, read
//! from the stream's first event, which always carries them, and cached,
//! since they never change).

pub mod asyncapi;
pub mod hub;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::Value;

use crate::store::db::Db;
use crate::store::log::{self, LogPosition, StoredEvent};

/// Every event type the log holds.
pub const EVENT_TYPES: &[&str] = &[
    "DeployCreated",
    "DeployStarted",
    "StepStarted",
    "StepCompleted",
    "StepFailed",
    "StepDiscarded",
    "DeployCompleted",
    "DeployFailed",
    "DeployCancelled",
    "EntityUpserted",
    "BuildSucceeded",
    "BuildFailed",
];

/// The events after which a deploy changes no more.
pub const TERMINAL: &[&str] = &["DeployCompleted", "DeployFailed", "DeployCancelled"];

/// Reads a comma-separated list of event types; the unknown one is the
/// error.
pub fn parse_types(list: &str) -> Result<HashSet<String>, String> {
    let mut types = HashSet::new();
    for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !EVENT_TYPES.contains(&t) {
            return Err(t.to_string());
        }
        types.insert(t.to_string());
    }
    Ok(types)
}

pub use crate::readers::relay::{body, PublishedEvent};

/// A place in the log as clients see it: `<tx>:<position>`.
pub fn token(at: LogPosition) -> String {
    format!("{}:{}", at.tx, at.position)
}

/// Reads a [`token`]; `0` is the start of the log.
pub fn parse_token(s: &str) -> Option<LogPosition> {
    if s == "0" {
        return Some(LogPosition::START);
    }
    let (tx, position) = s.split_once(':')?;
    let tx: i64 = tx.parse().ok().filter(|t| *t >= 0)?;
    let position: i64 = position.parse().ok().filter(|p| *p >= 0)?;
    Some(LogPosition { tx, position })
}

/// What a stream belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub workspace: Option<String>,
    pub entity: Option<String>,
}

impl StreamInfo {
    /// What an event says of its stream, when it says it (a deploy's first
    /// event, every catalog event).
    fn of(event: &StoredEvent) -> Option<StreamInfo> {
        let data = event.data();
        let workspace = data.get("workspaceId").and_then(Value::as_str)?;
        let entity = if event.aggregate_type == "Entity" {
            Some(event.aggregate_id.clone())
        } else {
            data.get("entityId")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(StreamInfo {
            workspace: Some(workspace.to_string()),
            entity,
        })
    }
}

/// Streams' workspaces and entities, remembered (they never change).
#[derive(Default)]
pub struct Streams {
    known: Mutex<HashMap<(String, String), StreamInfo>>,
}

/// Beyond this many streams the memory starts over.
const REMEMBERED: usize = 100_000;

impl Streams {
    fn remember(&self, key: (String, String), info: StreamInfo) {
        let mut known = self.known.lock().expect("streams poisoned");
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(key, info);
    }

    fn recall(&self, key: &(String, String)) -> Option<StreamInfo> {
        self.known
            .lock()
            .expect("streams poisoned")
            .get(key)
            .cloned()
    }

    /// The stream of each event, in order.
    pub async fn resolve(
        &self,
        db: &Db,
        events: &[StoredEvent],
    ) -> Result<Vec<StreamInfo>, sqlx::Error> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
            if let Some(info) = self.recall(&key) {
                out.push(info);
                continue;
            }
            let info = match StreamInfo::of(event) {
                Some(info) => info,
                None => log::read_stream(db, &event.aggregate_type, &event.aggregate_id, 0, 1)
                    .await?
                    .first()
                    .and_then(StreamInfo::of)
                    .unwrap_or_default(),
            };
            self.remember(key, info.clone());
            out.push(info);
        }
        Ok(out)
    }
}

/// Which events of the log a reader wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The workspaces it may see (never empty in practice: the caller's).
    pub workspaces: Vec<String>,
    pub types: Option<HashSet<String>>,
    pub entity: Option<String>,
    pub deploy: Option<String>,
}

impl Filter {
    pub fn matches(&self, event: &StoredEvent, stream: &StreamInfo) -> bool {
        let Some(workspace) = &stream.workspace else {
            return false;
        };
        self.workspaces.iter().any(|w| w == workspace)
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.contains(&event.event_type))
            && self
                .entity
                .as_ref()
                .is_none_or(|e| stream.entity.as_ref() == Some(e))
            && self
                .deploy
                .as_ref()
                .is_none_or(|d| event.aggregate_type == "Deploy" && &event.aggregate_id == d)
    }
}

/// A stretch of the log as one reader sees it.
pub struct Page {
    /// The matching events, with their workspace.
    pub events: Vec<(StoredEvent, String)>,
    /// Where the next read starts: past every event looked at, matching or
    /// not.
    pub next: LogPosition,
    /// Whether the log may hold more after `next` now.
    pub more: bool,
}

const BATCH: i64 = 500;

/// Up to `limit` events after `after` that `filter` wants, in log order,
/// looking at no more than `scan` events (a page of a quiet filter over a
/// busy log ends early, with `more`).
pub async fn read(
    db: &Db,
    streams: &Streams,
    filter: &Filter,
    after: LogPosition,
    limit: usize,
    scan: usize,
) -> Result<Page, sqlx::Error> {
    let mut page = Page {
        events: Vec::new(),
        next: after,
        more: false,
    };
    let mut looked = 0;
    loop {
        let batch = log::read_after(db, page.next, BATCH).await?;
        let infos = streams.resolve(db, &batch).await?;
        let full = batch.len() as i64 == BATCH;
        for (event, info) in batch.into_iter().zip(infos) {
            page.next = event.log;
            looked += 1;
            if filter.matches(&event, &info) {
                let workspace = info.workspace.unwrap_or_default();
                page.events.push((event, workspace));
                if page.events.len() >= limit {
                    page.more = true;
                    return Ok(page);
                }
            }
        }
        if !full {
            return Ok(page);
        }
        if looked >= scan {
            page.more = true;
            return Ok(page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_as_the_position_it_was_made_from() {
        let at = LogPosition {
            tx: 812,
            position: 40211,
        };
        assert_eq!(token(at), "812:40211");
        assert_eq!(parse_token(&token(at)), Some(at));
        assert_eq!(parse_token("0"), Some(LogPosition::START));
        for bad in ["", "x", "1:", ":1", "-1:2", "1:2:3", "1.5:2"] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unknown_event_type_is_named() {
        assert_eq!(parse_types("DeployCreated, DeployFailed").unwrap().len(), 2);
        assert_eq!(parse_types("DeployCreated,Nope"), Err("Nope".into()));
    }
}
