//! The `Deploy` aggregate: one deploy's life, decided from its own events.
//!
//! `handle` is a pure decision: a command carries everything it needs (ids,
//! the actor, the clock), lookups happen before it, and the only effect is
//! the events it writes. The saga worker drives a deploy through the same
//! commands the API uses, and every worker command is idempotent against the
//! state (a redelivered "complete step" after the step completed writes
//! nothing), which is what makes the saga resumable.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{BuildId, DeployId, EntityId, EventId, VersionId, WorkspaceId};
use crate::domain::{DeployStatus, StepStatus, Target, Trigger};

/// The steps of every deploy, in execution order.
pub const STEPS: &[&str] = &["prepare", "upload", "promote"];

/// What can be asked of a deploy.
// `Create` is the large one (a rollback's source came with it); commands
// are short-lived values, and boxing it would change every construction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DeployCommand {
    Create(CreateDeploy),
    Cancel {
        reason: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    /// A newer deploy of the same entity and target was created under the
    /// `latest` policy: a pending deploy is cancelled by `system`; one that
    /// already runs (or ended) is left alone.
    Supersede {
        by: DeployId,
        at: DateTime<Utc>,
    },
    Start {
        at: DateTime<Utc>,
    },
    StartStep {
        step: String,
        at: DateTime<Utc>,
    },
    CompleteStep {
        step: String,
        /// What the step produced that later steps or the deploy need
        /// (the promote step's URLs), recorded with the event.
        output: Option<serde_json::Value>,
        at: DateTime<Utc>,
    },
    FailStep {
        step: String,
        error: String,
        at: DateTime<Utc>,
    },
    Complete {
        production_url: Option<String>,
        preview_url: Option<String>,
        /// The deploy that pins the entity's production now, as the worker
        /// found it (under the entity's lease): what decides whether a
        /// production deploy goes live ([`Deploy::release`]).
        pinned_by: Option<DeployId>,
        at: DateTime<Utc>,
    },
    Fail {
        error: String,
        at: DateTime<Utc>,
    },
}

/// Everything a new deploy is made of, resolved before the command.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateDeploy {
    pub deploy_id: DeployId,
    pub workspace_id: WorkspaceId,
    pub entity_id: EntityId,
    pub build_id: BuildId,
    /// The version of the entity the build belongs to.
    pub version_id: Option<VersionId>,
    pub trigger: Trigger,
    /// Production or preview (a rollback or promotion is production
    /// whatever this says).
    pub target: Target,
    pub origin: Origin,
    /// Why (a rollback's or promotion's reason).
    pub reason: Option<String>,
    pub source_event_id: Option<EventId>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_by: String,
    pub at: DateTime<Utc>,
}

/// Where a new deploy comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A build, deployed as such (create, auto-deploy).
    Build,
    /// Back to an earlier production deploy (`POST …/rollback`).
    Rollback(SourceDeploy),
    /// A finished deploy made the production one (`POST …/promote`).
    Promotion(SourceDeploy),
}

/// The deploy a rollback or a promotion starts from, as it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDeploy {
    pub id: DeployId,
    pub status: DeployStatus,
    pub target: Target,
    /// Whether its entity's production URL serves it now.
    pub live: bool,
}

/// Why a deploy cannot be rolled back to or promoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error("deploy {id} is {status}; only a completed deploy can be {action}")]
    NotCompleted {
        id: DeployId,
        status: DeployStatus,
        action: &'static str,
    },
    #[error("deploy {0} is a preview deploy; a rollback goes back to an earlier production deploy (promote a preview instead)")]
    NotProduction(DeployId),
    #[error("deploy {0} is live already; there is nothing to {1}")]
    AlreadyLive(DeployId, &'static str),
}

/// What happened to a deploy. Stored as `{"<Variant>": {...}}` with the
/// variant name as `event_type`; see `event-schemas/` for each payload.
// `DeployCreated` is the large one (v2's `versionId` tipped it over
// clippy's line); events are short-lived values, and boxing it would change
// every construction and match of the event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum DeployEvent {
    DeployCreated(DeployCreated),
    DeployStarted(DeployStarted),
    StepStarted(StepStarted),
    StepCompleted(StepCompleted),
    StepFailed(StepFailed),
    StepDiscarded(StepDiscarded),
    DeployCompleted(DeployCompleted),
    DeployFailed(DeployFailed),
    DeployCancelled(DeployCancelled),
}

