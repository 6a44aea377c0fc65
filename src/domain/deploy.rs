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
use crate::domain::{DeployStatus, StepStatus, Trigger};

/// The steps of every deploy, in execution order.
pub const STEPS: &[&str] = &["prepare", "upload", "promote"];

/// What can be asked of a deploy.
#[derive(Debug, Clone, PartialEq)]
pub enum DeployCommand {
    Create(CreateDeploy),
    Cancel {
        reason: Option<String>,
        by: String,
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
    pub source_event_id: Option<EventId>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_by: String,
    pub at: DateTime<Utc>,
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
/// `versionId: null` (`store::upcast`).
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
    pub source_event_id: Option<EventId>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_by: String,
    /// The step plan, in execution order.
    pub steps: Vec<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
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
    /// What the step produced (the promote step: `{previewUrl, productionUrl}`).
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

/// Every step completed: the deploy is live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployCompleted {
    pub production_url: Option<String>,
    pub preview_url: Option<String>,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub completed_at: DateTime<Utc>,
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
            // v2: `versionId` (see `store::upcast`)
            DeployEvent::DeployCreated(_) => "2",
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

    fn decide(&self, command: DeployCommand) -> Result<Vec<DeployEvent>, DeployError> {
        use DeployCommand as C;
        use DeployStatus as S;
        let Some(status) = self.status else {
            return match command {
                C::Create(c) => Ok(vec![DeployEvent::DeployCreated(DeployCreated {
                    deploy_id: c.deploy_id,
                    workspace_id: c.workspace_id,
                    entity_id: c.entity_id,
                    sequence_number: 0,
                    build_id: c.build_id,
                    version_id: c.version_id,
                    trigger: c.trigger,
                    source_event_id: c.source_event_id,
                    metadata: c.metadata,
                    created_by: c.created_by,
                    steps: STEPS.iter().map(|s| s.to_string()).collect(),
                    created_at: c.at,
                })]),
                _ => Err(DeployError::NotFound),
            };
        };
        match command {
            C::Create(_) => Err(DeployError::AlreadyExists),
            C::Cancel { reason, by, at } => match status {
                S::Pending | S::Running => {
                    Ok(vec![DeployEvent::DeployCancelled(DeployCancelled {
                        reason,
                        cancelled_by: by,
                        previous_status: status,
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
                at,
            } => match status {
                S::Completed => Ok(vec![]),
                S::Running if self.steps.iter().all(|s| s.status == StepStatus::Completed) => {
                    Ok(vec![DeployEvent::DeployCompleted(DeployCompleted {
                        production_url,
                        preview_url,
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
                at: t(9),
            })
            .then_expect_error(DeployError::StepsIncomplete);
        Given::with(())
            .given(all_steps_done())
            .when(DeployCommand::Complete {
                production_url: Some("http://x/".into()),
                preview_url: Some("http://y/".into()),
                at: t(9),
            })
            .then_expect_events(vec![DeployEvent::DeployCompleted(DeployCompleted {
                production_url: Some("http://x/".into()),
                preview_url: Some("http://y/".into()),
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
}
