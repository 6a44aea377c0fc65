//! Local hosting, the default target: files go into a content-addressed
//! store under the data directory and deployd serves them itself.
//!
//! ```text
//! <data>/blobs/ab/abcdef…      one file per distinct content (SHA-256)
//! <data>/deploys/<dep>/manifest.json   (hosting::manifests)
//! ```
//!
//! A deploy is served at `<public>/preview/<dep>/` once completed, and the
//! entity's latest completed production deploy at `<public>/live/<entity>/`.
//! Both are decided from the read model at request time, so production
//! switches the moment `DeployCompleted` is projected, atomically, and a
//! cancelled deploy is never served.

use std::path::{Path, PathBuf};

use crate::hosting::manifests::save_manifest;

use crate::domain::ids::{DeployId, EntityId};
use crate::hosting::{DeployTarget, Manifest, StepContext, StepError, Urls};

pub struct LocalHosting {
    data_dir: PathBuf,
    public_url: String,
}

impl LocalHosting {
    pub fn new(data_dir: impl Into<PathBuf>, public_url: &str) -> Self {
        Self {
            data_dir: data_dir.into(),
            public_url: public_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        let shard = sha256.get(..2).unwrap_or("00");
        self.data_dir.join("blobs").join(shard).join(sha256)
    }

    pub fn preview_url(&self, deploy: &DeployId) -> String {
        format!("{}/preview/{deploy}/", self.public_url)
    }

    pub fn production_url(&self, entity: &EntityId) -> String {
        format!("{}/live/{entity}/", self.public_url)
    }

    /// Copies one file into the store unless its content is there already.
    /// The copy is hashed on the way and renamed into place, so a blob is
    /// never partial and always has the content its name says.
    /// Stores the file `key` of the artifact directory `root` as the blob
    /// `sha256` (opened without following links out of `root`).
    fn store(&self, root: &Path, key: &str, sha256: &str) -> Result<bool, StepError> {
        let source = root.join(key);
        let target = self.blob_path(sha256);
        if target.exists() {
            return Ok(false);
        }
        let dir = target.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| StepError::transient(format!("creating {}: {e}", dir.display())))?;
        let temp = dir.join(format!(".{sha256}.{}", ulid::Ulid::generate()));
        let mut from = super::artifacts::open_artifact(root, key)
            .map_err(|e| StepError::permanent(format!("{e:#}")))?;
        let copied =
            std::fs::File::create(&temp).and_then(|mut to| std::io::copy(&mut from, &mut to));
        copied.map_err(|e| StepError::transient(format!("copying {}: {e}", source.display())))?;
        let (copied, _) =
            super::hash_file(&temp).map_err(|e| StepError::transient(format!("{e:#}")))?;
        if copied != sha256 {
            let _ = std::fs::remove_file(&temp);
            return Err(StepError::permanent(format!(
                "{} changed while it was being deployed",
                source.display()
            )));
        }
        std::fs::rename(&temp, &target)
            .map_err(|e| StepError::transient(format!("storing {}: {e}", target.display())))?;
        Ok(true)
    }
}

/// How many files are stored between progress reports.
const CHUNK: usize = 256;

#[async_trait::async_trait]
impl DeployTarget for LocalHosting {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn upload(
        &self,
        ctx: &StepContext,
        manifest: &Manifest,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<(), StepError> {
        let files: Vec<(String, String)> = manifest
            .files
            .iter()
            .map(|(path, entry)| (path.clone(), entry.sha256.clone()))
            .collect();
        for chunk in files.chunks(CHUNK) {
            let chunk = chunk.to_vec();
            let root = ctx.artifact_dir.clone();
            let store = LocalHosting::new(self.data_dir.clone(), &self.public_url);
            tokio::task::spawn_blocking(move || {
                for (path, sha256) in chunk {
                    store.store(&root, &path, &sha256)?;
                }
                Ok::<_, StepError>(())
            })
            .await
            .map_err(|e| StepError::transient(format!("upload task: {e}")))??;
            progress();
        }
        Ok(())
    }

    async fn promote(&self, ctx: &StepContext, manifest: &Manifest) -> Result<Urls, StepError> {
        let missing = manifest
            .files
            .values()
            .find(|entry| !self.blob_path(&entry.sha256).exists());
        if let Some(entry) = missing {
            return Err(StepError::transient(format!(
                "blob {} is missing from the store",
                entry.sha256
            )));
        }
        save_manifest(&self.data_dir, &ctx.deploy_id, manifest)
            .map_err(|e| StepError::transient(format!("{e:#}")))?;
        Ok(Urls {
            preview_url: Some(self.preview_url(&ctx.deploy_id)),
            production_url: ctx.production.then(|| self.production_url(&ctx.entity_id)),
        })
    }
}
