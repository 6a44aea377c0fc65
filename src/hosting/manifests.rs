//! The manifest of each deploy, kept in the data directory once `prepare`
//! scanned the build, so that later steps (on any target) and the local
//! sites read the same list of files:
//!
//! ```text
//! <data>/deploys/<dep>/manifest.json
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::domain::ids::DeployId;
use crate::hosting::Manifest;

/// Where a deploy's manifest is kept.
pub fn manifest_path(data_dir: &Path, deploy: &DeployId) -> PathBuf {
    data_dir
        .join("deploys")
        .join(deploy.to_string())
        .join("manifest.json")
}

/// Writes a deploy's manifest (atomically: temp file, then rename).
pub fn save_manifest(
    data_dir: &Path,
    deploy: &DeployId,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let path = manifest_path(data_dir, deploy);
    let dir = path.parent().expect("manifest paths have a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp = dir.join(format!(".manifest.{}", ulid::Ulid::generate()));
    std::fs::write(&temp, serde_json::to_vec(manifest)?)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a deploy's manifest, if it was saved.
pub fn load_manifest(data_dir: &Path, deploy: &DeployId) -> anyhow::Result<Option<Manifest>> {
    let path = manifest_path(data_dir, deploy);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