/// A deploy was asked for. `sequenceNumber` is written as 0 by the aggregate
/// and assigned by the event store in the appending transaction (the entity's
/// next number); the stored event always carries the assigned number.
///
/// Version 2 added `versionId`; a stored v1 event reads as v2 with
/// `versionId: null` (`store::upcast`). Version 3 added `target`,
/// `rollbackOf`, `promotedFrom` and `reason`; a stored v2 reads as a
/// `production` deploy with the three others null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployCreated {
    pub deploy_id: DeployId,
    pub workspace_id: WorkspaceId,
    pub entity_id: EntityId,
    pub sequence_number: u64,
    pub build_id: BuildId,
    /// The version of the entity the build belongs to. Always present since
    /// v2; null when a v1 event is read (v1 did not record it).
    pub version_id: Option<VersionId>,
    pub trigger: Trigger,
    /// Production (the entity's URL serves it once it completes, unless
    /// production is pinned) or preview (its own URL only).
    pub target: Target,
    /// A rollback: the earlier production deploy whose build it deploys again.
    pub rollback_of: Option<DeployId>,
    /// A promotion: the finished deploy whose build it makes production.
    pub promoted_from: Option<DeployId>,
    /// Why it was asked for (a rollback's or promotion's reason).
    pub reason: Option<String>,
    pub source_event_id: Option<EventId>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_by: String,
    /// The step plan, in execution order.
    pub steps: Vec<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
}

impl DeployCreated {
    /// What completing this deploy does to its entity's production (see
    /// [`Deploy::release`]).
    pub fn release(&self, pinned_by: Option<DeployId>) -> Option<Release> {
        if self.target != Target::Production {
            return None;
        }
        Some(match self.trigger {
            Trigger::Rollback => Release {
                live: true,
                pinned_by: Some(self.deploy_id),
            },
            Trigger::Manual => Release {
                live: true,
                pinned_by: None,
            },
            Trigger::Auto => Release {
                live: pinned_by.is_none(),
                pinned_by,
            },
        })
    }
}

/// A worker began the deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployStarted {
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub started_at: DateTime<Utc>,
}

/// A step began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStarted {
    pub step: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub at: DateTime<Utc>,
}

/// A step finished and its result counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepCompleted {
    pub step: String,
    /// What the step produced (the promote step: `{previewUrl,
    /// productionUrl}`, each where the deploy is served: a path under the
    /// server's public URL, or an absolute URL of another host; the feeds
    /// carry absolute URLs). Version 2 records paths where version 1
    /// recorded URLs of deployd's own serving; a stored v1 reads as v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub at: DateTime<Utc>,
}

/// A step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepFailed {
    pub step: String,
    pub error: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub at: DateTime<Utc>,
}

/// A step that was in flight when the deploy was cancelled finished; its
/// result is discarded and never made live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepDiscarded {
    pub step: String,
    /// What the step reported (`None` when it succeeded).
    pub error: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub at: DateTime<Utc>,
}

/// Every step completed. Version 2 added `release`; a stored v1 reads as
/// v2 with `release: {live: true, pinnedBy: null}` when it had a
/// production URL (then, the latest completed production deploy was live),
/// else null. Version 3 records where the deploy is served as a location
/// (`domain::location`): a path such as `/preview/<deploy>/` when deployd
/// serves it, resolved under the server's `DEPLOYD_PUBLIC_URL` when
/// answered, or an absolute URL of another host; a stored v2 with an
/// absolute URL of deployd's own serving reads as its path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployCompleted {
    /// Where the entity's production is served (a production deploy): a
    /// path under the server's public URL or an absolute URL. The feeds
    /// carry absolute URLs.
    pub production_url: Option<String>,
    /// Where this deploy alone is served, as `productionUrl`.
    pub preview_url: Option<String>,
    /// What the completion did to the entity's production; null for a
    /// preview deploy.
    pub release: Option<Release>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub completed_at: DateTime<Utc>,
}

/// What a completed production deploy did to its entity's production URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// The deploy became live (the one live deploy of its entity, from
    /// this instant); false when production was pinned by a rollback.
    pub live: bool,
    /// The rollback that pins production after this completion (null: not
    /// pinned).
    pub pinned_by: Option<DeployId>,
}

/// The deploy failed; steps not yet run are skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployFailed {
    pub error: String,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub failed_at: DateTime<Utc>,
}

/// The deploy was cancelled. Steps not yet started are skipped; a step in
/// flight finishes and is then recorded as discarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployCancelled {
    pub reason: Option<String>,
    pub cancelled_by: String,
    /// The status the deploy had when it was cancelled.
    pub previous_status: DeployStatus,
    /// The newer deploy that superseded this one (the `latest` policy;
    /// `cancelledBy` is then `system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<DeployId>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub cancelled_at: DateTime<Utc>,
}

