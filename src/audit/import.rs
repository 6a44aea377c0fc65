//! `deployd events import`: appends the JSON lines of `deployd events
//! export` to this store, in file order, keeping what the events were:
//! event ids, streams and sequences, deploy numbers, `recordedAt`, metadata
//! and version. It is how an installation moves between engines (the
//! embedded SQLite file to PostgreSQL, or back) without losing anything.
//!
//! Two passes over the file (stdin is spooled to a temporary file first):
//!
//! 1. **Check**, writing nothing: every line must parse, name a stream type
//!    this build knows, carry an event that deserialises as that
//!    aggregate's event at the version this build writes, and follow its
//!    stream's previous line (sequence + 1). When a line has a `hash`, its
//!    link is recomputed (below). One bad line refuses the whole file.
//! 2. **Append**, every line in one transaction. An event whose `eventId` is
//!    already stored (at the same stream and sequence) is skipped, so a
//!    second run, or a run after a failure, appends only the rest. A
//!    different event at a stored stream and sequence, a deploy number the
//!    entity already used for another deploy, or a stream whose first line
//!    in the file has no predecessor in the store stops the import with the
//!    line's number; nothing of the file is applied (one line the store
//!    refuses imports nothing).
//!
//! The store recomputes every hash under its own JSON rendering, and the
//! triggers keep the given `sequenceNumber` of a `DeployCreated` (moving the
//! entity's counter), `event_id` and `recorded_at`; log positions are the
//! target's own. The read model is not written here: a server's projectors
//! catch up from their checkpoints. Tokens and idempotency keys are not
//! events and do not move; nor do the files of the local hosting target
//! (they stay in `DEPLOYD_DATA_DIR`).
//!
//! ## The hash check
//!
//! A line's `hash` is the source store's link over the event *as that store
//! rendered it*, chained to the previous event's stored hash. The check
//! recomputes it from the line under both renderings deployd stores:
//!
//! - SQLite stores the text serde_json wrote (compact, keys in the order
//!   written), which `export` reproduces exactly when it writes the line;
//! - PostgreSQL hashes `jsonb::text`: keys by length then bytes, `", "` and
//!   `": "`, numbers as `numeric` prints them (never an exponent, no
//!   negative zero). [`jsonb_text`] renders that from the line.
//!
//! A link matching neither fails the check, except where it cannot be
//! recomputed from the line: the first line of a stream that starts after
//! sequence 1 (its predecessor's hash is not in the file), a line after one
//! without a hash, and an event of a type and version that an upcaster
//! produces (`store::upcast`): export writes events at their current
//! version, so one stored in an older version hashed bytes the line no
//! longer shows. Those are counted as not verifiable. `--no-verify` skips
//! the check, for a file that is known good but renders JSON in a way this
//! check does not reproduce.

use crate::domain::deploy::Deploy;
use cqrs_es::Aggregate as _;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::domain::catalog::{BuildEvent, EntityEvent};
use crate::domain::deploy::DeployEvent;
use crate::store::chain::{self, Hashed};
use crate::store::db::Engine;
use crate::store::{Db, Tx};
use cqrs_es::DomainEvent;

/// A stream: (aggregate_type, aggregate_id).
type StreamKey = (String, String);
/// Where an event is stored: its stream and sequence.
type Place = (String, String, i64);

/// One line as `events export` writes it (`position` and `tx` are the
/// source's and are not read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    event_id: String,
    stream: Stream,
    sequence: i64,
    #[serde(rename = "type")]
    event_type: String,
    /// A number (`2`) since exports write one; text (`"2"`), as older
    /// exports wrote it, is read too.
    #[serde(deserialize_with = "version_text")]
    version: String,
    recorded_at: DateTime<Utc>,
    metadata: Value,
    data: Value,
    #[serde(default)]
    hash: Option<String>,
}

/// An event version given as a number or as text, as the text cqrs-es
/// stores.
fn version_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Version {
        Number(u64),
        Text(String),
    }
    Ok(match Version::deserialize(d)? {
        Version::Number(n) => n.to_string(),
        Version::Text(t) => t,
    })
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq, Hash)]
struct Stream {
    #[serde(rename = "type")]
    aggregate_type: String,
    id: String,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.id)
    }
}

impl Line {
    /// The payload as cqrs-es stores it: `{"<EventType>": data}`.
    fn payload(&self) -> Value {
        let mut envelope = Map::new();
        envelope.insert(self.event_type.clone(), self.data.clone());
        Value::Object(envelope)
    }

