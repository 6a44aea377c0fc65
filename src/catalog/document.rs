//! The upstream catalog documents (`docs/catalog.md`), parsed strictly: a
//! bad document is refused with every complaint naming its field.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::domain::catalog::{BuildEvent, BuildRecorded, EntityUpserted};
use crate::domain::ids::{BuildId, EntityId, EntityKind, EventId, VersionId, WorkspaceId};
use crate::domain::DeployPolicy;
use crate::domain::FieldError;

/// `entity.upserted`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityUpsertedDoc {
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: EventId,
    #[schemars(with = "String")]
    pub occurred_at: DateTime<Utc>,
    pub workspace_id: WorkspaceId,
    pub entity: EntityDoc,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityDoc {
    pub id: EntityId,
    pub kind: EntityKind,
    pub name: String,
    #[serde(default)]
    pub default_version_id: Option<VersionId>,
    #[serde(default)]
    pub auto_deploy: bool,
    /// `queue` (the default) or `latest` (`spec/releases.md`).
    #[serde(default)]
    pub deploy_policy: DeployPolicy,
}

/// `build.succeeded` and `build.failed`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildDocEnvelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: EventId,
    #[schemars(with = "String")]
    pub occurred_at: DateTime<Utc>,
    pub workspace_id: WorkspaceId,
    pub build: BuildDoc,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildDoc {
    pub id: BuildId,
    pub entity_id: EntityId,
    pub version_id: VersionId,
    /// Required for `build.succeeded`: an absolute directory.
    #[serde(default)]
    pub artifact_dir: Option<String>,
    /// Required for `build.failed`.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub commit_sha: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
}

/// A valid catalog document, ready to become a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogDocument {
    Entity(EntityUpserted),
    Build(BuildEvent),
}

impl CatalogDocument {
    pub fn event_id(&self) -> EventId {
        match self {
            CatalogDocument::Entity(e) => e.source_event_id,
            CatalogDocument::Build(b) => b.recorded().source_event_id,
        }
    }

    pub fn workspace_id(&self) -> WorkspaceId {
        match self {
            CatalogDocument::Entity(e) => e.workspace_id,
            CatalogDocument::Build(b) => b.recorded().workspace_id,
        }
    }
}

fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string().replace('.', "/");
        let pointer = if path == "." { String::new() } else { path };
        vec![FieldError::new(pointer, e.into_inner().to_string())]
    })
}

fn require(cond: bool, pointer: &str, message: &str, errors: &mut Vec<FieldError>) {
    if !cond {
        errors.push(FieldError::new(pointer, message));
    }
}

