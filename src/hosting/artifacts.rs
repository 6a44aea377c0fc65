//! Which directories a build may publish. A catalog document names its
//! build's `artifactDir`; deployd reads and publishes what is there, so the
//! directory must resolve (after symbolic links) inside one of the
//! operator's `DEPLOYD_ARTIFACT_ROOTS`, and never be, contain or lie inside
//! `DEPLOYD_DATA_DIR` (deployd's own database and files). Unset, no
//! directory is accepted. Checked when the catalog document is recorded and
//! again when a deploy reads the files; inside the directory, files are
//! opened without following symbolic links and must stay inside it.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;

/// The environment variable operators set.
pub const ENV: &str = "DEPLOYD_ARTIFACT_ROOTS";

/// The directories builds may be published from, and the data directory
/// they must stay clear of.
#[derive(Debug, Clone, Default)]
pub struct ArtifactRoots {
    roots: Vec<PathBuf>,
    data_dir: PathBuf,
}

impl ArtifactRoots {
    pub fn new(roots: Vec<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            roots,
            data_dir: data_dir.into(),
        }
    }

    /// The roots of a `:`-separated list (empty entries are ignored).
    pub fn parse_list(value: &str) -> Vec<PathBuf> {
        value
            .split(':')
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .collect()
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Where `dir` really is, when a build may publish it; otherwise why
    /// not, for a person. The directory need not exist yet (a catalog
    /// document may arrive before its files); what exists of it is resolved.
    pub fn check(&self, dir: &Path) -> Result<PathBuf, String> {
        if !dir.is_absolute() {
            return Err(format!("{} is not an absolute path", dir.display()));
        }
        if self.roots.is_empty() {
            return Err(format!(
                "no artifact directory is allowed: set {ENV} to the directories builds are \
                 written under (`:`-separated, e.g. {ENV}=/srv/builds) for serve, worker and \
                 catalog import"
            ));
        }
        let resolved = resolve(dir)?;
        let data_dir = resolve(&absolute(&self.data_dir)?)?;
        if resolved.starts_with(&data_dir) || data_dir.starts_with(&resolved) {
            return Err(format!(
                "{} is, contains or lies inside deployd's data directory {} (DEPLOYD_DATA_DIR); \
                 deployd never publishes its own files",
                dir.display(),
                data_dir.display()
            ));
        }
        for root in &self.roots {
            let Ok(root) = absolute(root).and_then(|r| resolve(&r)) else {
                continue;
            };
            if resolved.starts_with(&root) {
                return Ok(resolved);
            }
        }
        let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        Err(format!(
            "{} (resolved: {}) is outside {ENV} ({})",
            dir.display(),
            resolved.display(),
            roots.join(":")
        ))
    }
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `path` with every symbolic link of its existing part resolved, and the
/// rest appended as written (which may not step up with `..`).
fn resolve(path: &Path) -> Result<PathBuf, String> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(canonical) => {
                let mut resolved = canonical;
                for part in rest.iter().rev() {
                    resolved.push(part);
                }
                return Ok(resolved);
            }
            Err(_) => {
                let name = match existing.components().next_back() {
                    Some(Component::Normal(name)) => name.to_os_string(),
                    Some(Component::CurDir) => std::ffi::OsString::new(),
                    _ => {
                        return Err(format!(
                            "{} cannot be resolved (no `..` in artifact paths)",
                            path.display()
                        ))
                    }
                };
                if !name.is_empty() {
                    rest.push(name);
                }
                if !existing.pop() {
                    return Err(format!("{} cannot be resolved", path.display()));
                }
            }
        }
    }
}

/// Opens the file `relative` (a manifest key) of the artifact directory
/// `root` (as [`ArtifactRoots::check`] resolved it) for reading,
/// without following a symbolic link, and only if the file opened is a
/// regular file inside `root`.
pub fn open_artifact(root: &Path, relative: &str) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(relative);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| {
            format!(
                "opening {} (symbolic links are not followed)",
                path.display()
            )
        })?;
    anyhow::ensure!(
        file.metadata()?.is_file(),
        "{} is not a regular file",
        path.display()
    );
    // Where the opened file really is (a directory on the way may have been
    // a symbolic link).
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))
    .or_else(|_| path.canonicalize())
    .with_context(|| format!("resolving {}", path.display()))?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    anyhow::ensure!(
        real.starts_with(&root),
        "{} leads outside the artifact directory (to {})",
        path.display(),
        real.display()
    );
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, ArtifactRoots) {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("builds");
        let data = base.path().join("data");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let roots = ArtifactRoots::new(vec![root], data);
        (base, roots)
    }

    #[test]
    fn a_directory_inside_a_root_is_accepted_existing_or_not() {
        let (base, roots) = setup();
        let a = base.path().join("builds/a");
        assert_eq!(roots.check(&a).unwrap(), a.canonicalize().unwrap());
        assert!(roots.check(&base.path().join("builds/later/x")).is_ok());
    }

    #[test]
    fn anything_outside_the_roots_or_near_the_data_dir_is_refused() {
        let (base, roots) = setup();
        for refused in ["/etc", "/tmp", "/", "relative"] {
            assert!(roots.check(Path::new(refused)).is_err(), "{refused}");
        }
        assert!(roots.check(&base.path().join("builds/../data")).is_err());
        assert!(roots.check(&base.path().join("data")).is_err());
        assert!(roots.check(&base.path().join("data/x")).is_err());
        // A link inside the root to outside it is resolved, and refused.
        std::os::unix::fs::symlink("/etc", base.path().join("builds/etc")).unwrap();
        assert!(roots.check(&base.path().join("builds/etc")).is_err());
        std::os::unix::fs::symlink(base.path().join("data"), base.path().join("builds/d")).unwrap();
        assert!(roots.check(&base.path().join("builds/d/sub")).is_err());
        // A root around the data directory: the data directory stays refused.
        let wide = ArtifactRoots::new(vec![base.path().to_path_buf()], base.path().join("data"));
        assert!(wide.check(&base.path().join("data")).is_err());
        assert!(wide.check(base.path()).is_err(), "contains the data dir");
        assert!(wide.check(&base.path().join("builds/a")).is_ok());
        // No roots: nothing, with how to set them.
        let none = ArtifactRoots::new(vec![], base.path().join("data"));
        let message = none.check(&base.path().join("builds/a")).unwrap_err();
        assert!(message.contains(ENV), "{message}");
    }

    #[test]
    fn files_are_opened_without_following_links_out_of_the_artifact() {
        let (base, _) = setup();
        let a = base.path().join("builds/a").canonicalize().unwrap();
        std::fs::write(a.join("index.html"), "hi").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", a.join("leak")).unwrap();
        std::os::unix::fs::symlink("/etc", a.join("dir")).unwrap();
        assert!(open_artifact(&a, "index.html").is_ok());
        assert!(open_artifact(&a, "leak").is_err());
        assert!(open_artifact(&a, "dir/hostname").is_err());
    }
}