    fn stream_key(&self) -> StreamKey {
        (self.stream.aggregate_type.clone(), self.stream.id.clone())
    }

    /// The deploy's entity and number, for a `DeployCreated`.
    fn deploy_number(&self) -> Option<(String, i64)> {
        if self.stream.aggregate_type != Deploy::TYPE || self.event_type != "DeployCreated" {
            return None;
        }
        let entity = self.data.get("entityId")?.as_str()?.to_string();
        let number = self.data.get("sequenceNumber")?.as_i64()?;
        (number > 0).then_some((entity, number))
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events appended.
    pub imported: u64,
    /// Events skipped because their `eventId` was already stored.
    pub present: u64,
    /// Lines whose hash link was recomputed and matched.
    pub verified: u64,
    /// Lines with a hash that could not be recomputed from the file (see
    /// the module docs).
    pub unverifiable: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events imported, {} already present",
            self.imported, self.present
        )
    }
}

/// An import that stopped: what was committed before it, and why.
#[derive(Debug)]
pub struct Failed {
    pub committed: Summary,
    pub error: anyhow::Error,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Failed {}

/// Where the lines come from: a file, read twice, or stdin spooled to a
/// temporary file (removed when dropped).
pub struct Source {
    path: PathBuf,
    spooled: bool,
}

impl Source {
    /// `-` is stdin.
    pub async fn open(file: &str) -> anyhow::Result<Self> {
        if file != "-" {
            tokio::fs::metadata(file)
                .await
                .with_context(|| format!("opening {file}"))?;
            return Ok(Source {
                path: PathBuf::from(file),
                spooled: false,
            });
        }
        let path =
            std::env::temp_dir().join(format!("deployd-import-{}.jsonl", ulid::Ulid::generate()));
        let source = Source {
            path: path.clone(),
            spooled: true,
        };
        let mut out = tokio::fs::File::create(&path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        tokio::io::copy(&mut tokio::io::stdin(), &mut out)
            .await
            .context("reading stdin")?;
        out.sync_all().await?;
        Ok(source)
    }

    async fn reader(&self) -> anyhow::Result<impl AsyncBufRead + Unpin> {
        let f = tokio::fs::File::open(&self.path)
            .await
            .with_context(|| format!("opening {}", self.path.display()))?;
        Ok(tokio::io::BufReader::new(f))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if self.spooled {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checks the whole source, then appends it (see the module docs).
pub async fn import(db: &Db, source: &Source, verify: bool) -> Result<Summary, Failed> {
    let checked = check(source.reader().await.map_err(failed)?, verify)
        .await
        .map_err(failed)?;
    let mut summary = append(db, source.reader().await.map_err(failed)?).await?;
    summary.verified = checked.verified;
    summary.unverifiable = checked.unverifiable;
    Ok(summary)
}

fn failed(error: anyhow::Error) -> Failed {
    Failed {
        committed: Summary::default(),
        error,
    }
}

/// Reads the lines, numbered from 1, skipping blank ones.
async fn for_each_line<R: AsyncBufRead + Unpin>(
    reader: R,
    mut each: impl AsyncFnMut(usize, Line) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut lines = reader.lines();
    let mut number = 0;
    while let Some(text) = lines.next_line().await.context("reading the export")? {
        number += 1;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text)
            .with_context(|| format!("line {number}: not an exported event"))?;
        if let Some(issue) = crate::domain::json::integer_literal_issue(text.as_bytes()) {
            anyhow::bail!("line {number}: {issue}");
        }
        each(number, line).await?;
    }
    Ok(())
}

/// What the check pass counted.
#[derive(Debug, Default)]
struct Checked {
    verified: u64,
    unverifiable: u64,
}

/// Pass 1: every line is an event this build can load, in stream order,
/// and (when `verify`) its hash link holds.
async fn check<R: AsyncBufRead + Unpin>(reader: R, verify: bool) -> anyhow::Result<Checked> {
    let mut checked = Checked::default();
    // per stream: the last sequence seen and its claimed hash
    let mut streams: HashMap<StreamKey, (i64, Option<[u8; 32]>)> = HashMap::new();
    for_each_line(reader, async |number, line| {
        check_line(&line).with_context(|| format!("line {number}: {}", line.stream))?;
        let claimed = line
            .hash
            .as_deref()
            .map(unhex)
            .transpose()
            .with_context(|| format!("line {number}: hash"))?;
        let previous = streams.get(&line.stream_key()).copied();
        // Some(hash or None) when the predecessor is known (in the file,
        // or none at all for sequence 1).
        let predecessor: Option<Option<[u8; 32]>> = match previous {
            Some((sequence, hash)) => {
                anyhow::ensure!(
                    line.sequence == sequence + 1,
                    "line {number}: {} sequence {} follows sequence {sequence} in the file",
                    line.stream,
                    line.sequence
                );
                hash.map(Some)
            }
            None if line.sequence == 1 => Some(None),
            None => None,
        };
        if let (true, Some(claimed)) = (verify, claimed) {
            match predecessor {
                Some(previous) if link_matches(&line, previous.as_ref(), &claimed) => {
                    checked.verified += 1;
                }
                Some(_) if !produced_by_upcaster(&line) => anyhow::bail!(
                    "line {number}: {} sequence {}: the hash does not match the event \
                     (changed since it was exported?); --no-verify imports it anyway",
                    line.stream,
                    line.sequence
                ),
                _ => checked.unverifiable += 1,
            }
        }
        streams.insert(line.stream_key(), (line.sequence, claimed));
        Ok(())
    })
    .await?;
    Ok(checked)
}

/// The line is an event of a known stream type that this build reads as
/// it is (after upcasting), with string metadata.
fn check_line(line: &Line) -> anyhow::Result<()> {
    anyhow::ensure!(
        line.sequence >= 1,
        "sequence {} (sequences start at 1)",
        line.sequence
    );
    anyhow::ensure!(!line.event_id.is_empty(), "an empty eventId");
    // Only values either engine stores and reads back exactly: a number
    // PostgreSQL would print back as something else, or a NUL, would stop
    // every reader of the log at this event.
    let issues: Vec<String> = crate::domain::json::check(&line.data, "data")
        .into_iter()
        .chain(crate::domain::json::check(&line.metadata, "metadata"))
        .map(|i| i.to_string())
        .collect();
    anyhow::ensure!(
        issues.is_empty(),
        "values deployd does not store: {}",
        issues.join("; ")
    );
    serde_json::from_value::<HashMap<String, String>>(line.metadata.clone())
        .context("metadata is not an object of strings")?;
    let mut version = line.version.clone();
    let mut payload = line.payload();
    crate::store::upcast::upcast(&line.event_type, &mut version, &mut payload);
    let (event_type, current) = match line.stream.aggregate_type.as_str() {
        "Deploy" => typed::<DeployEvent>(payload),
        "Entity" => typed::<EntityEvent>(payload),
        "Build" => typed::<BuildEvent>(payload),
        other => anyhow::bail!("unknown stream type {other:?}"),
    }
    .with_context(|| format!("{} sequence {}", line.event_type, line.sequence))?;
    anyhow::ensure!(
        event_type == line.event_type,
        "type {} holds a {event_type}",
        line.event_type
    );
    anyhow::ensure!(
        version == current,
        "{} version {} (this build reads version {current})",
        line.event_type,
        line.version
    );
    Ok(())
}

/// The event's type and the version this build writes.
fn typed<E: DomainEvent>(payload: Value) -> anyhow::Result<(String, String)> {
    let event: E = serde_json::from_value(payload).context("not an event of this build")?;
    Ok((event.event_type(), event.event_version()))
}

fn produced_by_upcaster(line: &Line) -> bool {
    crate::store::upcast::UPCASTERS
        .iter()
        .any(|u| u.event_type == line.event_type && u.to == line.version)
}

/// Whether the line's hash is its link under either engine's rendering.
fn link_matches(line: &Line, previous: Option<&[u8; 32]>, claimed: &[u8; 32]) -> bool {
    let payload = line.payload();
    let renderings = [
        (payload.to_string(), line.metadata.to_string()),
        (jsonb_text(&payload), jsonb_text(&line.metadata)),
    ];
    renderings.iter().any(|(payload, metadata)| {
        let hashed = Hashed {
            aggregate_type: &line.stream.aggregate_type,
            aggregate_id: &line.stream.id,
            sequence: line.sequence,
            event_type: &line.event_type,
            event_version: &line.version,
            payload,
            metadata,
            event_id: &line.event_id,
        };
        chain::chain(previous.map(|p| &p[..]), &hashed) == *claimed
    })
}

fn unhex(text: &str) -> anyhow::Result<[u8; 32]> {
    anyhow::ensure!(
        text.len() == 64 && text.is_ascii(),
        "expected 64 hex digits"
    );
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).context("expected hex digits")?;
    }
    Ok(out)
}

/// `value` as PostgreSQL prints it as `jsonb::text`: object keys sorted by
/// length, then bytes; `", "` between items and `": "` after keys; strings
/// escaped as serde_json does (the same set); numbers as `numeric` prints
/// them (a float's decimal digits, never an exponent, no negative zero).
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_jsonb(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Number(n) if n.is_f64() => out.push_str(&numeric_text(&n.to_string())),
        other => out.push_str(&other.to_string()),
    }
}

/// A number's JSON text (`-1.5e-7`) as `numeric` prints it (`-0.00000015`):
/// the same digits with the display scale `numeric_in` gives it (the
/// fraction's digits minus the exponent, at least 0).
fn numeric_text(text: &str) -> String {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = format!("{int}{frac}");
    let scale = frac.len() as i64 - exponent;
    let mut result = if scale <= 0 {
        digits.push_str(&"0".repeat((-scale) as usize));
        digits
    } else {
        let scale = scale as usize;
        if digits.len() <= scale {
            digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
        }
        let (i, f) = digits.split_at(digits.len() - scale);
        format!("{i}.{f}")
    };
    // leading zeros of the integer part
    let trimmed = result.trim_start_matches('0');
    result = if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    };
    if negative && result.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        format!("-{result}")
    } else {
        result
    }
}