impl DomainEvent for DeployEvent {
    fn event_type(&self) -> String {
        match self {
            DeployEvent::DeployCreated(_) => "DeployCreated",
            DeployEvent::DeployStarted(_) => "DeployStarted",
            DeployEvent::StepStarted(_) => "StepStarted",
            DeployEvent::StepCompleted(_) => "StepCompleted",
            DeployEvent::StepFailed(_) => "StepFailed",
            DeployEvent::StepDiscarded(_) => "StepDiscarded",
            DeployEvent::DeployCompleted(_) => "DeployCompleted",
            DeployEvent::DeployFailed(_) => "DeployFailed",
            DeployEvent::DeployCancelled(_) => "DeployCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            // v2: `versionId`; v3: `target`, `rollbackOf`, `promotedFrom`,
            // `reason` (see `store::upcast`)
            DeployEvent::DeployCreated(_) => "3",
            // v2: `release`; v3: locations, not URLs
            DeployEvent::DeployCompleted(_) => "3",
            // v2: the promote step's output holds locations, not URLs
            DeployEvent::StepCompleted(_) => "2",
            _ => "1",
        }
        .to_string()
    }
}

/// Why the deploy refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error("the deploy does not exist")]
    NotFound,
    #[error("the deploy already exists")]
    AlreadyExists,
    #[error("the deploy is {0}; nothing leaves that status")]
    Terminal(DeployStatus),
    #[error("the deploy is {0}, not running")]
    NotRunning(DeployStatus),
    #[error("unknown step {0:?}")]
    UnknownStep(String),
    #[error("step {step:?} cannot {action} while it is {status}")]
    StepOutOfOrder {
        step: String,
        action: &'static str,
        status: StepStatus,
    },
    #[error("not every step has completed")]
    StepsIncomplete,
    #[error(transparent)]
    Ineligible(#[from] Ineligible),
}

/// What a step reported.
enum StepOutcome {
    Completed(Option<serde_json::Value>),
    Failed(String),
}

/// One step as the aggregate tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub status: StepStatus,
    pub output: Option<serde_json::Value>,
}

/// The state a decision needs, folded from the deploy's events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    pub created: Option<DeployCreated>,
    pub status: Option<DeployStatus>,
    pub steps: Vec<Step>,
}

