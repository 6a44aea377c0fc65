//! The catalog: the entities (apps, functions) and builds that deploys are
//! made from. deployd builds nothing; these reach it as upstream documents
//! (`catalog.md`) and are recorded as events, so the log alone rebuilds them.
//!
//! Both aggregates make the upstream feed idempotent and order-proof: a
//! redelivered document writes nothing, an entity update older than the one
//! recorded writes nothing, and a build, once recorded, never changes.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{BuildId, EntityId, EntityKind, EventId, VersionId, WorkspaceId};
use crate::domain::DeployPolicy;

/// An entity as upstream describes it, with the upstream event that said so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntityUpserted {
    pub workspace_id: WorkspaceId,
    pub entity_id: EntityId,
    pub kind: EntityKind,
    pub name: String,
    pub default_version_id: Option<VersionId>,
    pub auto_deploy: bool,
    /// Since v2 (a v1 event reads as `queue`).
    pub deploy_policy: DeployPolicy,
    pub source_event_id: EventId,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum EntityEvent {
    EntityUpserted(EntityUpserted),
}

impl DomainEvent for EntityEvent {
    fn event_type(&self) -> String {
        "EntityUpserted".into()
    }
    fn event_version(&self) -> String {
        // v2: `deployPolicy` (see `store::upcast`)
        "2".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{id} belongs to workspace {recorded}, not {claimed}")]
    WrongWorkspace {
        id: String,
        recorded: WorkspaceId,
        claimed: WorkspaceId,
    },
    #[error("build {0} is already recorded with other content; build ids are immutable")]
    BuildImmutable(BuildId),
}

/// Upsert an entity from an upstream document.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertEntity(pub EntityUpserted);

/// The entity's last recorded description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub last: Option<EntityUpserted>,
}

impl Entity {
    fn decide(&self, UpsertEntity(doc): UpsertEntity) -> Result<Vec<EntityEvent>, CatalogError> {
        let Some(last) = &self.last else {
            return Ok(vec![EntityEvent::EntityUpserted(doc)]);
        };
        if last.workspace_id != doc.workspace_id {
            return Err(CatalogError::WrongWorkspace {
                id: doc.entity_id.to_string(),
                recorded: last.workspace_id,
                claimed: doc.workspace_id,
            });
        }
        let same_content = last.kind == doc.kind
            && last.name == doc.name
            && last.default_version_id == doc.default_version_id
            && last.auto_deploy == doc.auto_deploy
            && last.deploy_policy == doc.deploy_policy;
        let stale = doc.occurred_at < last.occurred_at;
        if last.source_event_id == doc.source_event_id || same_content || stale {
            return Ok(vec![]);
        }
        Ok(vec![EntityEvent::EntityUpserted(doc)])
    }
}

impl Aggregate for Entity {
    const TYPE: &'static str = "Entity";
    type Command = UpsertEntity;
    type Event = EntityEvent;
    type Error = CatalogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UpsertEntity,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CatalogError> {
        let decided = self.decide(command);
        super::record(self, decided, sink).await
    }

    fn apply(&mut self, EntityEvent::EntityUpserted(e): EntityEvent) {
        self.last = Some(e);
    }
}

/// How a build ended upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildRecorded {
    pub workspace_id: WorkspaceId,
    pub build_id: BuildId,
    pub entity_id: EntityId,
    pub version_id: VersionId,
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub source_event_id: EventId,
    #[serde(with = "crate::domain::time::rfc3339")]
    #[schemars(with = "String")]
    pub occurred_at: DateTime<Utc>,
    /// Set when the build succeeded: the directory of files to publish.
    pub artifact_dir: Option<String>,
    /// Set when the build failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum BuildEvent {
    BuildSucceeded(BuildRecorded),
    BuildFailed(BuildRecorded),
}