/// Parses one document (one line of an import file, or one NATS message).
pub fn parse(text: &str) -> Result<CatalogDocument, Vec<FieldError>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| vec![FieldError::new("", format!("not a JSON document: {e}"))])?;
    if let Some(issue) = crate::domain::json::integer_literal_issue(text.as_bytes()) {
        return Err(vec![FieldError::new("", issue)]);
    }
    if let Some(at) = crate::domain::json::duplicate_key(text.as_bytes()) {
        return Err(vec![FieldError::new(
            at,
            "this key appears more than once in its object",
        )]);
    }
    // Values either engine could not store exactly (NUL in a string, odd
    // numbers, deep nesting) are refused before anything else.
    let issues = crate::domain::json::check(&value, "");
    if !issues.is_empty() {
        return Err(issues
            .into_iter()
            .map(|i| FieldError::new(i.pointer, i.message))
            .collect());
    }
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| {
            vec![FieldError::new(
                "type",
                "missing; expected entity.upserted, build.succeeded or build.failed",
            )]
        })?
        .to_string();
    let mut errors = Vec::new();
    let document = match kind.as_str() {
        "entity.upserted" => {
            let doc: EntityUpsertedDoc = typed(value)?;
            require(
                doc.entity.id.kind() == doc.entity.kind,
                "entity/id",
                "the id's prefix does not match entity.kind (app_ for app, fn_ for function)",
                &mut errors,
            );
            require(
                !doc.entity.name.trim().is_empty() && doc.entity.name.len() <= 200,
                "entity/name",
                "must be 1 to 200 characters",
                &mut errors,
            );
            CatalogDocument::Entity(EntityUpserted {
                workspace_id: doc.workspace_id,
                entity_id: doc.entity.id,
                kind: doc.entity.kind,
                name: doc.entity.name,
                default_version_id: doc.entity.default_version_id,
                auto_deploy: doc.entity.auto_deploy,
                deploy_policy: doc.entity.deploy_policy,
                source_event_id: doc.event_id,
                occurred_at: doc.occurred_at,
            })
        }
        "build.succeeded" | "build.failed" => {
            let doc: BuildDocEnvelope = typed(value)?;
            let succeeded = kind == "build.succeeded";
            let b = doc.build;
            if succeeded {
                require(
                    b.artifact_dir
                        .as_deref()
                        .is_some_and(|d| std::path::Path::new(d).is_absolute()),
                    "build/artifactDir",
                    "required for build.succeeded: an absolute path",
                    &mut errors,
                );
                require(b.error.is_none(), "build/error", "only for build.failed", &mut errors);
            } else {
                require(
                    b.error.as_deref().is_some_and(|e| !e.is_empty()),
                    "build/error",
                    "required for build.failed",
                    &mut errors,
                );
                require(
                    b.artifact_dir.is_none(),
                    "build/artifactDir",
                    "only for build.succeeded",
                    &mut errors,
                );
            }
            let recorded = BuildRecorded {
                workspace_id: doc.workspace_id,
                build_id: b.id,
                entity_id: b.entity_id,
                version_id: b.version_id,
                commit_sha: b.commit_sha,
                branch: b.branch,
                source_event_id: doc.event_id,
                occurred_at: doc.occurred_at,
                artifact_dir: b.artifact_dir,
                error: b.error,
            };
            CatalogDocument::Build(if succeeded {
                BuildEvent::BuildSucceeded(recorded)
            } else {
                BuildEvent::BuildFailed(recorded)
            })
        }
        other => {
            return Err(vec![FieldError::new(
                "type",
                format!("unknown document type {other:?}; expected entity.upserted, build.succeeded or build.failed"),
            )])
        }
    };
    if errors.is_empty() {
        Ok(document)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    const APP: &str = "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    const EVT: &str = "evt_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";

    fn pointers(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn a_good_entity_document_parses() {
        let doc = format!(
            r#"{{"type":"entity.upserted","eventId":"{EVT}","occurredAt":"2026-11-27T10:00:00Z",
                "workspaceId":"{WS}","entity":{{"id":"{APP}","kind":"app","name":"web","autoDeploy":true}}}}"#
        );
        let CatalogDocument::Entity(e) = parse(&doc).unwrap() else {
            panic!("not an entity")
        };
        assert_eq!(e.name, "web");
        assert!(e.auto_deploy);
    }

    #[test]
    fn bad_documents_name_the_bad_field() {
        assert_eq!(pointers("{}"), vec!["type"]);
        assert_eq!(pointers("not json"), vec![""]);
        let wrong_kind = format!(
            r#"{{"type":"entity.upserted","eventId":"{EVT}","occurredAt":"2026-11-27T10:00:00Z",
                "workspaceId":"{WS}","entity":{{"id":"{APP}","kind":"database","name":"web"}}}}"#
        );
        assert_eq!(pointers(&wrong_kind), vec!["entity/kind"]);
        let relative = format!(
            r#"{{"type":"build.succeeded","eventId":"{EVT}","occurredAt":"2026-11-27T10:00:00Z",
                "workspaceId":"{WS}","build":{{"id":"bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M","entityId":"{APP}",
                "versionId":"ver_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M","artifactDir":"relative/dir"}}}}"#
        );
        assert_eq!(pointers(&relative), vec!["build/artifactDir"]);
        let unknown = format!(
            r#"{{"type":"entity.upserted","eventId":"{EVT}","occurredAt":"2026-11-27T10:00:00Z",
                "workspaceId":"{WS}","colour":"red","entity":{{"id":"{APP}","kind":"app","name":"web"}}}}"#
        );
        let errors = parse(&unknown).unwrap_err();
        assert!(errors[0].message.contains("colour"), "{errors:?}");
        let nul = format!(
            r#"{{"type":"entity.upserted","eventId":"{EVT}","occurredAt":"2026-11-27T10:00:00Z",
                "workspaceId":"{WS}","entity":{{"id":"{APP}","kind":"app","name":"w\u0000b"}}}}"#
        );
        assert_eq!(pointers(&nul), vec!["entity/name"]);
        let number = format!(
            r#"{{"type":"entity.upserted","eventId":"{EVT}","occurredAt":"2026-11-27T10:00:00Z",
                "workspaceId":"{WS}","x":1e300,"entity":{{"id":"{APP}","kind":"app","name":"web"}}}}"#
        );
        assert_eq!(pointers(&number), vec!["x"]);
    }
}