/// Pass 2: appends every line in one transaction, so a line the store
/// refuses leaves the store as it was.
async fn append<R: AsyncBufRead + Unpin>(db: &Db, reader: R) -> Result<Summary, Failed> {
    let mut state = Appending {
        db,
        summary: Summary::default(),
        batch: Summary::default(),
        tx: None,
        in_batch: 0,
        streams: HashSet::new(),
        counters: HashMap::new(),
    };
    let result = for_each_line(reader, async |number, line| {
        state
            .line(&line)
            .await
            .with_context(|| format!("line {number}"))?;
        Ok(())
    })
    .await;
    let result = match result {
        Ok(()) => state.commit().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(state.summary),
        // the open batch's transaction rolls back when dropped
        Err(error) => Err(Failed {
            committed: state.summary,
            error,
        }),
    }
}

struct Appending<'a> {
    db: &'a Db,
    /// Committed so far.
    summary: Summary,
    /// In the open transaction.
    batch: Summary,
    tx: Option<Tx>,
    in_batch: usize,
    /// Streams seen earlier in the file.
    streams: HashSet<StreamKey>,
    /// Each entity's deploy counter in the store before this import wrote
    /// any of its deploys.
    counters: HashMap<String, i64>,
}

impl Appending<'_> {
    async fn commit(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await.context("committing a batch")?;
        }
        self.summary.imported += self.batch.imported;
        self.summary.present += self.batch.present;
        self.batch = Summary::default();
        self.in_batch = 0;
        Ok(())
    }

    async fn line(&mut self, line: &Line) -> anyhow::Result<()> {
        if self.tx.is_none() {
            self.tx = Some(self.db.begin().await?);
        }
        let first_of_stream = self.streams.insert(line.stream_key());
        let counter = match line.deploy_number() {
            Some((entity, _)) => Some(match self.counters.get(&entity) {
                Some(c) => *c,
                None => {
                    let tx = self.tx.as_mut().expect("a transaction");
                    let c = deploy_counter(tx, &entity).await?;
                    self.counters.insert(entity, c);
                    c
                }
            }),
            None => None,
        };
        let tx = self.tx.as_mut().expect("a transaction");
        self.in_batch += 1;
        if !insert(tx, line).await? {
            self.batch.present += 1;
            return Ok(());
        }
        if first_of_stream && line.sequence > 1 && !has_event(tx, line, line.sequence - 1).await? {
            anyhow::bail!(
                "{} sequence {}: sequence {} is neither earlier in the file nor in the store",
                line.stream,
                line.sequence,
                line.sequence - 1
            );
        }
        if let (Some((entity, number)), Some(counter)) = (line.deploy_number(), counter) {
            if number <= counter {
                if let Some(other) = deploy_numbered(tx, &entity, number, &line.event_id).await? {
                    anyhow::bail!(
                        "{}: entity {entity} already has a deploy number {number} \
                         ({other}) in this store",
                        line.stream
                    );
                }
            }
        }
        self.batch.imported += 1;
        Ok(())
    }
}