impl DomainEvent for BuildEvent {
    fn event_type(&self) -> String {
        match self {
            BuildEvent::BuildSucceeded(_) => "BuildSucceeded",
            BuildEvent::BuildFailed(_) => "BuildFailed",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Record an upstream build outcome (one of the two events).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordBuild(pub BuildEvent);

impl BuildEvent {
    pub fn recorded(&self) -> &BuildRecorded {
        match self {
            BuildEvent::BuildSucceeded(b) | BuildEvent::BuildFailed(b) => b,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub recorded: Option<BuildEvent>,
}

impl Build {
    fn decide(&self, RecordBuild(event): RecordBuild) -> Result<Vec<BuildEvent>, CatalogError> {
        let Some(recorded) = &self.recorded else {
            return Ok(vec![event]);
        };
        let (old, new) = (recorded.recorded(), event.recorded());
        if old.workspace_id != new.workspace_id {
            return Err(CatalogError::WrongWorkspace {
                id: new.build_id.to_string(),
                recorded: old.workspace_id,
                claimed: new.workspace_id,
            });
        }
        let same_outcome = std::mem::discriminant(recorded) == std::mem::discriminant(&event)
            && BuildRecorded {
                source_event_id: old.source_event_id,
                occurred_at: old.occurred_at,
                ..new.clone()
            } == *old;
        if old.source_event_id == new.source_event_id || same_outcome {
            Ok(vec![])
        } else {
            Err(CatalogError::BuildImmutable(new.build_id))
        }
    }
}

impl Aggregate for Build {
    const TYPE: &'static str = "Build";
    type Command = RecordBuild;
    type Event = BuildEvent;
    type Error = CatalogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: RecordBuild,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CatalogError> {
        let decided = self.decide(command);
        super::record(self, decided, sink).await
    }

    fn apply(&mut self, event: BuildEvent) {
        self.recorded = Some(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn entity(event: &str, at: i64, name: &str) -> EntityUpserted {
        EntityUpserted {
            workspace_id: "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            entity_id: "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            kind: EntityKind::App,
            name: name.into(),
            default_version_id: None,
            auto_deploy: false,
            deploy_policy: DeployPolicy::Queue,
            source_event_id: event.parse().unwrap(),
            occurred_at: t(at),
        }
    }

    const E1: &str = "evt_01JDQ2V7C8X3ZJ8Q6Y0W6H4K51";
    const E2: &str = "evt_01JDQ2V7C8X3ZJ8Q6Y0W6H4K52";

    #[test]
    fn a_new_entity_is_recorded_and_a_redelivery_writes_nothing() {
        TestFramework::<Entity>::with(())
            .given_no_previous_events()
            .when(UpsertEntity(entity(E1, 0, "web")))
            .then_expect_events(vec![EntityEvent::EntityUpserted(entity(E1, 0, "web"))]);
        TestFramework::<Entity>::with(())
            .given(vec![EntityEvent::EntityUpserted(entity(E1, 0, "web"))])
            .when(UpsertEntity(entity(E1, 0, "web")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_newer_update_is_recorded_and_an_older_one_is_ignored() {
        let given = vec![EntityEvent::EntityUpserted(entity(E1, 10, "web"))];
        TestFramework::<Entity>::with(())
            .given(given.clone())
            .when(UpsertEntity(entity(E2, 20, "site")))
            .then_expect_events(vec![EntityEvent::EntityUpserted(entity(E2, 20, "site"))]);
        TestFramework::<Entity>::with(())
            .given(given)
            .when(UpsertEntity(entity(E2, 5, "old")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_entity_cannot_move_to_another_workspace() {
        let mut moved = entity(E2, 20, "web");
        moved.workspace_id = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K59".parse().unwrap();
        TestFramework::<Entity>::with(())
            .given(vec![EntityEvent::EntityUpserted(entity(E1, 10, "web"))])
            .when(UpsertEntity(moved.clone()))
            .then_expect_error(CatalogError::WrongWorkspace {
                id: moved.entity_id.to_string(),
                recorded: entity(E1, 0, "").workspace_id,
                claimed: moved.workspace_id,
            });
    }

    fn build(event: &str, artifact: Option<&str>) -> BuildRecorded {
        BuildRecorded {
            workspace_id: "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            build_id: "bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            entity_id: "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            version_id: "ver_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
            commit_sha: Some("abc".into()),
            branch: Some("main".into()),
            source_event_id: event.parse().unwrap(),
            occurred_at: t(0),
            artifact_dir: artifact.map(Into::into),
            error: None,
        }
    }

    #[test]
    fn a_build_is_immutable_once_recorded() {
        let first = BuildEvent::BuildSucceeded(build(E1, Some("/a")));
        TestFramework::<Build>::with(())
            .given_no_previous_events()
            .when(RecordBuild(first.clone()))
            .then_expect_events(vec![first.clone()]);
        TestFramework::<Build>::with(())
            .given(vec![first.clone()])
            .when(RecordBuild(first.clone()))
            .then_expect_events(vec![]);
        TestFramework::<Build>::with(())
            .given(vec![first.clone()])
            .when(RecordBuild(BuildEvent::BuildSucceeded(build(
                E2,
                Some("/a"),
            ))))
            .then_expect_events(vec![]);
        TestFramework::<Build>::with(())
            .given(vec![first])
            .when(RecordBuild(BuildEvent::BuildSucceeded(build(
                E2,
                Some("/b"),
            ))))
            .then_expect_error(CatalogError::BuildImmutable(build(E1, None).build_id));
    }
}
