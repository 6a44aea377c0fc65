//! Running one step of a deploy against the target: what it works on,
//! the manifest `prepare` scanned, timeouts and retries of transient
//! failures.

use serde_json::{json, Value};

use super::Worker;
use crate::domain::deploy::DeployCreated;
use crate::domain::ids::DeployId;
use crate::domain::{StepName, Target};
use crate::hosting::{Manifest, StepContext, StepError};
use crate::read_model::lookups;

/// Files copied into the store at once by `prepare`.
const COPY_CONCURRENCY: usize = 8;

impl Worker {
    /// What a step of `created` works on.
    async fn context(&self, created: &DeployCreated) -> Result<StepContext, StepError> {
        let row = lookups::build_context(&self.db, &created.build_id.to_string())
            .await
            .map_err(|e| StepError::transient(format!("reading the build: {e}")))?;
        let (artifact_dir, _, _) = row.ok_or_else(|| {
            StepError::permanent(format!("build {} is not in the catalog", created.build_id))
        })?;
        // Checked again here: the document was checked when it was recorded,
        // but the roots, the links on the way or the log may have changed.
        // No directory: an uploaded build (its files are in the store).
        let artifact_dir = artifact_dir
            .map(|dir| {
                crate::hosting::artifacts::ArtifactRoots::new(
                    self.settings.artifact_roots.clone(),
                    self.settings.data_dir.clone(),
                )
                .check(std::path::Path::new(&dir))
                .map_err(|reason| {
                    StepError::permanent(format!(
                        "build {}: artifactDir refused: {reason}",
                        created.build_id
                    ))
                })
            })
            .transpose()?;
        let pinned_by = self
            .pinned_by(created)
            .await
            .map_err(|e| StepError::transient(format!("reading the release: {e:#}")))?;
        Ok(StepContext {
            deploy_id: created.deploy_id,
            entity_id: created.entity_id,
            build_id: created.build_id,
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

    /// The deploy's manifest as `prepare` kept it in the store, or prepared
    /// again when it is not there.
    async fn manifest(
        &self,
        created: &DeployCreated,
        ctx: &StepContext,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Manifest, StepError> {
        if let Some(m) = self
            .store
            .load_deploy_manifest(&ctx.deploy_id)
            .await
            .map_err(|e| StepError::transient(format!("{e:#}")))?
        {
            return Ok(m);
        }
        self.prepare(created, ctx, heartbeat).await
    }

    /// The deploy's files, in the store, and its manifest kept there:
    /// a rollback or promotion reuses its source's manifest (the same
    /// build, whose files are stored already); an uploaded build its own;
    /// a build from the catalog is scanned afresh (a retried prepare sees
    /// the files as they are now) and the files the store lacks are copied.
    async fn prepare(
        &self,
        created: &DeployCreated,
        ctx: &StepContext,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<Manifest, StepError> {
        let transient = |e: anyhow::Error| StepError::transient(format!("{e:#}"));
        let source = created.rollback_of.or(created.promoted_from);
        let reused = match source {
            Some(source) => self
                .store
                .load_deploy_manifest(&source)
                .await
                .map_err(transient)?,
            None => None,
        };
        let manifest = match (reused, &ctx.artifact_dir) {
            (Some(manifest), _) => manifest,
            (None, Some(dir)) => {
                let dir = dir.clone();
                let manifest = tokio::task::spawn_blocking({
                    let dir = dir.clone();
                    move || Manifest::scan(&dir)
                })
                .await
                .map_err(|e| StepError::transient(format!("scan task: {e}")))?
                .map_err(|e| StepError::permanent(format!("{e:#}")))?;
                heartbeat();
                self.copy_into_store(&dir, &manifest, heartbeat).await?;
                manifest
            }
            (None, None) => self
                .store
                .load_build_manifest(&ctx.build_id)
                .await
                .map_err(transient)?
                .ok_or_else(|| {
                    StepError::permanent(format!(
                        "build {} has no artifact directory and no uploaded files",
                        ctx.build_id
                    ))
                })?,
        };
        self.store
            .save_deploy_manifest(&ctx.deploy_id, &manifest)
            .await
            .map_err(transient)?;
        Ok(manifest)
    }

    /// Copies the files of `dir` the store lacks into it, several at once.
    async fn copy_into_store(
        &self,
        dir: &std::path::Path,
        manifest: &Manifest,
        heartbeat: &(dyn Fn() + Send + Sync),
    ) -> Result<(), StepError> {
        use futures::{StreamExt, TryStreamExt};
        let mut seen = std::collections::HashSet::new();
        let files: Vec<(String, String)> = manifest
            .files
            .iter()
            .filter(|(_, e)| seen.insert(e.sha256.clone()))
            .map(|(path, e)| (path.clone(), e.sha256.clone()))
            .collect();
        let (store, dir) = (self.store.clone(), dir.to_path_buf());
        let mut copied = 0usize;
        let mut stream = futures::stream::iter(files)
            .map(move |(path, sha256)| {
                let (store, dir) = (store.clone(), dir.clone());
                async move { store.put_artifact(&dir, &path, &sha256).await }
            })
            .buffer_unordered(COPY_CONCURRENCY);
        while stream.try_next().await?.is_some() {
            copied += 1;
            if copied.is_multiple_of(256) {
                heartbeat();
            }
        }
        Ok(())
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
                let manifest = self.prepare(created, &ctx, heartbeat).await?;
                let bytes: u64 = manifest.files.values().map(|f| f.size).sum();
                Ok(Some(
                    json!({ "files": manifest.files.len(), "bytes": bytes }),
                ))
            }
            StepName::Upload => {
                let manifest = self.manifest(created, &ctx, heartbeat).await?;
                self.target.upload(&ctx, &manifest, heartbeat).await?;
                Ok(None)
            }
            StepName::Promote => {
                let manifest = self.manifest(created, &ctx, heartbeat).await?;
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
