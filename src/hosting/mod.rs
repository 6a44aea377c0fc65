//! Hosting targets: where a deploy's files go and how they go live.
//!
//! A deploy runs three steps (`domain::deploy::STEPS`), each a call on the
//! installation's [`DeployTarget`]:
//!
//! 1. `prepare`: scan the build's `artifactDir` into a [`Manifest`] (path →
//!    SHA-256, size, content type) and keep it under the data directory.
//! 2. `upload`: make every file of the manifest available on the target
//!    (a file the target already has is not sent again).
//! 3. `promote`: make the deploy servable. What is *live* is decided by the
//!    event log, not by this step: a deploy is served only once
//!    `DeployCompleted` is recorded, and a cancelled deploy never is, so a
//!    step that finishes after a cancel changes nothing anyone can see.
//!
//! Every step is idempotent: a worker that died mid-step is replaced by one
//! that runs the same step again.

pub mod cloudflare;
pub mod local;
pub mod manifests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::{DeployId, EntityId};

/// One file of a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
}

/// Every file of a deploy by its path (`/`-separated, relative, no `.` or
/// `..` segments).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Scans a directory. Symbolic links are skipped: a build cannot point
    /// the deploy at files outside its own directory.
    pub fn scan(dir: &Path) -> anyhow::Result<Manifest> {
        anyhow::ensure!(
            dir.is_dir(),
            "artifact directory {} does not exist",
            dir.display()
        );
        let mut files = BTreeMap::new();
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(dir)
                .context("a file outside the artifact directory")?;
            let Some(key) = manifest_key(relative) else {
                continue;
            };
            let (sha256, size) = hash_file(entry.path())?;
            let content_type = mime_guess::from_path(entry.path())
                .first_or_octet_stream()
                .essence_str()
                .to_string();
            files.insert(
                key,
                ManifestEntry {
                    sha256,
                    size,
                    content_type,
                },
            );
        }
        Ok(Manifest { files })
    }

    /// The entry a request path names: the file itself, or `index.html`
    /// of a directory.
    pub fn resolve(&self, request_path: &str) -> Option<(&str, &ManifestEntry)> {
        let path = normalize_request_path(request_path)?;
        let candidates = if path.is_empty() {
            vec!["index.html".to_string()]
        } else if path.ends_with('/') {
            vec![format!("{path}index.html")]
        } else {
            vec![path.clone(), format!("{path}/index.html")]
        };
        candidates
            .into_iter()
            .find_map(|c| self.files.get_key_value(&c))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// A relative path as a manifest key, or `None` if it is not plain UTF-8
/// made of normal segments.
fn manifest_key(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(part.to_str()?.to_string()),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A request path, trimmed of its leading `/`; `None` for any `.` or `..`
/// segment, a backslash or a NUL (no path can escape a deploy).
pub fn normalize_request_path(path: &str) -> Option<String> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.contains('\\') || trimmed.contains('\0') {
        return None;
    }
    if trimmed
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return None;
    }
    if trimmed.contains("//") {
        return None;
    }
    Some(trimmed.to_string())
}

/// Hex SHA-256 and size of a file, streamed.
pub fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hash.update(&buffer[..n]);
    }
    Ok((hex(&hash.finalize()), size))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a step works on.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub deploy_id: DeployId,
    pub entity_id: EntityId,
    pub artifact_dir: PathBuf,
    /// Whether this deploy becomes the entity's production deploy when it
    /// completes (its build is of the entity's default version).
    pub production: bool,
}

/// The URLs a completed deploy is served at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    pub preview_url: Option<String>,
    pub production_url: Option<String>,
}

/// How a step failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// Worth retrying (a network blip, a 5xx); otherwise the deploy fails.
    pub transient: bool,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }
}

/// Where deploys go. Implementations: [`local::LocalHosting`] (the
/// default: deployd stores and serves the files) and
/// [`cloudflare::CloudflarePages`] (Direct Upload).
#[async_trait::async_trait]
pub trait DeployTarget: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Uploads every file of the manifest the target does not have yet.
    async fn upload(
        &self,
        ctx: &StepContext,
        manifest: &Manifest,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<(), StepError>;

    /// Makes the uploaded deploy servable; returns its URLs.
    async fn promote(&self, ctx: &StepContext, manifest: &Manifest) -> Result<Urls, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_cannot_escape() {
        assert_eq!(
            normalize_request_path("/a/b.css").as_deref(),
            Some("a/b.css")
        );
        assert_eq!(normalize_request_path("/").as_deref(), Some(""));
        assert!(normalize_request_path("/../etc/passwd").is_none());
        assert!(normalize_request_path("/a/./b").is_none());
        assert!(normalize_request_path("/a\\..\\b").is_none());
        assert!(normalize_request_path("/a//b").is_none());
    }

    #[test]
    fn a_manifest_resolves_files_and_directory_indexes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(dir.path().join("docs/index.html"), "docs").unwrap();
        std::fs::write(dir.path().join("app.js"), "1").unwrap();
        let manifest = Manifest::scan(dir.path()).unwrap();
        assert_eq!(manifest.files.len(), 3);
        assert_eq!(manifest.resolve("/").unwrap().0, "index.html");
        assert_eq!(manifest.resolve("/docs").unwrap().0, "docs/index.html");
        assert_eq!(manifest.resolve("/docs/").unwrap().0, "docs/index.html");
        assert_eq!(
            manifest.resolve("/app.js").unwrap().1.content_type,
            "text/javascript"
        );
        assert_eq!(manifest.resolve("/app.js").unwrap().1.size, 1);
        assert!(manifest.resolve("/missing.css").is_none());
    }
}