impl Deploy {
    fn step(&self, name: &str) -> Result<&Step, DeployError> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DeployError::UnknownStep(name.to_string()))
    }

    fn step_mut(&mut self, name: &str) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// The step in flight, if any.
    pub fn running_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.status == StepStatus::Running)
    }

    /// The next step to run, if every step before it completed.
    pub fn next_step(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.status != StepStatus::Completed)
            .filter(|s| s.status == StepStatus::Pending)
    }

    /// A running step reports its outcome: recorded as it is while the
    /// deploy runs, as discarded once the deploy was cancelled, and nothing
    /// when the same outcome was already recorded (a redelivery).
    fn finish_step(
        &self,
        deploy: DeployStatus,
        step: String,
        outcome: StepOutcome,
        at: DateTime<Utc>,
    ) -> Result<Vec<DeployEvent>, DeployError> {
        let current = self.step(&step)?.status;
        let recorded = match outcome {
            StepOutcome::Completed(_) => StepStatus::Completed,
            StepOutcome::Failed(_) => StepStatus::Failed,
        };
        match (current, deploy) {
            (s, _) if s == recorded || s == StepStatus::Discarded => Ok(vec![]),
            (StepStatus::Running, DeployStatus::Cancelled) => {
                let error = match outcome {
                    StepOutcome::Completed(_) => None,
                    StepOutcome::Failed(error) => Some(error),
                };
                Ok(vec![DeployEvent::StepDiscarded(StepDiscarded {
                    step,
                    error,
                    at,
                })])
            }
            (StepStatus::Running, DeployStatus::Running) => Ok(vec![match outcome {
                StepOutcome::Completed(output) => {
                    DeployEvent::StepCompleted(StepCompleted { step, output, at })
                }
                StepOutcome::Failed(error) => {
                    DeployEvent::StepFailed(StepFailed { step, error, at })
                }
            }]),
            (StepStatus::Running, terminal) => Err(DeployError::Terminal(terminal)),
            (other, _) => Err(DeployError::StepOutOfOrder {
                step,
                action: match outcome {
                    StepOutcome::Completed(_) => "complete",
                    StepOutcome::Failed(_) => "fail",
                },
                status: other,
            }),
        }
    }

    /// A new deploy. A rollback or a promotion must start from a completed
    /// deploy that is not live (a rollback: a production one); both are
    /// production deploys of the same build, a rollback with trigger
    /// `rollback`, a promotion `manual`.
    fn create(c: CreateDeploy) -> Result<Vec<DeployEvent>, DeployError> {
        let (trigger, target, rollback_of, promoted_from) = match &c.origin {
            Origin::Build => (c.trigger, c.target, None, None),
            Origin::Rollback(source) => {
                Self::eligible(source, "rolled back to", "roll back to")?;
                if source.target != Target::Production {
                    return Err(Ineligible::NotProduction(source.id).into());
                }
                (Trigger::Rollback, Target::Production, Some(source.id), None)
            }
            Origin::Promotion(source) => {
                Self::eligible(source, "promoted", "promote")?;
                (Trigger::Manual, Target::Production, None, Some(source.id))
            }
        };
        Ok(vec![DeployEvent::DeployCreated(DeployCreated {
            deploy_id: c.deploy_id,
            workspace_id: c.workspace_id,
            entity_id: c.entity_id,
            sequence_number: 0,
            build_id: c.build_id,
            version_id: c.version_id,
            trigger,
            target,
            rollback_of,
            promoted_from,
            reason: c.reason,
            source_event_id: c.source_event_id,
            metadata: c.metadata,
            created_by: c.created_by,
            steps: STEPS.iter().map(|s| s.to_string()).collect(),
            created_at: c.at,
        })])
    }

    fn eligible(
        source: &SourceDeploy,
        done: &'static str,
        verb: &'static str,
    ) -> Result<(), Ineligible> {
        if source.status != DeployStatus::Completed {
            return Err(Ineligible::NotCompleted {
                id: source.id,
                status: source.status,
                action: done,
            });
        }
        if source.live {
            return Err(Ineligible::AlreadyLive(source.id, verb));
        }
        Ok(())
    }

    /// What completing this deploy does to its entity's production, given
    /// the deploy that pins it now: a preview changes nothing; a rollback
    /// goes live and pins; a `manual` production deploy (a promotion
    /// among them) goes live and unpins; an `auto` one goes live unless
    /// production is pinned, and then completes without going live.
    pub fn release(&self, pinned_by: Option<DeployId>) -> Option<Release> {
        self.created.as_ref()?.release(pinned_by)
    }

    fn decide(&self, command: DeployCommand) -> Result<Vec<DeployEvent>, DeployError> {
        use DeployCommand as C;
        use DeployStatus as S;
        let Some(status) = self.status else {
            return match command {
                C::Create(c) => Self::create(c),
                _ => Err(DeployError::NotFound),
            };
        };
        match command {
            C::Create(_) => Err(DeployError::AlreadyExists),
            C::Supersede { by, at } => match status {
                S::Pending => Ok(vec![DeployEvent::DeployCancelled(DeployCancelled {
                    reason: Some(format!("superseded by {by}")),
                    cancelled_by: "system".into(),
                    previous_status: status,
                    superseded_by: Some(by),
                    cancelled_at: at,
                })]),
                _ => Ok(vec![]),
            },
            C::Cancel { reason, by, at } => match status {
                S::Pending | S::Running => {
                    Ok(vec![DeployEvent::DeployCancelled(DeployCancelled {
                        reason,
                        cancelled_by: by,
                        previous_status: status,
                        superseded_by: None,
                        cancelled_at: at,
                    })])
                }
                terminal => Err(DeployError::Terminal(terminal)),
            },
            C::Start { at } => match status {
                S::Pending => Ok(vec![DeployEvent::DeployStarted(DeployStarted {
                    started_at: at,
                })]),
                S::Running => Ok(vec![]),
                terminal => Err(DeployError::Terminal(terminal)),
            },
            C::StartStep { step, at } => {
                if status != S::Running {
                    return Err(DeployError::NotRunning(status));
                }
                let current = self.step(&step)?;
                match current.status {
                    StepStatus::Running | StepStatus::Completed => Ok(vec![]),
                    StepStatus::Pending if self.next_step().map(|s| &s.name) == Some(&step) => {
                        Ok(vec![DeployEvent::StepStarted(StepStarted { step, at })])
                    }
                    other => Err(DeployError::StepOutOfOrder {
                        step,
                        action: "start",
                        status: other,
                    }),
                }
            }
            C::CompleteStep { step, output, at } => {
                let outcome = StepOutcome::Completed(output);
                self.finish_step(status, step, outcome, at)
            }
            C::FailStep { step, error, at } => {
                self.finish_step(status, step, StepOutcome::Failed(error), at)
            }
            C::Complete {
                production_url,
                preview_url,
                pinned_by,
                at,
            } => match status {
                S::Completed => Ok(vec![]),
                S::Running if self.steps.iter().all(|s| s.status == StepStatus::Completed) => {
                    Ok(vec![DeployEvent::DeployCompleted(DeployCompleted {
                        production_url,
                        preview_url,
                        release: self.release(pinned_by),
                        completed_at: at,
                    })])
                }
                S::Running => Err(DeployError::StepsIncomplete),
                other => Err(DeployError::Terminal(other)),
            },
            C::Fail { error, at } => match status {
                S::Failed => Ok(vec![]),
                S::Pending | S::Running => Ok(vec![DeployEvent::DeployFailed(DeployFailed {
                    error,
                    failed_at: at,
                })]),
                other => Err(DeployError::Terminal(other)),
            },
        }
    }
}

