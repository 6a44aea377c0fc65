//! Hosting targets: where a deploy's files go and how they go live.
//!
//! A deploy runs three steps (`domain::deploy::STEPS`), each a call on the
//! installation's [`DeployTarget`]:
//!
//! 1. `prepare`: scan the build's `artifactDir` into a [`Manifest`] (path →
//!    SHA-256, size, content type), copy the files the artifact store
//!    (`store.rs`) lacks into it, and keep the manifest there; an uploaded
//!    build's files and manifest are in the store already.
//! 2. `upload`: make every file of the manifest available on the target
//!    (a file the target already has is not sent again).
//! 3. `promote`: make the deploy servable. What is *live* is decided by the
//!    event log, not by this step: a deploy is served only once
//!    `DeployCompleted` is recorded, and a cancelled deploy never is, so a
//!    step that finishes after a cancel changes nothing anyone can see.
//!
//! Every step is idempotent: a worker that died mid-step is replaced by one
//! that runs the same step again.

pub mod artifacts;
pub mod cloudflare;
pub mod local;
pub mod manifests;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::{BuildId, DeployId, EntityId};

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
    /// The build asks for the single-page-app fallback: its `_redirects`
    /// (the Netlify and Cloudflare Pages file) holds `/* /index.html 200`,
    /// so a path that names no file is answered with `index.html`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spa_fallback: bool,
}

/// How a request path of a deploy is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'m> {
    /// The file served.
    pub key: &'m str,
    pub entry: &'m ManifestEntry,
    /// 200, or 404 when the file is the build's own `404.html`.
    pub found: bool,
}

/// Files of a build that configure its hosting and are never served.
const CONFIG_FILES: &[&str] = &["_redirects", "_headers"];

/// Whether a `_redirects` file holds the single-page-app rule,
/// `/* /index.html 200` (Netlify's and Cloudflare Pages' spelling).
pub fn spa_rule(redirects: &str) -> bool {
    redirects.lines().any(|line| {
        let rule = line.split('#').next().unwrap_or("");
        matches!(
            rule.split_whitespace().collect::<Vec<_>>().as_slice(),
            ["/*", "/index.html", "200" | "200!"]
        )
    })
}

/// Whether a file's name carries a hash of its content, as bundlers name
/// assets (`app.3f9a1c7e.js`, `index-D8f3kL2q.css`): the stem's last `.`-
/// or `-`-separated part is 8 or more letters and digits with at least one
/// of each. Such a file never changes under its name, so it may be cached
/// for good.
pub fn content_hashed(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(part) = stem.rsplit(['.', '-']).next() else {
        return false;
    };
    part.len() >= 8
        && part.len() < stem.len()
        && part.chars().all(|c| c.is_ascii_alphanumeric())
        && part.chars().any(|c| c.is_ascii_digit())
        && part.chars().any(|c| c.is_ascii_alphabetic())
}

impl Manifest {
    /// Scans a directory (as `artifacts::ArtifactRoots` resolved it).
    /// Symbolic links are skipped and files are opened without following
    /// one: a build cannot point the deploy at files outside its own
    /// directory.
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
            let (sha256, size) = hash_reader(artifacts::open_artifact(dir, &key)?, entry.path())?;
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
        let spa_fallback = match std::fs::read_to_string(dir.join("_redirects")) {
            Ok(text) => spa_rule(&text),
            Err(_) => false,
        };
        Ok(Manifest {
            files,
            spa_fallback,
        })
    }

    /// How a request path is answered: the file it names (or its
    /// directory's `index.html`); else, with the SPA fallback, the root
    /// `index.html`; else the nearest `404.html` up the path (Cloudflare
    /// Pages' rule; Netlify's root one is the last tried) with status 404.
    /// `_redirects` and `_headers` are never served. `None`: a plain 404.
    pub fn route(&self, request_path: &str) -> Option<Route<'_>> {
        let path = normalize_request_path(request_path)?;
        let direct = self
            .resolve(&path)
            .filter(|(key, _)| !CONFIG_FILES.contains(key));
        if let Some((key, entry)) = direct {
            return Some(Route {
                key,
                entry,
                found: true,
            });
        }
        if self.spa_fallback {
            if let Some((key, entry)) = self.files.get_key_value("index.html") {
                return Some(Route {
                    key,
                    entry,
                    found: true,
                });
            }
        }
        let mut dir = path.trim_end_matches('/');
        loop {
            dir = match dir.rsplit_once('/') {
                Some((parent, _)) => parent,
                None => "",
            };
            let candidate = if dir.is_empty() {
                "404.html".to_string()
            } else {
                format!("{dir}/404.html")
            };
            if let Some((key, entry)) = self.files.get_key_value(&candidate) {
                return Some(Route {
                    key,
                    entry,
                    found: false,
                });
            }
            if dir.is_empty() {
                return None;
            }
        }
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
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    hash_reader(file, path)
}

