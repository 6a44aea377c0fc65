//! A deploy folded from its events in memory: the one place that says what
//! each `Deploy` event does to the row the API serves.
//!
//! Two readers use it: `GET /api/deploys/{id}?asOf=…` (the events recorded
//! up to an instant) and `deployd replay` (the `deploys` projection's bulk
//! rebuild, `DeploysProjection::rebuild`). The live projector runs the SQL
//! in `projections/deploys/`; the replay-equality test (the read model
//! before a replay equals it after, byte for byte) holds the two together.

use crate::domain::deploy::Deploy;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;

use crate::domain::deploy::DeployEvent;
use crate::domain::{DeployStatus, StepStatus};
use crate::read_model::row::{DeployStatusColumn, StepStatusColumn, TargetColumn, TriggerColumn};
use crate::read_model::{DeployRow, StepRow};
use crate::store::log::StoredEvent;

/// Every column of a `deploys` row and its `deploy_steps` (in ordinal order,
/// from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedDeploy {
    pub row: DeployRow,
    pub steps: Vec<StepRow>,
    pub cancel_reason: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The stream sequence of the last event applied.
    pub event_sequence: i64,
}

/// Applies one decoded event of the deploy's stream (`sequence` is its
/// stream sequence). Mirrors the projection: a `DeployCreated` makes the
/// deploy once; any other event applies only to an existing deploy and only
/// if it is newer than the last one applied.
pub fn apply(
    state: &mut Option<FoldedDeploy>,
    id: &str,
    sequence: i64,
    event: &DeployEvent,
) -> anyhow::Result<()> {
    if let DeployEvent::DeployCreated(c) = event {
        if state.is_none() {
            *state = Some(FoldedDeploy {
                row: DeployRow {
                    id: id.parse()?,
                    workspace_id: c.workspace_id,
                    entity_id: c.entity_id,
                    sequence_number: i64::try_from(c.sequence_number)?,
                    build_id: c.build_id,
                    status: DeployStatusColumn(DeployStatus::Pending),
                    trigger: TriggerColumn(c.trigger),
                    source_event_id: c.source_event_id.map(|e| e.to_string()),
                    production_url: None,
                    preview_url: None,
                    error: None,
                    metadata: serde_json::Value::Object(c.metadata.clone()),
                    created_by: c.created_by.clone(),
                    started_at: None,
                    completed_at: None,
                    created_at: c.created_at,
                    target: TargetColumn(c.target),
                    live: false,
                    rollback_of: c.rollback_of.map(|d| d.to_string()),
                    promoted_from: c.promoted_from.map(|d| d.to_string()),
                    superseded_by: None,
                },
                steps: c
                    .steps
                    .iter()
                    .map(|name| StepRow {
                        name: name.clone(),
                        status: StepStatusColumn(StepStatus::Pending),
                        started_at: None,
                        completed_at: None,
                        error: None,
                    })
                    .collect(),
                cancel_reason: None,
                cancelled_by: None,
                cancelled_at: None,
                event_sequence: sequence,
            });
        }
        return Ok(());
    }
    let Some(d) = state.as_mut() else {
        return Ok(());
    };
    if d.event_sequence >= sequence {
        return Ok(());
    }
    d.event_sequence = sequence;
    let row = &mut d.row;
    match event {
        DeployEvent::DeployCreated(_) => {}
        DeployEvent::DeployStarted(e) => {
            row.status = DeployStatusColumn(DeployStatus::Running);
            row.started_at = Some(e.started_at);
        }
        DeployEvent::StepStarted(e) => {
            set_step(d, &e.step, StepStatus::Running, Some(e.at), None, None);
        }
        DeployEvent::StepCompleted(e) => {
            set_step(d, &e.step, StepStatus::Completed, None, Some(e.at), None);
        }
        DeployEvent::StepFailed(e) => set_step(
            d,
            &e.step,
            StepStatus::Failed,
            None,
            Some(e.at),
            Some(&e.error),
        ),
        DeployEvent::StepDiscarded(e) => set_step(
            d,
            &e.step,
            StepStatus::Discarded,
            None,
            Some(e.at),
            e.error.as_deref(),
        ),
        DeployEvent::DeployCompleted(e) => {
            row.status = DeployStatusColumn(DeployStatus::Completed);
            row.completed_at = Some(e.completed_at);
            row.production_url = e.production_url.clone();
            row.preview_url = e.preview_url.clone();
            // Whether it is still live depends on its entity's later
            // completions: the caller that folds several deploys moves
            // `live` (`DeploysProjection::rebuild`, `release_as_of`).
            row.live = e.release.as_ref().is_some_and(|r| r.live);
        }
        DeployEvent::DeployFailed(e) => {
            row.status = DeployStatusColumn(DeployStatus::Failed);
            row.completed_at = Some(e.failed_at);
            row.error = Some(e.error.clone());
            skip_pending(d);
        }
        DeployEvent::DeployCancelled(e) => {
            row.status = DeployStatusColumn(DeployStatus::Cancelled);
            row.completed_at = Some(e.cancelled_at);
            d.cancelled_at = Some(e.cancelled_at);
            d.cancel_reason = e.reason.clone();
            d.cancelled_by = Some(e.cancelled_by.clone());
            d.row.superseded_by = e.superseded_by.map(|s| s.to_string());
            skip_pending(d);
        }
    }
    Ok(())
}

fn set_step(
    d: &mut FoldedDeploy,
    name: &str,
    status: StepStatus,
    started: Option<DateTime<Utc>>,
    completed: Option<DateTime<Utc>>,
    error: Option<&str>,
) {
    for s in d.steps.iter_mut().filter(|s| s.name == name) {
        s.status = StepStatusColumn(status);
        s.started_at = started.or(s.started_at);
        s.completed_at = completed.or(s.completed_at);
        s.error = error.map(str::to_string).or(s.error.take());
    }
}

fn skip_pending(d: &mut FoldedDeploy) {
    for s in d
        .steps
        .iter_mut()
        .filter(|s| s.status.0 == StepStatus::Pending)
    {
        s.status = StepStatusColumn(StepStatus::Skipped);
    }
}

/// Folds a deploy's stored events (its stream, in order): `None` when none
/// of them created it.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a StoredEvent>,
) -> anyhow::Result<Option<FoldedDeploy>> {
    let mut state = None;
    for event in events {
        if event.aggregate_type != Deploy::TYPE {
            continue;
        }
        let decoded: DeployEvent = serde_json::from_value(event.payload.clone())?;
        apply(&mut state, &event.aggregate_id, event.sequence, &decoded)?;
    }
    Ok(state)
}
