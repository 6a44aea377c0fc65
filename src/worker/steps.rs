//! Running one step of a deploy against the target: what it works on,
//! the manifest `prepare` scanned, timeouts and retries of transient
//! failures.

use serde_json::{json, Value};

use super::Worker;
use crate::domain::deploy::DeployCreated;
use crate::domain::ids::DeployId;
use crate::domain::{StepName, Target};
use crate::hosting::manifests::{load_manifest, save_manifest};
use crate::hosting::{Manifest, StepContext, StepError};
use crate::read_model::lookups;

impl Worker {
    /// What a step of `created` works on.
    async fn context(&self, created: &DeployCreated) -> Result<StepContext, StepError> {
        let row = lookups::build_context(&self.db, &created.build_id.to_string())
            .await
            .map_err(|e| StepError::transient(format!("reading the build: {e}")))?;
        let (artifact_dir, _, _) = row.ok_or_else(|| {
            StepError::permanent(format!("build {} is not in the catalog", created.build_id))
        })?;
        let artifact_dir = artifact_dir.ok_or_else(|| {
            StepError::permanent(format!(
                "build {} has no artifact directory",
                created.build_id
            ))
        })?;
        // Checked again here: the document was checked when it was recorded,
        // but the roots, the links on the way or the log may have changed.
        let artifact_dir = crate::hosting::artifacts::ArtifactRoots::new(
            self.settings.artifact_roots.clone(),
            self.settings.data_dir.clone(),
        )
        .check(std::path::Path::new(&artifact_dir))
        .map_err(|reason| {
            StepError::permanent(format!(
                "build {}: artifactDir refused: {reason}",
                created.build_id
            ))
        })?;
        let pinned_by = self
            .pinned_by(created)
            .await
            .map_err(|e| StepError::transient(format!("reading the release: {e:#}")))?;
        Ok(StepContext {
            deploy_id: created.deploy_id,
            entity_id: created.entity_id,
            artifact_dir,
            production: created.target == Target::Production,
            live: created.release(pinned_by).is_some_and(|r| r.live),
        })
    }

    /// The rollback that pins the entity's production now (read under the
    /// entity's lease, so no other deploy of it completes meanwhile).
    pub(super) async fn pinned_by(
        &self,
        created: &DeployCreated,
    ) -> anyhow::Result<Option<DeployId>> {
        lookups::pinned_by(&self.db, &created.entity_id.to_string())
            .await?
            .map(|p| {
                p.parse()
                    .map_err(|e| anyhow::anyhow!("stored pin {p}: {e}"))
            })
            .transpose()
    }

    /// The deploy's manifest as `prepare` saved it, or scanned again when
    /// this worker cannot see that file.
    async fn manifest(&self, ctx: &StepContext) -> Result<Manifest, StepError> {
        if let Some(m) = load_manifest(&self.settings.data_dir, &ctx.deploy_id)
            .map_err(|e| StepError::transient(format!("{e:#}")))?
        {
            return Ok(m);
        }
        self.scan(ctx).await
    }

    /// The manifest of the deploy a rollback or promotion redeploys, saved
    /// as this deploy's, when this worker has it (`None`: scan instead).
    async fn reuse_source_manifest(
        &self,
        created: &DeployCreated,
        ctx: &StepContext,
    ) -> Result<Option<Manifest>, StepError> {
        let Some(source) = created.rollback_of.or(created.promoted_from) else {
            return Ok(None);
        };
        let data_dir = &self.settings.data_dir;
        let Some(manifest) =
            load_manifest(data_dir, &source).map_err(|e| StepError::transient(format!("{e:#}")))?
        else {
            return Ok(None);
        };
        save_manifest(data_dir, &ctx.deploy_id, &manifest)
            .map_err(|e| StepError::transient(format!("{e:#}")))?;
        Ok(Some(manifest))
    }

    /// Scans the build's files and saves the manifest.
    async fn scan(&self, ctx: &StepContext) -> Result<Manifest, StepError> {
        let dir = ctx.artifact_dir.clone();
        let manifest = tokio::task::spawn_blocking(move || Manifest::scan(&dir))
            .await
            .map_err(|e| StepError::transient(format!("scan task: {e}")))?
            .map_err(|e| StepError::permanent(format!("{e:#}")))?;
        save_manifest(&self.settings.data_dir, &ctx.deploy_id, &manifest)
            .map_err(|e| StepError::transient(format!("{e:#}")))?;
        Ok(manifest)
    }

    async fn execute(
        &self,
        created: &DeployCreated,
        step: StepName,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Value>, StepError> {
        let ctx = self.context(created).await?;
        match step {
            StepName::Prepare => {
                // A rollback or promotion reuses its source's manifest (the
                // same build, whose files are stored already); otherwise
                // always a fresh scan: a retried prepare sees the files as
                // they are now.
                let manifest = match self.reuse_source_manifest(created, &ctx).await? {
                    Some(manifest) => manifest,
                    None => self.scan(&ctx).await?,
                };
                let bytes: u64 = manifest.files.values().map(|f| f.size).sum();
                Ok(Some(
                    json!({ "files": manifest.files.len(), "bytes": bytes }),
                ))
            }
            StepName::Upload => {
                let manifest = self.manifest(&ctx).await?;
                self.target.upload(&ctx, &manifest, heartbeat).await?;
                Ok(None)
            }
            StepName::Promote => {
                let manifest = self.manifest(&ctx).await?;
                let urls = self.target.promote(&ctx, &manifest).await?;
                Ok(Some(json!({
                    "previewUrl": urls.preview_url,
                    "productionUrl": urls.production_url,
                })))
            }
        }
    }

    /// One step with its timeout and retries.
    pub(super) async fn run_step(
        &self,
        created: &DeployCreated,
        step: StepName,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Value>, StepError> {
        let started = std::time::Instant::now();
        let result = self.run_step_attempts(created, step, heartbeat).await;
        metrics::histogram!(
            "deployd_step_duration_seconds",
            "step" => step.as_str(),
            "outcome" => if result.is_ok() { "completed" } else { "failed" }
        )
        .record(started.elapsed().as_secs_f64());
        result
    }

    async fn run_step_attempts(
        &self,
        created: &DeployCreated,
        step: StepName,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Option<Value>, StepError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = tokio::time::timeout(
                self.settings.step_timeout,
                self.execute(created, step, heartbeat),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StepError::transient(format!(
                    "timed out after {} s",
                    self.settings.step_timeout.as_secs_f64()
                )))
            });
            match outcome {
                Err(e) if e.transient && attempt < self.settings.attempts => {
                    let pause = self.settings.retry_backoff * 2u32.pow(attempt - 1);
                    tracing::warn!(deploy = %created.deploy_id, step = step.as_str(), attempt, error = %e, "step failed; retrying");
                    heartbeat();
                    tokio::time::sleep(pause).await;
                }
                Err(e) if e.transient => {
                    return Err(StepError::permanent(format!(
                        "{} (gave up after {attempt} attempts)",
                        e.message
                    )))
                }
                other => return other,
            }
        }
    }
}