/// Hex SHA-256 and size of an open file (`path` names it in errors).
pub fn hash_reader(mut file: std::fs::File, path: &Path) -> anyhow::Result<(String, u64)> {
    use std::io::Read;
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
    pub build_id: BuildId,
    /// The build's directory (checked against the artifact roots), for a
    /// build from the catalog; `None` for an uploaded build, whose files
    /// are in the artifact store already.
    pub artifact_dir: Option<PathBuf>,
    /// Whether this is a production deploy (its URLs include the entity's
    /// production URL).
    pub production: bool,
    /// Whether it becomes the entity's live deploy when it completes: a
    /// production deploy while production is not pinned by a rollback
    /// (`Deploy::release`). A target must not change what the production
    /// URL serves for a deploy that does not.
    pub live: bool,
}

/// Where a completed deploy is served: a path under the server's public
/// URL for deployd's own serving, an absolute URL for another host
/// (`domain::location`).
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

    fn site(files: &[(&str, &str)]) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        Manifest::scan(dir.path()).unwrap()
    }

    #[test]
    fn a_missing_path_gets_the_nearest_404_html_with_status_404() {
        let m = site(&[
            ("index.html", "home"),
            ("404.html", "root 404"),
            ("docs/404.html", "docs 404"),
            ("docs/a.html", "a"),
        ]);
        let route = m.route("/docs/deep/missing").unwrap();
        assert_eq!((route.key, route.found), ("docs/404.html", false));
        let route = m.route("/missing/").unwrap();
        assert_eq!((route.key, route.found), ("404.html", false));
        let route = m.route("/docs/a.html").unwrap();
        assert_eq!((route.key, route.found), ("docs/a.html", true));
        // No 404.html: a plain 404.
        assert!(site(&[("index.html", "home")]).route("/x").is_none());
        // A path that cannot be a file is never routed.
        assert!(m.route("/../etc/passwd").is_none());
    }

    #[test]
    fn the_spa_rule_of_redirects_serves_index_html_for_unknown_paths() {
        let m = site(&[
            ("index.html", "app"),
            ("app.js", "js"),
            ("404.html", "nope"),
            ("_redirects", "# SPA\n/*    /index.html   200\n"),
        ]);
        assert!(m.spa_fallback);
        let route = m.route("/settings/profile").unwrap();
        assert_eq!((route.key, route.found), ("index.html", true));
        assert_eq!(m.route("/app.js").unwrap().key, "app.js");
        // The configuration file itself is not served.
        assert_eq!(m.route("/_redirects").unwrap().key, "index.html");
        let plain = site(&[("index.html", "x"), ("_redirects", "/old /new 301\n")]);
        assert!(!plain.spa_fallback);
        assert!(plain.route("/_redirects").is_none());
        assert!(!spa_rule("/* /index.html 404"));
        assert!(spa_rule("/*  /index.html  200!  # forced"));
    }

    #[test]
    fn content_hashed_names_are_told_from_plain_ones() {
        for hashed in [
            "assets/site.3f9a1c7e.css",
            "index-D8f3kL2q.js",
            "_app/immutable/chunks/entry.a1b2c3d4e5.js",
            "main.0123456789abcdef.js",
        ] {
            assert!(content_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "bootstrap.min.css",
            "jquery-3.7.1.js",
            "report-20240101.pdf",
            "a1b2c3d4e5.js",
            "README",
            "favicon.ico",
        ] {
            assert!(!content_hashed(plain), "{plain}");
        }
    }
}