/// Appends one event; false when its `eventId` was already stored (at the
/// same stream and sequence).
async fn insert(tx: &mut Tx, line: &Line) -> anyhow::Result<bool> {
    // payload and metadata: jsonb on PostgreSQL, their compact text on
    // SQLite; recorded_at: timestamptz, or sqlx's text rendering of a
    // DateTime<Utc>, the one the embedded store writes.
    macro_rules! bind_line {
        ($query:expr) => {
            $query
                .bind(&line.stream.aggregate_type)
                .bind(&line.stream.id)
                .bind(line.sequence)
                .bind(&line.event_type)
                .bind(&line.version)
                .bind(line.payload())
                .bind(&line.metadata)
                .bind(&line.event_id)
                .bind(line.recorded_at)
        };
    }
    const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
                          event_type, event_version, payload, metadata, event_id, recorded_at) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    // (appended, where the event id was stored before)
    let result: sqlx::Result<(bool, Option<Place>)> = match tx {
        // event_id is UNIQUE: a stored event is skipped, while the primary
        // key still refuses another event at a stored (stream, sequence).
        // The outer SELECT reads the snapshot before the insert, so it
        // finds the stored event only when there was one: one round trip.
        Tx::Postgres(t) => {
            let sql = format!(
                "WITH appended AS ({INSERT} ON CONFLICT (event_id) DO NOTHING RETURNING 1) \
                 SELECT (SELECT count(*) FROM appended), \
                        e.aggregate_type, e.aggregate_id, e.sequence \
                 FROM (SELECT 1) one LEFT JOIN events e ON e.event_id = $8"
            );
            bind_line!(sqlx::query_as(&sql))
                .fetch_one(&mut **t)
                .await
                .map(|(appended, t, i, s): (i64, _, _, _)| {
                    let stored = match (t, i, s) {
                        (Some(t), Some(i), Some(s)) => Some((t, i, s)),
                        _ => None,
                    };
                    (appended == 1, stored)
                })
        }
        // INSERT OR IGNORE would also swallow a primary-key conflict (and
        // would apply to the trigger's statements too): the id is looked up
        // first.
        Tx::Sqlite(t, _) => {
            let sql = "SELECT aggregate_type, aggregate_id, sequence FROM events \
                       WHERE event_id = $1";
            match sqlx::query_as(sql)
                .bind(&line.event_id)
                .fetch_optional(&mut **t)
                .await
            {
                Ok(Some(stored)) => Ok((false, Some(stored))),
                Ok(None) => bind_line!(sqlx::query(INSERT))
                    .execute(&mut **t)
                    .await
                    .map(|_| (true, None)),
                Err(e) => Err(e),
            }
        }
    };
    let (appended, stored) = match result {
        Ok(done) => done,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => anyhow::bail!(
            "{} sequence {} already holds a different event in this store",
            line.stream,
            line.sequence
        ),
        Err(e) => return Err(e).context("appending the event"),
    };
    let expected = (
        line.stream.aggregate_type.clone(),
        line.stream.id.clone(),
        line.sequence,
    );
    if let Some(at) = stored.filter(|at| *at != expected) {
        anyhow::bail!(
            "event {} is already in this store as {}/{} sequence {}, not {} sequence {}",
            line.event_id,
            at.0,
            at.1,
            at.2,
            line.stream,
            line.sequence
        );
    }
    Ok(appended)
}

