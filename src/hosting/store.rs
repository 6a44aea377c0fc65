//! The artifact store: every file of every build, once, by its SHA-256,
//! and the manifests that say which file is which path, behind the
//! `object_store` crate, so the same code runs on a directory or on any
//! S3-compatible service and no two machines need a shared disk.
//!
//! ```text
//! sha256/<hex>                  a file's bytes (content-addressed, immutable)
//! builds/<bld>/manifest.json    an uploaded build's files (written at finalize)
//! deploys/<dep>/manifest.json   a deploy's files (written by `prepare`)
//! tmp/<ulid>                    a blob being written, before its hash is checked
//! ```
//!
//! `DEPLOYD_ARTIFACT_STORE` chooses it: `file://PATH`, or
//! `s3://BUCKET[/PREFIX]` with the standard `AWS_*` variables; unset, the
//! directory `$DEPLOYD_DATA_DIR/blobs`. A blob becomes visible under its
//! name only after its bytes were hashed on the way in and matched the name
//! (written to `tmp/`, then renamed), so a reader never sees a partial or
//! wrong blob.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Manifest, StepError};
use crate::domain::ids::{BuildId, DeployId};

/// The environment variable operators set.
pub const ENV: &str = "DEPLOYD_ARTIFACT_STORE";

/// Heads sent at once when checking which blobs are there.
const CONCURRENT_HEADS: usize = 32;

/// Where builds' files and manifests are kept.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// For logs and errors: `file:///…` or `s3://bucket/prefix`.
    describe: String,
    /// The data directory, where deploys made before the store kept their
    /// manifests (`<data>/deploys/<dep>/manifest.json`).
    data_dir: PathBuf,
}

/// Why a verified write stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the bytes hash to {actual}, not {expected}")]
    Mismatch { expected: String, actual: String },
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading the bytes failed (the client went away, a file read failed).
    #[error("reading the bytes: {0}")]
    Source(String),
    #[error("{0:#}")]
    Store(anyhow::Error),
}

/// One blob (or part of one) being read.
pub struct Blob {
    /// The bytes, streamed.
    pub body: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    /// When the blob was stored (its content never changes after).
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// Whether `s` is a SHA-256 as the store names blobs: 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ArtifactStore {
    /// The store `spec` names (`file://PATH`, `s3://BUCKET[/PREFIX]`), or
    /// `<data_dir>/blobs` when `None`.
    pub fn open(spec: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        let spec = spec.map(str::trim).filter(|s| !s.is_empty());
        match spec {
            None => Self::directory(&data_dir.join("blobs"), data_dir),
            Some(spec) => {
                if let Some(path) = spec.strip_prefix("file://") {
                    anyhow::ensure!(
                        path.starts_with('/'),
                        "{ENV}={spec}: a file:// store needs an absolute path (file:///srv/blobs)"
                    );
                    Self::directory(Path::new(path), data_dir)
                } else if let Some(rest) = spec.strip_prefix("s3://") {
                    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                    anyhow::ensure!(!bucket.is_empty(), "{ENV}={spec}: no bucket named");
                    Self::s3(bucket, prefix.trim_matches('/'), data_dir)
                } else {
                    anyhow::bail!("{ENV}={spec}: expected file://PATH or s3://BUCKET[/PREFIX]")
                }
            }
        }
    }

