//! JSON Schemas of everything deployd stores or accepts from outside,
//! generated from the Rust types (schemars) and checked in under
//! `event-schemas/`. `tests/schemas.rs` fails when the files and the code
//! drift; `DEPLOYD_WRITE_SCHEMAS=1 cargo test --test schemas` rewrites them.

use schemars::{schema_for, JsonSchema, Schema};

use crate::catalog::document::{BuildDocEnvelope, EntityUpsertedDoc};
use crate::domain::catalog::{BuildRecorded, EntityUpserted};
use crate::domain::deploy::{
    DeployCancelled, DeployCompleted, DeployCreated, DeployFailed, DeployStarted, StepCompleted,
    StepDiscarded, StepFailed, StepStarted,
};

fn titled<T: JsonSchema>(title: &str, description: &str) -> Schema {
    let mut schema = schema_for!(T);
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    schema
}

/// Marks a nullable field as always present (what a version bump
/// promises; schemars leaves `Option` fields out of `required`).
fn with_required(mut schema: Schema, field: &str) -> Schema {
    if let Some(required) = schema
        .get_mut("required")
        .and_then(serde_json::Value::as_array_mut)
    {
        required.push(field.into());
    }
    schema
}

/// `(path under event-schemas/, schema)` for every stored event (the data
/// of its current version, without the `{"<Type>": …}` envelope) and every catalog
/// document.
pub fn all() -> Vec<(String, Schema)> {
    let event = |name: &str, schema: Schema| (format!("events/{name}.v1.json"), schema);
    let mut out = vec![
        // v3 (`target`, `rollbackOf`, `promotedFrom`, `reason`; v2 added
        // `versionId`); the older files stay on disk for readers of old
        // events.
        (
            "events/DeployCreated.v3.json".to_string(),
            ["versionId", "rollbackOf", "promotedFrom", "reason"]
                .into_iter()
                .fold(
                    titled::<DeployCreated>("DeployCreated v3", "A deploy was asked for."),
                    with_required,
                ),
        ),
        event(
            "DeployStarted",
            titled::<DeployStarted>("DeployStarted v1", "A worker began the deploy."),
        ),
        event(
            "StepStarted",
            titled::<StepStarted>("StepStarted v1", "A step began."),
        ),
        // v2 (the promote step's output holds locations);
        // `StepCompleted.v1.json` stays on disk.
        (
            "events/StepCompleted.v2.json".to_string(),
            titled::<StepCompleted>("StepCompleted v2", "A step finished and its result counts."),
        ),
        event(
            "StepFailed",
            titled::<StepFailed>("StepFailed v1", "A step failed."),
        ),
        event(
            "StepDiscarded",
            titled::<StepDiscarded>(
                "StepDiscarded v1",
                "A step in flight at cancel finished; its result is discarded.",
            ),
        ),
        // v3 (locations, not URLs); `DeployCompleted.v1.json` and `.v2.json`
        // stay on disk.
        (
            "events/DeployCompleted.v3.json".to_string(),
            with_required(
                titled::<DeployCompleted>(
                    "DeployCompleted v3",
                    "Every step completed; `release` says what it did to the entity's production.",
                ),
                "release",
            ),
        ),
        event(
            "DeployFailed",
            titled::<DeployFailed>("DeployFailed v1", "The deploy failed."),
        ),
        event(
            "DeployCancelled",
            titled::<DeployCancelled>("DeployCancelled v1", "The deploy was cancelled."),
        ),
        // v2 (`deployPolicy`); `EntityUpserted.v1.json` stays on disk.
        (
            "events/EntityUpserted.v2.json".to_string(),
            titled::<EntityUpserted>(
                "EntityUpserted v2",
                "An entity as upstream last described it.",
            ),
        ),
        event(
            "BuildSucceeded",
            titled::<BuildRecorded>("BuildSucceeded v1", "A build succeeded upstream."),
        ),
        event(
            "BuildFailed",
            titled::<BuildRecorded>("BuildFailed v1", "A build failed upstream."),
        ),
    ];
    out.push((
        "catalog/entity.upserted.json".into(),
        titled::<EntityUpsertedDoc>(
            "entity.upserted",
            "Catalog document: an app or function was created or changed.",
        ),
    ));
    out.push((
        "catalog/build.json".into(),
        titled::<BuildDocEnvelope>(
            "build.succeeded / build.failed",
            "Catalog document: a build ended. build.succeeded requires artifactDir, build.failed requires error.",
        ),
    ));
    for (name, schema) in crate::read_model::list::schemas() {
        out.push((format!("query/{name}.json"), schema));
    }
    out
}