/// Whether the stream of `line` has an event at `sequence`.
async fn has_event(tx: &mut Tx, line: &Line, sequence: i64) -> sqlx::Result<bool> {
    let sql = "SELECT 1 FROM events \
               WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";
    let found: Option<i32> = crate::on_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(&line.stream.aggregate_type)
        .bind(&line.stream.id)
        .bind(sequence)
        .fetch_optional(c)
        .await?);
    Ok(found.is_some())
}

/// The entity's deploy counter (0 when it has no deploy).
async fn deploy_counter(tx: &mut Tx, entity: &str) -> sqlx::Result<i64> {
    let sql = "SELECT last_sequence FROM entity_deploy_counters WHERE entity_id = $1";
    let found: Option<i64> =
        crate::on_tx!(tx, c => sqlx::query_scalar(sql).bind(entity).fetch_optional(c).await?);
    Ok(found.unwrap_or(0))
}

/// Another deploy of the entity stored with this number, if any. (A scan
/// of the entity's `DeployCreated` events; it runs only when the number is
/// not above the entity's counter before the import, which on a fresh
/// store never happens.)
async fn deploy_numbered(
    tx: &mut Tx,
    entity: &str,
    number: i64,
    event_id: &str,
) -> sqlx::Result<Option<String>> {
    let sql = match tx.engine() {
        Engine::Postgres => {
            "SELECT aggregate_id FROM events \
             WHERE aggregate_type = 'Deploy' AND event_type = 'DeployCreated' \
               AND payload -> 'DeployCreated' ->> 'entityId' = $1 \
               AND (payload -> 'DeployCreated' ->> 'sequenceNumber')::bigint = $2 \
               AND event_id <> $3 LIMIT 1"
        }
        Engine::Sqlite => {
            "SELECT aggregate_id FROM events \
             WHERE aggregate_type = 'Deploy' AND event_type = 'DeployCreated' \
               AND json_extract(payload, '$.DeployCreated.entityId') = $1 \
               AND json_extract(payload, '$.DeployCreated.sequenceNumber') = $2 \
               AND event_id <> $3 LIMIT 1"
        }
    };
    crate::on_tx!(tx, c => sqlx::query_scalar(sql)
        .bind(entity)
        .bind(number)
        .bind(event_id)
        .fetch_optional(c)
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_postgresql_numeric_does() {
        for (json, numeric) in [
            ("1e30", "1000000000000000000000000000000"),
            ("1.5e-7", "0.00000015"),
            ("-1.5e-7", "-0.00000015"),
            ("1E+2", "100"),
            ("1.0", "1.0"),
            ("-0.0", "0.0"),
            ("0.25", "0.25"),
            ("123.456", "123.456"),
            ("1.2345678901234568e22", "12345678901234568000000"),
        ] {
            assert_eq!(numeric_text(json), numeric, "{json}");
        }
    }

    #[test]
    fn jsonb_text_matches_postgresql() {
        // What serde_json writes (as the API and export do), and what
        // PostgreSQL 15 prints for it as `jsonb::text`.
        let written = r#"{"bb":1e+30,"a":1.5e-7,"c":100.0,"d":-0.0,"e":1.0,"f":1e+21,"h":-0.000025,"i":1.2345678901234568e+22,"g":"\u001f é \\ / \"","aa":[1,{},[]]}"#;
        let value: Value = serde_json::from_str(written).unwrap();
        assert_eq!(value.to_string(), written);
        assert_eq!(
            jsonb_text(&value),
            r#"{"a": 0.00000015, "c": 100.0, "d": 0.0, "e": 1.0, "f": 1000000000000000000000, "g": "\u001f é \\ / \"", "h": -0.000025, "i": 12345678901234568000000, "aa": [1, {}, []], "bb": 1000000000000000000000000000000}"#
        );
    }

    #[test]
    fn a_line_is_the_export_line_read_back() {
        let line: Line = serde_json::from_value(json!({
            "position": 7, "tx": 0, "eventId": "evt_1",
            "stream": {"type": "Entity", "id": "app_1"}, "sequence": 1,
            "type": "EntityUpserted", "version": "1",
            "recordedAt": "2026-11-27T10:00:00.123456Z",
            "metadata": {"actor": "ci"}, "data": {"x": 1}, "hash": null
        }))
        .unwrap();
        assert_eq!(line.payload(), json!({"EntityUpserted": {"x": 1}}));
        assert_eq!(line.stream.to_string(), "Entity/app_1");
        assert_eq!(line.hash, None);
    }

    #[test]
    fn a_line_s_version_is_read_as_a_number_or_as_older_exports_wrote_it() {
        let line = |version: Value| -> Line {
            serde_json::from_value(json!({
                "eventId": "evt_1", "stream": {"type": "Deploy", "id": "dep_1"},
                "sequence": 1, "type": "DeployCreated", "version": version,
                "recordedAt": "2026-11-27T10:00:00Z", "metadata": {}, "data": {}
            }))
            .unwrap()
        };
        assert_eq!(line(json!(2)).version, "2");
        assert_eq!(line(json!("2")).version, "2");
    }
}
