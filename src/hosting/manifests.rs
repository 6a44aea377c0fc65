//! Where deploys made before the artifact store kept their manifests, so
//! that those deploys keep serving (and can be rolled back to):
//!
//! ```text
//! <data>/deploys/<dep>/manifest.json
//! ```
//!
//! New manifests are kept in the store (`store.rs`); this is read when the
//! store has none for a deploy.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::domain::ids::DeployId;
use crate::hosting::Manifest;

/// Where a deploy's manifest was kept.
pub fn legacy_manifest_path(data_dir: &Path, deploy: &DeployId) -> PathBuf {
    data_dir
        .join("deploys")
        .join(deploy.to_string())
        .join("manifest.json")
}

/// Writes a manifest where deploys kept it before the store (for tests of
/// the upgrade path).
pub fn save_legacy_manifest(
    data_dir: &Path,
    deploy: &DeployId,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let path = legacy_manifest_path(data_dir, deploy);
    let dir = path.parent().expect("manifest paths have a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, serde_json::to_vec(manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a deploy's manifest from the data directory, if it was kept there.
pub fn load_legacy_manifest(
    data_dir: &Path,
    deploy: &DeployId,
) -> anyhow::Result<Option<Manifest>> {
    let path = legacy_manifest_path(data_dir, deploy);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