    /// A directory of this machine.
    pub fn directory(root: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the artifact store {}", root.display()))?;
        move_legacy_blobs(root)?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(root)
            .with_context(|| format!("opening the artifact store {}", root.display()))?;
        Ok(Self {
            inner: Arc::new(local),
            describe: format!("file://{}", root.display()),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// An S3 bucket (any S3-compatible service), configured by the standard
    /// `AWS_*` variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …).
    pub fn s3(bucket: &str, prefix: &str, data_dir: &Path) -> anyhow::Result<Self> {
        // rustls on ring, the one TLS stack of the process (reqwest 0.12
        // uses it too); installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .with_context(|| format!("configuring the S3 store s3://{bucket}"))?;
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        Ok(Self {
            inner,
            describe: format!("s3://{bucket}/{prefix}"),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Where the store is, for people.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The `object_store` handle (for benchmarks and tools).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub fn blob_key(sha256: &str) -> Key {
        Key::from(format!("sha256/{sha256}"))
    }

    fn deploy_manifest_key(deploy: &DeployId) -> Key {
        Key::from(format!("deploys/{deploy}/manifest.json"))
    }

    fn build_manifest_key(build: &BuildId) -> Key {
        Key::from(format!("builds/{build}/manifest.json"))
    }

    /// Whether the blob is stored.
    pub async fn has(&self, sha256: &str) -> anyhow::Result<bool> {
        match self.inner.head(&Self::blob_key(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context(format!("checking blob {sha256}"))),
        }
    }

    /// Those of `hashes` the store does not hold, in the order given.
    pub async fn missing(&self, hashes: Vec<String>) -> anyhow::Result<Vec<String>> {
        let store = self.clone();
        let found: Vec<(String, bool)> = futures::stream::iter(hashes)
            .map(move |sha256| {
                let store = store.clone();
                async move {
                    let has = store.has(&sha256).await?;
                    Ok::<_, anyhow::Error>((sha256, has))
                }
            })
            .buffered(CONCURRENT_HEADS)
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .filter(|(_, has)| !*has)
            .map(|(sha256, _)| sha256)
            .collect())
    }

    /// Stores `bytes` as the blob `sha256`, hashing them on the way; the
    /// blob appears under its name only if they hash to it and are at most
    /// `limit` bytes. Returns the size. A blob already stored is read and
    /// checked all the same (so the caller proves it has the bytes) and
    /// not written again.
    pub async fn put_verified<S, E>(
        &self,
        sha256: &str,
        bytes: S,
        limit: u64,
    ) -> Result<u64, PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let exists = self.has(sha256).await.map_err(PutError::Store)?;
        let temp = Key::from(format!("tmp/{}", ulid::Ulid::generate()));
        let mut writer = (!exists)
            .then(|| object_store::buffered::BufWriter::new(self.inner.clone(), temp.clone()));
        let written = async {
            let mut hash = Sha256::new();
            let mut size = 0u64;
            let mut bytes = std::pin::pin!(bytes);
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk.map_err(|e| PutError::Source(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(PutError::TooLarge { limit });
                }
                hash.update(&chunk);
                if let Some(writer) = writer.as_mut() {
                    writer
                        .put(chunk)
                        .await
                        .map_err(|e| PutError::Store(e.into()))?;
                }
            }
            let actual = super::hex(&hash.finalize());
            if actual != sha256 {
                return Err(PutError::Mismatch {
                    expected: sha256.to_string(),
                    actual,
                });
            }
            if let Some(writer) = writer.as_mut() {
                writer
                    .shutdown()
                    .await
                    .map_err(|e| PutError::Store(e.into()))?;
            }
            Ok(size)
        }
        .await;
        match written {
            Ok(size) => {
                if writer.is_some() {
                    self.inner
                        .rename(&temp, &Self::blob_key(sha256))
                        .await
                        .map_err(|e| PutError::Store(e.into()))?;
                }
                Ok(size)
            }
            Err(error) => {
                if let Some(mut writer) = writer {
                    let _ = writer.abort().await;
                    let _ = self.inner.delete(&temp).await;
                }
                Err(error)
            }
        }
    }

    /// Copies the file `key` of the artifact directory `root` into the
    /// store as the blob `sha256`, unless the store has it; `true` when it
    /// was copied. The file is opened without following links out of
    /// `root` and must still hash to `sha256`.
    pub async fn put_artifact(
        &self,
        root: &Path,
        key: &str,
        sha256: &str,
    ) -> Result<bool, StepError> {
        if self
            .has(sha256)
            .await
            .map_err(|e| StepError::transient(format!("{e:#}")))?
        {
            return Ok(false);
        }
        let file = super::artifacts::open_artifact(root, key)
            .map_err(|e| StepError::permanent(format!("{e:#}")))?;
        let bytes = tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::from_std(file),
            256 * 1024,
        );
        match self.put_verified(sha256, bytes, u64::MAX).await {
            Ok(_) => Ok(true),
            Err(PutError::Mismatch { .. }) => Err(StepError::permanent(format!(
                "{} changed while it was being deployed",
                root.join(key).display()
            ))),
            Err(e @ PutError::Source(_)) => Err(StepError::permanent(format!(
                "{}: {e}",
                root.join(key).display()
            ))),
            Err(e) => Err(StepError::transient(e.to_string())),
        }
    }

    /// Reads the blob `sha256`, all of it or `range` (which the caller
    /// checked against its size). `None`: not stored.
    pub async fn get(
        &self,
        sha256: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> anyhow::Result<Option<Blob>> {
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let result = match self.inner.get_opts(&Self::blob_key(sha256), options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading blob {sha256}"))),
        };
        let last_modified = result.meta.last_modified;
        let range = result.range.clone();
        let body = match result.payload {
            // A file of this machine: read in large chunks by tokio rather
            // than the crate's 8 KiB ones.
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                tokio_util::io::ReaderStream::with_capacity(
                    file.take(range.end - range.start),
                    64 * 1024,
                )
                .boxed()
            }
            GetResultPayload::Stream(stream) => stream.map_err(std::io::Error::other).boxed(),
        };
        Ok(Some(Blob {
            body,
            last_modified,
        }))
    }

    /// A whole small blob (a `_redirects` file), refused above `limit` bytes.
    pub async fn read_small(&self, sha256: &str, limit: u64) -> anyhow::Result<Option<Bytes>> {
        let meta = match self.inner.head(&Self::blob_key(sha256)).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        anyhow::ensure!(meta.size <= limit, "blob {sha256} is over {limit} bytes");
        let result = self.inner.get(&Self::blob_key(sha256)).await?;
        Ok(Some(result.bytes().await?))
    }

    async fn put_json(&self, key: &Key, manifest: &Manifest) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(manifest)?;
        self.inner
            .put(key, bytes.into())
            .await
            .with_context(|| format!("writing {key} in {}", self.describe))?;
        Ok(())
    }

    async fn get_json(&self, key: &Key) -> anyhow::Result<Option<Manifest>> {
        match self.inner.get(key).await {
            Ok(result) => {
                let bytes = result.bytes().await?;
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("reading {key} in {}", self.describe)
                })?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {key}"))),
        }
    }

    /// Keeps a deploy's manifest (each write is whole: a reader sees the
    /// old one or the new one).
    pub async fn save_deploy_manifest(
        &self,
        deploy: &DeployId,
        manifest: &Manifest,
    ) -> anyhow::Result<()> {
        self.put_json(&Self::deploy_manifest_key(deploy), manifest)
            .await
    }

    /// A deploy's manifest: in the store, or where deploys made before the
    /// store kept it (`<data>/deploys/<dep>/manifest.json`).
    pub async fn load_deploy_manifest(
        &self,
        deploy: &DeployId,
    ) -> anyhow::Result<Option<Manifest>> {
        if let Some(found) = self.get_json(&Self::deploy_manifest_key(deploy)).await? {
            return Ok(Some(found));
        }
        let (data_dir, deploy) = (self.data_dir.clone(), *deploy);
        tokio::task::spawn_blocking(move || {
            super::manifests::load_legacy_manifest(&data_dir, &deploy)
        })
        .await?
    }

    /// Keeps an uploaded build's manifest.
    pub async fn save_build_manifest(
        &self,
        build: &BuildId,
        manifest: &Manifest,
    ) -> anyhow::Result<()> {
        self.put_json(&Self::build_manifest_key(build), manifest)
            .await
    }

    /// An uploaded build's manifest, if it was finalized.
    pub async fn load_build_manifest(&self, build: &BuildId) -> anyhow::Result<Option<Manifest>> {
        self.get_json(&Self::build_manifest_key(build)).await
    }
}

/// Blobs of the layout before the store (`<root>/<ab>/<hex>`, where `root`
/// was `<data>/blobs`) are moved to `sha256/<hex>` when the directory store
/// opens, so the deploys made then keep serving. A rename within one
/// directory: cheap, and safe to run by two processes at once.
fn move_legacy_blobs(root: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let shard = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !shard || !entry.path().is_dir() {
            continue;
        }
        let target = root.join("sha256");
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        for blob in std::fs::read_dir(entry.path())?.flatten() {
            let blob_name = blob.file_name();
            if blob_name.to_str().is_some_and(is_sha256) {
                match std::fs::rename(blob.path(), target.join(&blob_name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("moving {}", blob.path().display()))
                    }
                }
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        super::super::hex(&Sha256::digest(bytes))
    }

    fn chunks(bytes: &'static [u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::iter(bytes.chunks(3).map(|c| Ok(Bytes::from_static(c))))
    }

    #[tokio::test]
    async fn a_blob_is_stored_only_under_the_hash_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(None, dir.path()).unwrap();
        let good = sha(b"hello world");
        assert!(!store.has(&good).await.unwrap());
        let wrong = sha(b"something else");
        let refused = store
            .put_verified(&wrong, chunks(b"hello world"), 100)
            .await;
        assert!(
            matches!(refused, Err(PutError::Mismatch { .. })),
            "{refused:?}"
        );
        assert!(!store.has(&wrong).await.unwrap());
        let too_big = store.put_verified(&good, chunks(b"hello world"), 5).await;
        assert!(matches!(too_big, Err(PutError::TooLarge { limit: 5 })));
        assert!(!store.has(&good).await.unwrap());
        assert_eq!(
            store
                .put_verified(&good, chunks(b"hello world"), 100)
                .await
                .unwrap(),
            11
        );
        assert!(store.has(&good).await.unwrap());
        // Again: idempotent.
        assert_eq!(
            store
                .put_verified(&good, chunks(b"hello world"), 100)
                .await
                .unwrap(),
            11
        );
        let blob = store.get(&good, Some(6..11)).await.unwrap().unwrap();
        let read: Vec<Bytes> = blob.body.try_collect().await.unwrap();
        assert_eq!(read.concat(), b"world");
        assert_eq!(
            store
                .missing(vec![good.clone(), wrong.clone()])
                .await
                .unwrap(),
            vec![wrong]
        );
        // Nothing is left behind in tmp/.
        let tmp = dir.path().join("blobs/tmp");
        assert!(!tmp.exists() || std::fs::read_dir(&tmp).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn blobs_and_manifests_of_the_layout_before_the_store_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let hash = sha(b"old");
        let shard = dir.path().join("blobs").join(&hash[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(&hash), b"old").unwrap();
        let deploy: DeployId = "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap();
        let mut manifest = Manifest::default();
        manifest.files.insert(
            "index.html".into(),
            super::super::ManifestEntry {
                sha256: hash.clone(),
                size: 3,
                content_type: "text/html".into(),
            },
        );
        super::super::manifests::save_legacy_manifest(dir.path(), &deploy, &manifest).unwrap();
        let store = ArtifactStore::open(None, dir.path()).unwrap();
        assert!(store.has(&hash).await.unwrap());
        assert_eq!(
            store.load_deploy_manifest(&deploy).await.unwrap(),
            Some(manifest)
        );
    }

    #[test]
    fn store_specs_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ArtifactStore::open(Some("file://relative"), dir.path()).is_err());
        assert!(ArtifactStore::open(Some("ftp://x"), dir.path()).is_err());
        assert!(ArtifactStore::open(Some("s3://"), dir.path()).is_err());
        let path = dir.path().join("elsewhere");
        let spec = format!("file://{}", path.display());
        let store = ArtifactStore::open(Some(&spec), dir.path()).unwrap();
        assert!(path.is_dir());
        assert_eq!(store.describe(), spec);
    }
}
