//! Local hosting, the default target: deployd serves the files itself,
//! from the artifact store (`store.rs`), where `prepare` already put them.
//!
//! A deploy is served at `<public>/preview/<dep>/` once completed, and the
//! entity's latest completed production deploy at `<public>/live/<entity>/`.
//! Events record the paths alone (`domain::location`): the server builds
//! the URLs from its own `DEPLOYD_PUBLIC_URL` when it answers, so a worker
//! in another process needs no public URL.
//! Both are decided from the read model at request time, so production
//! switches the moment `DeployCompleted` is projected, atomically, and a
//! cancelled deploy is never served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::ids::DeployId;
use crate::domain::location;
use crate::hosting::store::ArtifactStore;
use crate::hosting::{DeployTarget, Manifest, StepContext, StepError, Urls};

/// Completed deploys' manifests kept in memory (a completed deploy's
/// manifest never changes), at most this many.
const CACHED_MANIFESTS: usize = 4096;

pub struct LocalHosting {
    store: Arc<ArtifactStore>,
    manifests: Mutex<HashMap<DeployId, Arc<Manifest>>>,
}

impl LocalHosting {
    pub fn new(store: Arc<ArtifactStore>) -> Self {
        Self {
            store,
            manifests: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &ArtifactStore {
        &self.store
    }

    /// The manifest of a *completed* deploy (the caller checked), cached.
    pub async fn completed_manifest(
        &self,
        deploy: &DeployId,
    ) -> anyhow::Result<Option<Arc<Manifest>>> {
        if let Some(found) = self.manifests.lock().expect("not poisoned").get(deploy) {
            return Ok(Some(found.clone()));
        }
        let Some(manifest) = self.store.load_deploy_manifest(deploy).await? else {
            return Ok(None);
        };
        let manifest = Arc::new(manifest);
        let mut cache = self.manifests.lock().expect("not poisoned");
        if cache.len() >= CACHED_MANIFESTS {
            cache.clear();
        }
        cache.insert(*deploy, manifest.clone());
        Ok(Some(manifest))
    }
}

#[async_trait::async_trait]
impl DeployTarget for LocalHosting {
    fn name(&self) -> &'static str {
        "local"
    }

    /// The files are in the store since `prepare`; this checks that every
    /// one is there.
    async fn upload(
        &self,
        _ctx: &StepContext,
        manifest: &Manifest,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<(), StepError> {
        let mut hashes: Vec<String> = manifest.files.values().map(|e| e.sha256.clone()).collect();
        hashes.sort();
        hashes.dedup();
        for chunk in hashes.chunks(1024) {
            let missing = self
                .store
                .missing(chunk.to_vec())
                .await
                .map_err(|e| StepError::transient(format!("{e:#}")))?;
            if let Some(sha256) = missing.first() {
                return Err(StepError::transient(format!(
                    "blob {sha256} is missing from the artifact store"
                )));
            }
            progress();
        }
        Ok(())
    }

    async fn promote(&self, ctx: &StepContext, _manifest: &Manifest) -> Result<Urls, StepError> {
        Ok(Urls {
            preview_url: Some(location::preview_path(&ctx.deploy_id)),
            production_url: ctx.production.then(|| location::live_path(&ctx.entity_id)),
        })
    }
}