impl Aggregate for Deploy {
    const TYPE: &'static str = "Deploy";
    type Command = DeployCommand;
    type Event = DeployEvent;
    type Error = DeployError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let decided = self.decide(command);
        super::record(self, decided, sink).await
    }

    fn apply(&mut self, event: Self::Event) {
        let skip_pending = |steps: &mut Vec<Step>| {
            for s in steps.iter_mut().filter(|s| s.status == StepStatus::Pending) {
                s.status = StepStatus::Skipped;
            }
        };
        match event {
            DeployEvent::DeployCreated(created) => {
                self.steps = created
                    .steps
                    .iter()
                    .map(|name| Step {
                        name: name.clone(),
                        status: StepStatus::Pending,
                        output: None,
                    })
                    .collect();
                self.status = Some(DeployStatus::Pending);
                self.created = Some(created);
            }
            DeployEvent::DeployStarted(_) => self.status = Some(DeployStatus::Running),
            DeployEvent::StepStarted(e) => {
                if let Some(s) = self.step_mut(&e.step) {
                    s.status = StepStatus::Running;
                }
            }
            DeployEvent::StepCompleted(e) => {
                if let Some(s) = self.step_mut(&e.step) {
                    s.status = StepStatus::Completed;
                    s.output = e.output;
                }
            }
            DeployEvent::StepFailed(e) => {
                if let Some(s) = self.step_mut(&e.step) {
                    s.status = StepStatus::Failed;
                }
            }
            DeployEvent::StepDiscarded(e) => {
                if let Some(s) = self.step_mut(&e.step) {
                    s.status = StepStatus::Discarded;
                }
            }
            DeployEvent::DeployCompleted(_) => self.status = Some(DeployStatus::Completed),
            DeployEvent::DeployFailed(_) => {
                self.status = Some(DeployStatus::Failed);
                skip_pending(&mut self.steps);
            }
            DeployEvent::DeployCancelled(_) => {
                self.status = Some(DeployStatus::Cancelled);
                skip_pending(&mut self.steps);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Deploy>;

    fn t(s: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + i64::from(s), 0).unwrap()
    }

    fn create() -> CreateDeploy {
        CreateDeploy {
            deploy_id: "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            workspace_id: "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            entity_id: "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            build_id: "bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            version_id: None,
            trigger: Trigger::Manual,
            target: Target::Production,
            origin: Origin::Build,
            reason: None,
            source_event_id: None,
            metadata: serde_json::Map::new(),
            created_by: "alice".into(),
            at: t(0),
        }
    }

    fn created() -> DeployEvent {
        let c = create();
        DeployEvent::DeployCreated(DeployCreated {
            deploy_id: c.deploy_id,
            workspace_id: c.workspace_id,
            entity_id: c.entity_id,
            sequence_number: 0,
            build_id: c.build_id,
            version_id: None,
            trigger: c.trigger,
            target: c.target,
            rollback_of: None,
            promoted_from: None,
            reason: None,
            source_event_id: None,
            metadata: c.metadata,
            created_by: c.created_by,
            steps: STEPS.iter().map(|s| s.to_string()).collect(),
            created_at: c.at,
        })
    }

    fn started() -> DeployEvent {
        DeployEvent::DeployStarted(DeployStarted { started_at: t(1) })
    }

    fn step_started(step: &str) -> DeployEvent {
        DeployEvent::StepStarted(StepStarted {
            step: step.into(),
            at: t(2),
        })
    }

    fn step_completed(step: &str) -> DeployEvent {
        DeployEvent::StepCompleted(StepCompleted {
            step: step.into(),
            output: None,
            at: t(3),
        })
    }

    fn cancelled(previous: DeployStatus) -> DeployEvent {
        DeployEvent::DeployCancelled(DeployCancelled {
            reason: Some("wrong build".into()),
            cancelled_by: "bob".into(),
            previous_status: previous,
            superseded_by: None,
            cancelled_at: t(5),
        })
    }

    fn cancel() -> DeployCommand {
        DeployCommand::Cancel {
            reason: Some("wrong build".into()),
            by: "bob".into(),
            at: t(5),
        }
    }

    fn all_steps_done() -> Vec<DeployEvent> {
        let mut events = vec![created(), started()];
        for s in STEPS {
            events.push(step_started(s));
            events.push(step_completed(s));
        }
        events
    }

    #[test]
    fn create_makes_a_pending_deploy_with_the_step_plan_and_no_number_yet() {
        Given::with(())
            .given_no_previous_events()
            .when(DeployCommand::Create(create()))
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn create_twice_is_refused() {
        Given::with(())
            .given(vec![created()])
            .when(DeployCommand::Create(create()))
            .then_expect_error(DeployError::AlreadyExists);
    }

    #[test]
    fn anything_but_create_on_a_missing_deploy_is_not_found() {
        Given::with(())
            .given_no_previous_events()
            .when(cancel())
            .then_expect_error(DeployError::NotFound);
    }

    #[test]
    fn cancel_of_a_pending_deploy_cancels_it() {
        Given::with(())
            .given(vec![created()])
            .when(cancel())
            .then_expect_events(vec![cancelled(DeployStatus::Pending)]);
    }

    #[test]
    fn cancel_of_a_running_deploy_cancels_it_at_once() {
        Given::with(())
            .given(vec![created(), started(), step_started("prepare")])
            .when(cancel())
            .then_expect_events(vec![cancelled(DeployStatus::Running)]);
    }

    #[test]
    fn cancel_of_a_terminal_deploy_is_refused_with_its_status() {
        Given::with(())
            .given(vec![created(), cancelled(DeployStatus::Pending)])
            .when(cancel())
            .then_expect_error(DeployError::Terminal(DeployStatus::Cancelled));
        let mut done = all_steps_done();
        done.push(DeployEvent::DeployCompleted(DeployCompleted {
            production_url: None,
            preview_url: None,
            release: None,
            completed_at: t(9),
        }));
        Given::with(())
            .given(done)
            .when(cancel())
            .then_expect_error(DeployError::Terminal(DeployStatus::Completed));
    }

    #[test]
    fn start_is_idempotent_and_refused_after_cancel() {
        Given::with(())
            .given(vec![created()])
            .when(DeployCommand::Start { at: t(1) })
            .then_expect_events(vec![started()]);
        Given::with(())
            .given(vec![created(), started()])
            .when(DeployCommand::Start { at: t(1) })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![created(), cancelled(DeployStatus::Pending)])
            .when(DeployCommand::Start { at: t(1) })
            .then_expect_error(DeployError::Terminal(DeployStatus::Cancelled));
    }

    #[test]
    fn steps_run_in_order_and_a_redelivered_step_command_writes_nothing() {
        Given::with(())
            .given(vec![created(), started()])
            .when(DeployCommand::StartStep {
                step: "upload".into(),
                at: t(2),
            })
            .then_expect_error(DeployError::StepOutOfOrder {
                step: "upload".into(),
                action: "start",
                status: StepStatus::Pending,
            });
        Given::with(())
            .given(vec![
                created(),
                started(),
                step_started("prepare"),
                step_completed("prepare"),
            ])
            .when(DeployCommand::CompleteStep {
                step: "prepare".into(),
                output: None,
                at: t(3),
            })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![
                created(),
                started(),
                step_started("prepare"),
                step_completed("prepare"),
            ])
            .when(DeployCommand::StartStep {
                step: "prepare".into(),
                at: t(3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_step_that_finishes_after_cancel_is_discarded() {
        Given::with(())
            .given(vec![
                created(),
                started(),
                step_started("upload"),
                cancelled(DeployStatus::Running),
            ])
            .when(DeployCommand::CompleteStep {
                step: "upload".into(),
                output: None,
                at: t(6),
            })
            .then_expect_events(vec![DeployEvent::StepDiscarded(StepDiscarded {
                step: "upload".into(),
                error: None,
                at: t(6),
            })]);
    }

    #[test]
    fn a_step_failing_after_cancel_is_discarded_with_its_error_and_a_repeat_writes_nothing() {
        let given = vec![
            created(),
            started(),
            step_started("upload"),
            cancelled(DeployStatus::Running),
        ];
        let fail = DeployCommand::FailStep {
            step: "upload".into(),
            error: "disk full".into(),
            at: t(6),
        };
        let discarded = DeployEvent::StepDiscarded(StepDiscarded {
            step: "upload".into(),
            error: Some("disk full".into()),
            at: t(6),
        });
        Given::with(())
            .given(given.clone())
            .when(fail.clone())
            .then_expect_events(vec![discarded.clone()]);
        let mut again = given;
        again.push(discarded);
        Given::with(())
            .given(again)
            .when(fail)
            .then_expect_events(vec![]);
    }

    #[test]
    fn complete_needs_every_step_completed() {
        Given::with(())
            .given(vec![created(), started(), step_started("prepare")])
            .when(DeployCommand::Complete {
                production_url: None,
                preview_url: None,
                pinned_by: None,
                at: t(9),
            })
            .then_expect_error(DeployError::StepsIncomplete);
        Given::with(())
            .given(all_steps_done())
            .when(DeployCommand::Complete {
                production_url: Some("http://x/".into()),
                preview_url: Some("http://y/".into()),
                pinned_by: None,
                at: t(9),
            })
            .then_expect_events(vec![DeployEvent::DeployCompleted(DeployCompleted {
                production_url: Some("http://x/".into()),
                preview_url: Some("http://y/".into()),
                release: Some(Release {
                    live: true,
                    pinned_by: None,
                }),
                completed_at: t(9),
            })]);
    }

    #[test]
    fn fail_skips_the_steps_not_run_and_is_terminal() {
        let failed = DeployEvent::DeployFailed(DeployFailed {
            error: "upload timed out".into(),
            failed_at: t(7),
        });
        Given::with(())
            .given(vec![created(), started()])
            .when(DeployCommand::Fail {
                error: "upload timed out".into(),
                at: t(7),
            })
            .then_expect_events(vec![failed.clone()]);
        Given::with(())
            .given(vec![created(), started(), failed])
            .when(cancel())
            .then_expect_error(DeployError::Terminal(DeployStatus::Failed));

        let mut deploy = Deploy::default();
        deploy.apply(created());
        deploy.apply(DeployEvent::DeployFailed(DeployFailed {
            error: "x".into(),
            failed_at: t(7),
        }));
        assert!(deploy.steps.iter().all(|s| s.status == StepStatus::Skipped));
    }

    const SOURCE: &str = "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K50";
    const PIN: &str = "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5P";

    fn source(status: DeployStatus, target: Target, live: bool) -> SourceDeploy {
        SourceDeploy {
            id: SOURCE.parse().unwrap(),
            status,
            target,
            live,
        }
    }

    fn with_origin(origin: Origin, target: Target, trigger: Trigger) -> DeployCommand {
        DeployCommand::Create(CreateDeploy {
            origin,
            target,
            trigger,
            reason: Some("bad release".into()),
            ..create()
        })
    }

    fn created_as(
        trigger: Trigger,
        target: Target,
        rollback_of: Option<&str>,
        promoted_from: Option<&str>,
        reason: Option<&str>,
    ) -> DeployEvent {
        let DeployEvent::DeployCreated(c) = created() else {
            unreachable!()
        };
        DeployEvent::DeployCreated(DeployCreated {
            trigger,
            target,
            rollback_of: rollback_of.map(|s| s.parse().unwrap()),
            promoted_from: promoted_from.map(|s| s.parse().unwrap()),
            reason: reason.map(Into::into),
            ..c
        })
    }

    #[test]
    fn a_rollback_to_a_completed_production_deploy_that_is_not_live_is_a_production_rollback() {
        let origin = Origin::Rollback(source(DeployStatus::Completed, Target::Production, false));
        Given::with(())
            .given_no_previous_events()
            .when(with_origin(origin, Target::Preview, Trigger::Manual))
            .then_expect_events(vec![created_as(
                Trigger::Rollback,
                Target::Production,
                Some(SOURCE),
                None,
                Some("bad release"),
            )]);
    }

    #[test]
    fn a_rollback_is_refused_for_a_deploy_not_completed_a_preview_or_the_live_one() {
        let refused = |s: SourceDeploy, why: Ineligible| {
            Given::with(())
                .given_no_previous_events()
                .when(with_origin(
                    Origin::Rollback(s),
                    Target::Production,
                    Trigger::Rollback,
                ))
                .then_expect_error(DeployError::Ineligible(why));
        };
        let id: DeployId = SOURCE.parse().unwrap();
        refused(
            source(DeployStatus::Running, Target::Production, false),
            Ineligible::NotCompleted {
                id,
                status: DeployStatus::Running,
                action: "rolled back to",
            },
        );
        refused(
            source(DeployStatus::Completed, Target::Preview, false),
            Ineligible::NotProduction(id),
        );
        refused(
            source(DeployStatus::Completed, Target::Production, true),
            Ineligible::AlreadyLive(id, "roll back to"),
        );
    }

    #[test]
    fn a_promotion_of_any_completed_deploy_not_live_is_a_manual_production_deploy() {
        let origin = Origin::Promotion(source(DeployStatus::Completed, Target::Preview, false));
        Given::with(())
            .given_no_previous_events()
            .when(with_origin(origin, Target::Preview, Trigger::Auto))
            .then_expect_events(vec![created_as(
                Trigger::Manual,
                Target::Production,
                None,
                Some(SOURCE),
                Some("bad release"),
            )]);
        let live = Origin::Promotion(source(DeployStatus::Completed, Target::Production, true));
        Given::with(())
            .given_no_previous_events()
            .when(with_origin(live, Target::Production, Trigger::Manual))
            .then_expect_error(DeployError::Ineligible(Ineligible::AlreadyLive(
                SOURCE.parse().unwrap(),
                "promote",
            )));
        let failed = Origin::Promotion(source(DeployStatus::Failed, Target::Preview, false));
        Given::with(())
            .given_no_previous_events()
            .when(with_origin(failed, Target::Production, Trigger::Manual))
            .then_expect_error(DeployError::Ineligible(Ineligible::NotCompleted {
                id: SOURCE.parse().unwrap(),
                status: DeployStatus::Failed,
                action: "promoted",
            }));
    }

    /// Completes a deploy created as `created`, with production pinned by
    /// `pinned_by`, and expects `release`.
    fn completes_with(created: DeployEvent, pinned_by: Option<&str>, release: Option<Release>) {
        let mut given = all_steps_done();
        given[0] = created;
        Given::with(())
            .given(given)
            .when(DeployCommand::Complete {
                production_url: None,
                preview_url: None,
                pinned_by: pinned_by.map(|p| p.parse().unwrap()),
                at: t(9),
            })
            .then_expect_events(vec![DeployEvent::DeployCompleted(DeployCompleted {
                production_url: None,
                preview_url: None,
                release,
                completed_at: t(9),
            })]);
    }

    #[test]
    fn a_completed_rollback_goes_live_and_pins_production() {
        let rollback = created_as(
            Trigger::Rollback,
            Target::Production,
            Some(SOURCE),
            None,
            None,
        );
        completes_with(
            rollback,
            None,
            Some(Release {
                live: true,
                pinned_by: Some(create().deploy_id),
            }),
        );
    }

    #[test]
    fn an_auto_deploy_completing_while_pinned_does_not_go_live_and_the_pin_stays() {
        let auto = created_as(Trigger::Auto, Target::Production, None, None, None);
        completes_with(
            auto.clone(),
            Some(PIN),
            Some(Release {
                live: false,
                pinned_by: Some(PIN.parse().unwrap()),
            }),
        );
        completes_with(
            auto,
            None,
            Some(Release {
                live: true,
                pinned_by: None,
            }),
        );
    }

    #[test]
    fn a_completed_promotion_or_manual_production_deploy_goes_live_and_unpins() {
        let promotion = created_as(
            Trigger::Manual,
            Target::Production,
            None,
            Some(SOURCE),
            None,
        );
        let unpinned = Some(Release {
            live: true,
            pinned_by: None,
        });
        completes_with(promotion, Some(PIN), unpinned.clone());
        let manual = created_as(Trigger::Manual, Target::Production, None, None, None);
        completes_with(manual, Some(PIN), unpinned);
    }

    #[test]
    fn a_completed_preview_changes_nothing_in_production() {
        let preview = created_as(Trigger::Manual, Target::Preview, None, None, None);
        completes_with(preview, Some(PIN), None);
    }

    #[test]
    fn supersede_cancels_a_pending_deploy_by_system_and_leaves_a_running_or_ended_one() {
        let newer: DeployId = PIN.parse().unwrap();
        Given::with(())
            .given(vec![created()])
            .when(DeployCommand::Supersede {
                by: newer,
                at: t(4),
            })
            .then_expect_events(vec![DeployEvent::DeployCancelled(DeployCancelled {
                reason: Some(format!("superseded by {PIN}")),
                cancelled_by: "system".into(),
                previous_status: DeployStatus::Pending,
                superseded_by: Some(newer),
                cancelled_at: t(4),
            })]);
        Given::with(())
            .given(vec![created(), started()])
            .when(DeployCommand::Supersede {
                by: newer,
                at: t(4),
            })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![created(), cancelled(DeployStatus::Pending)])
            .when(DeployCommand::Supersede {
                by: newer,
                at: t(4),
            })
            .then_expect_events(vec![]);
    }
}
