//! Cloudflare Pages Direct Upload: the flow `wrangler pages deploy` runs
//! (cloudflare/workers-sdk, `packages/wrangler/src/pages/upload.ts` and
//! `packages/wrangler/src/api/pages/deploy.ts`), against the v4 API.
//!
//! Every entity has its own Pages project, named from its id
//! ([`project_name`]: `app_01JD…` → `deployd-app-01jd…`), created on first
//! use with `production_branch: "main"`.
//!
//! `upload`:
//! 1. `GET  /accounts/{account}/pages/projects/{project}` (404, code
//!    8000007 → `POST /accounts/{account}/pages/projects`
//!    `{name, production_branch}`), with the API token;
//! 2. `GET  /accounts/{account}/pages/projects/{project}/upload-token` →
//!    `result.jwt`, a short-lived token for the asset endpoints;
//! 3. `POST /pages/assets/check-missing {hashes}` → the hashes Cloudflare
//!    does not have;
//! 4. `POST /pages/assets/upload` for those only, in buckets (≤ 40 MiB,
//!    ≤ 2,000 files, three at a time, like wrangler), each a JSON array of
//!    `{key, value: base64, metadata: {contentType}, base64: true}`;
//! 5. `POST /pages/assets/upsert-hashes {hashes}` with every hash.
//!
//! A 401 from an asset endpoint means the JWT expired: a new one is fetched
//! and the request sent once more.
//!
//! The files are read from the artifact store (`store.rs`), where `prepare`
//! put them, so a worker on any machine can publish any build.
//!
//! `promote`: `POST /accounts/{account}/pages/projects/{project}/deployments`
//! (multipart: `manifest` = `{"/path": hash}`, `branch`, `commit_message`),
//! unless the project already has a deployment made for this deploy (see
//! [`CloudflarePages::promote`]).
//!
//! Errors: a network error, a timeout, 429 and 5xx are transient (the worker
//! retries the step); any other 4xx is permanent, with Cloudflare's
//! `errors[].message` in the text.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::store::ArtifactStore;
use super::{DeployTarget, Manifest, StepContext, StepError, Urls};
use crate::domain::ids::{DeployId, EntityId};

/// Where and as whom to upload.
#[derive(Debug, Clone)]
pub struct CloudflareSettings {
    /// `https://api.cloudflare.com/client/v4` (no trailing slash needed).
    pub api_base: String,
    pub account_id: String,
    pub api_token: String,
}

/// Files per upload request, bytes per upload request, requests at once:
/// wrangler's `MAX_BUCKET_FILE_COUNT`, `MAX_BUCKET_SIZE` and
/// `BULK_UPLOAD_CONCURRENCY` (`packages/wrangler/src/pages/constants.ts`).
const MAX_BUCKET_FILE_COUNT: usize = 2_000;
const MAX_BUCKET_SIZE: u64 = 40 * 1024 * 1024;
const BULK_UPLOAD_CONCURRENCY: usize = 3;
/// Pages refuses larger files and more files (`MAX_ASSET_SIZE`,
/// `MAX_ASSET_COUNT` in the same file).
const MAX_ASSET_SIZE: u64 = 25 * 1024 * 1024;
const MAX_ASSET_COUNT: usize = 20_000;
/// The production branch of the projects deployd creates.
const PRODUCTION_BRANCH: &str = "main";
/// Cloudflare's error code for "project not found".
const PROJECT_NOT_FOUND: i64 = 8_000_007;
/// How many recent deployments `promote` looks through for its own.
const RECENT_DEPLOYMENTS: usize = 25;

/// Timeouts of one request: API calls, and bucket uploads (up to 40 MiB).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const API_TIMEOUT: Duration = Duration::from_secs(30);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The Pages project of an entity: lowercase letters, digits and dashes,
/// at most 58 characters, the same for the same entity every time.
pub fn project_name(entity: &EntityId) -> String {
    let name: String = format!("deployd-{entity}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    name.chars().take(58).collect()
}

/// The branch of a preview deploy: the deploy id, lowercased (`dep-01jd…`).
/// It also tags the deployment, so a retried promote can find it.
pub fn preview_branch(deploy: &DeployId) -> String {
    deploy.to_string().to_ascii_lowercase().replace('_', "-")
}

/// The commit message deployd gives a deployment: it names the deploy, on
/// every branch, production included.
fn commit_message(deploy: &DeployId) -> String {
    format!("deployd {deploy}")
}

/// The extension Pages hashes with a file: Node's `path.extname` without
/// its dot (`"a/b.min.js"` → `"js"`, `"LICENSE"` and `".env"` → `""`).
pub fn extension(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rfind('.') {
        Some(dot) if !name[..dot].chars().all(|c| c == '.') => &name[dot + 1..],
        _ => "",
    }
}

/// The hash Pages knows a file by, computed as wrangler does
/// (`hashFile` in cloudflare/workers-sdk
/// `packages/deploy-helpers/src/deploy/helpers/hash.ts`, before that
/// `packages/wrangler/src/pages/hash.ts`): BLAKE3 of the base64 of the
/// content followed by the extension, in hex, first 32 characters.
pub fn asset_hash(path: &str, content: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(
        base64::engine::general_purpose::STANDARD
            .encode(content)
            .as_bytes(),
    );
    hasher.update(extension(path).as_bytes());
    hasher.finalize().to_hex()[..32].to_string()
}

/// A file of the deploy as Pages sees it.
#[derive(Debug, Clone)]
struct Asset {
    /// The manifest key (`css/app.css`).
    path: String,
    hash: String,
    size: u64,
    content_type: String,
}

/// Files wrangler leaves out of the assets: the top-level configuration
/// files (`_headers` and `_redirects` go with the deployment instead),
/// Functions, and junk anywhere (`validate.ts`'s `IGNORE_LIST`).
fn is_asset(path: &str) -> bool {
    const TOP: [&str; 6] = [
        "_worker.js",
        "_redirects",
        "_headers",
        "_routes.json",
        "functions",
        ".wrangler",
    ];
    let first = path.split('/').next().unwrap_or(path);
    !TOP.contains(&first)
        && !path
            .split('/')
            .any(|s| s == ".DS_Store" || s == "node_modules" || s == ".git")
}

/// Reads a file's blob whole from the artifact store, checking it is what
/// the manifest says.
async fn read_checked(
    store: &ArtifactStore,
    path: &str,
    sha256: &str,
) -> Result<Vec<u8>, StepError> {
    let blob = store
        .get(sha256, None)
        .await
        .map_err(|e| StepError::transient(format!("reading {path}: {e:#}")))?
        .ok_or_else(|| {
            StepError::permanent(format!(
                "{path} (blob {sha256}) is missing from the artifact store"
            ))
        })?;
    let mut content = Vec::new();
    let mut body = blob.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StepError::transient(format!("reading {path}: {e}")))?;
        content.extend_from_slice(&chunk);
    }
    if super::hex(&Sha256::digest(&content)) != sha256 {
        return Err(StepError::permanent(format!(
            "{path}: blob {sha256} does not hash to its name"
        )));
    }
    Ok(content)
}

/// The Pages hash of bytes that arrive in pieces, and their SHA-256:
/// base64 of whole 3-byte groups concatenates, so each piece's whole
/// groups are encoded as they come and the rest waits for the next.
#[derive(Default)]
struct PagesHasher {
    blake: blake3::Hasher,
    sha: Sha256,
    pending: Vec<u8>,
    encoded: String,
}

impl PagesHasher {
    fn encode(&mut self, bytes: &[u8]) {
        self.encoded.clear();
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut self.encoded);
        self.blake.update(self.encoded.as_bytes());
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.pending.extend_from_slice(bytes);
        let whole = self.pending.len() / 3 * 3;
        if whole > 0 {
            let groups: Vec<u8> = self.pending.drain(..whole).collect();
            self.encode(&groups);
        }
    }

    /// (hex SHA-256, Pages hash of the file at `path`).
    fn finish(mut self, path: &str) -> (String, String) {
        let rest = std::mem::take(&mut self.pending);
        self.encode(&rest);
        self.blake.update(extension(path).as_bytes());
        (
            super::hex(&self.sha.finalize()),
            self.blake.finalize().to_hex()[..32].to_string(),
        )
    }
}

/// Hashes a file's blob the Pages way, streamed from the store, checking
/// it against the manifest's SHA-256.
async fn hash_asset(store: &ArtifactStore, path: &str, sha256: &str) -> Result<String, StepError> {
    let blob = store
        .get(sha256, None)
        .await
        .map_err(|e| StepError::transient(format!("reading {path}: {e:#}")))?
        .ok_or_else(|| {
            StepError::permanent(format!(
                "{path} (blob {sha256}) is missing from the artifact store"
            ))
        })?;
    let mut hasher = PagesHasher::default();
    let mut body = blob.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StepError::transient(format!("reading {path}: {e}")))?;
        hasher.update(&chunk);
    }
    let (sha, hash) = hasher.finish(path);
    if sha != sha256 {
        return Err(StepError::permanent(format!(
            "{path}: blob {sha256} does not hash to its name"
        )));
    }
    Ok(hash)
}

/// Files hashed at once.
const HASH_CONCURRENCY: usize = 8;

/// The deploy's assets with their Pages hashes, read from the store.
async fn assets(store: &Arc<ArtifactStore>, manifest: &Manifest) -> Result<Vec<Asset>, StepError> {
    let entries: Vec<_> = manifest
        .files
        .iter()
        .filter(|(path, _)| is_asset(path))
        .map(|(path, entry)| (path.clone(), entry.clone()))
        .collect();
    if entries.len() > MAX_ASSET_COUNT {
        return Err(StepError::permanent(format!(
            "Pages takes at most {MAX_ASSET_COUNT} files in a deployment; this deploy has {}",
            entries.len()
        )));
    }
    if let Some((path, entry)) = entries.iter().find(|(_, e)| e.size > MAX_ASSET_SIZE) {
        return Err(StepError::permanent(format!(
            "Pages takes files of at most 25 MiB; {path} is {} bytes",
            entry.size
        )));
    }
    let store = store.clone();
    futures::stream::iter(entries)
        .map(move |(path, entry)| {
            let store = store.clone();
            async move {
                let hash = hash_asset(&store, &path, &entry.sha256).await?;
                Ok::<_, StepError>(Asset {
                    path,
                    hash,
                    size: entry.size,
                    content_type: entry.content_type,
                })
            }
        })
        .buffered(HASH_CONCURRENCY)
        .try_collect()
        .await
}

/// Groups files into upload requests the way wrangler does: largest first,
/// each into the first bucket (starting one further each time) with room
/// for it, a new bucket when none has.
fn buckets(mut files: Vec<Asset>) -> Vec<Vec<Asset>> {
    files.sort_by_key(|f| std::cmp::Reverse(f.size));
    let mut buckets: Vec<(Vec<Asset>, u64)> = (0..BULK_UPLOAD_CONCURRENCY)
        .map(|_| (Vec::new(), MAX_BUCKET_SIZE))
        .collect();
    for (offset, file) in files.into_iter().enumerate() {
        let count = buckets.len();
        let slot = (0..count)
            .map(|i| (i + offset) % count)
            .find(|&i| buckets[i].1 >= file.size && buckets[i].0.len() < MAX_BUCKET_FILE_COUNT);
        match slot {
            Some(i) => {
                buckets[i].1 -= file.size;
                buckets[i].0.push(file);
            }
            None => {
                let room = MAX_BUCKET_SIZE.saturating_sub(file.size);
                buckets.push((vec![file], room));
            }
        }
    }
    buckets
        .into_iter()
        .map(|(files, _)| files)
        .filter(|files| !files.is_empty())
        .collect()
}

/// Cloudflare's response envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// A failed call: its HTTP status (none for a network error), Cloudflare's
/// error codes, and the step error it becomes.
#[derive(Debug)]
struct CallError {
    status: Option<StatusCode>,
    codes: Vec<i64>,
    error: StepError,
}

impl From<CallError> for StepError {
    fn from(e: CallError) -> Self {
        e.error
    }
}

/// The parts of a Pages project deployd uses.
#[derive(Debug, Clone, Deserialize)]
struct Project {
    name: String,
    /// `<project>.pages.dev` (Cloudflare adds a suffix when the name is
    /// taken on pages.dev).
    #[serde(default)]
    subdomain: Option<String>,
    #[serde(default)]
    production_branch: Option<String>,
}

impl Project {
    fn production_branch(&self) -> &str {
        self.production_branch
            .as_deref()
            .unwrap_or(PRODUCTION_BRANCH)
    }

    fn production_url(&self) -> String {
        match self.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(s) if s.starts_with("https://") => format!("{}/", s.trim_end_matches('/')),
            Some(s) => format!("https://{}/", s.trim_end_matches('/')),
            None => format!("https://{}.pages.dev/", self.name),
        }
    }
}

/// The parts of a deployment deployd uses.
#[derive(Debug, Clone, Deserialize)]
struct Deployment {
    #[serde(default)]
    id: String,
    url: String,
    #[serde(default)]
    deployment_trigger: Option<Trigger>,
}

#[derive(Debug, Clone, Deserialize)]
struct Trigger {
    #[serde(default)]
    metadata: Option<TriggerMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TriggerMetadata {
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    commit_message: Option<String>,
}

impl Deployment {
    /// Whether deployd made this deployment for `deploy`.
    fn is_for(&self, deploy: &DeployId) -> bool {
        let metadata = self
            .deployment_trigger
            .as_ref()
            .and_then(|t| t.metadata.clone())
            .unwrap_or_default();
        let tag = deploy.to_string();
        metadata
            .commit_message
            .is_some_and(|m| m.split_whitespace().any(|w| w == tag))
            || metadata.branch.as_deref() == Some(preview_branch(deploy).as_str())
    }
}

/// One upload request's item (wrangler's `UploadPayloadFile`).
#[derive(Serialize)]
struct UploadItem<'a> {
    key: &'a str,
    value: String,
    metadata: UploadMetadata<'a>,
    base64: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadMetadata<'a> {
    content_type: &'a str,
}

/// Cloudflare Pages, by Direct Upload.
pub struct CloudflarePages {
    api_base: String,
    account_id: String,
    api_token: String,
    http: reqwest::Client,
    /// Projects known to exist, by name.
    projects: Mutex<HashMap<String, Project>>,
    /// Where the files are read from.
    store: Arc<ArtifactStore>,
}

impl CloudflarePages {
    pub fn new(settings: CloudflareSettings, store: Arc<ArtifactStore>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.account_id.trim().is_empty(),
            "CLOUDFLARE_ACCOUNT_ID is empty"
        );
        anyhow::ensure!(
            !settings.api_token.trim().is_empty(),
            "CLOUDFLARE_API_TOKEN is empty"
        );
        let api_base = settings.api_base.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&api_base)
            .map_err(|e| anyhow::anyhow!("CLOUDFLARE_API_BASE {api_base:?}: {e}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "CLOUDFLARE_API_BASE must be an http(s) URL, not {api_base:?}"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("deployd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            api_base,
            account_id: settings.account_id,
            api_token: settings.api_token,
            http,
            projects: Mutex::new(HashMap::new()),
            store,
        })
    }

    /// The artifact store the files are read from.
    pub fn store(&self) -> &Arc<ArtifactStore> {
        &self.store
    }

    fn project_url(&self, project: &str) -> String {
        format!(
            "{}/accounts/{}/pages/projects/{project}",
            self.api_base, self.account_id
        )
    }

    /// Sends a request and opens Cloudflare's envelope.
    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, CallError> {
        let response = request.send().await.map_err(|e| CallError {
            status: None,
            codes: Vec::new(),
            error: StepError::transient(format!("{what}: {}", without_url(e))),
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| CallError {
            status: Some(status),
            codes: Vec::new(),
            error: StepError::transient(format!("{what}: reading the answer: {}", without_url(e))),
        })?;
        let envelope: Option<Envelope<T>> = serde_json::from_slice(&body).ok();
        let (codes, messages) = match &envelope {
            Some(e) => (
                e.errors.iter().map(|m| m.code).collect::<Vec<_>>(),
                e.errors
                    .iter()
                    .map(|m| format!("{} (code {})", m.message, m.code))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None => (Vec::new(), String::new()),
        };
        let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        if !status.is_success() || envelope.as_ref().is_some_and(|e| !e.success) {
            let detail = if messages.is_empty() {
                String::from_utf8_lossy(&body).chars().take(200).collect()
            } else {
                messages
            };
            let message = format!("{what}: Cloudflare answered {status}: {detail}");
            return Err(CallError {
                status: Some(status),
                codes,
                error: if transient {
                    StepError::transient(message)
                } else {
                    StepError::permanent(message)
                },
            });
        }
        match envelope {
            Some(e) => Ok(e.result),
            None => Err(CallError {
                status: Some(status),
                codes,
                error: StepError::permanent(format!(
                    "{what}: Cloudflare's answer is not its usual envelope: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )),
            }),
        }
    }

    /// A call with the API token.
    async fn api<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, CallError> {
        self.call(
            what,
            request.bearer_auth(&self.api_token).timeout(API_TIMEOUT),
        )
        .await
    }

    /// The entity's project, created when missing.
    async fn project(&self, entity: &EntityId) -> Result<Project, StepError> {
        let name = project_name(entity);
        let mut known = self.projects.lock().await;
        if let Some(project) = known.get(&name) {
            return Ok(project.clone());
        }
        let project = match self.get_project(&name).await? {
            Some(project) => project,
            None => {
                let created = self
                    .api::<Project>(
                        "creating the Pages project",
                        self.http
                            .post(format!(
                                "{}/accounts/{}/pages/projects",
                                self.api_base, self.account_id
                            ))
                            .json(&json!({
                                "name": name,
                                "production_branch": PRODUCTION_BRANCH,
                            })),
                    )
                    .await;
                match created {
                    Ok(Some(project)) => project,
                    Ok(None) => self.get_project(&name).await?.ok_or_else(|| {
                        StepError::transient(format!("project {name} was created but is not found"))
                    })?,
                    // Made meanwhile by another worker: use it.
                    Err(e) => match self.get_project(&name).await? {
                        Some(project) => project,
                        None => return Err(e.into()),
                    },
                }
            }
        };
        known.insert(name, project.clone());
        Ok(project)
    }

    async fn get_project(&self, name: &str) -> Result<Option<Project>, StepError> {
        match self
            .api::<Project>(
                "reading the Pages project",
                self.http.get(self.project_url(name)),
            )
            .await
        {
            Ok(Some(project)) => Ok(Some(project)),
            Ok(None) => Err(StepError::permanent(format!(
                "reading the Pages project {name}: no result"
            ))),
            Err(e)
                if e.status == Some(StatusCode::NOT_FOUND)
                    || e.codes.contains(&PROJECT_NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A fresh upload JWT for the project's asset endpoints.
    async fn upload_token(&self, project: &str) -> Result<String, StepError> {
        #[derive(Deserialize)]
        struct Token {
            jwt: String,
        }
        let token = self
            .api::<Token>(
                "getting an upload token",
                self.http
                    .get(format!("{}/upload-token", self.project_url(project))),
            )
            .await?
            .ok_or_else(|| StepError::permanent("getting an upload token: no result"))?;
        Ok(token.jwt)
    }

    /// A POST to an asset endpoint with the JWT; on a 401 (the JWT expired)
    /// a new JWT is fetched and the request sent once more.
    async fn asset_call<T: DeserializeOwned>(
        &self,
        what: &str,
        endpoint: &str,
        body: &[u8],
        timeout: Duration,
        project: &str,
        jwt: &Mutex<String>,
    ) -> Result<Option<T>, StepError> {
        let url = format!("{}/pages/assets/{endpoint}", self.api_base);
        let mut refreshed = false;
        loop {
            let token = jwt.lock().await.clone();
            let request = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(timeout)
                .body(body.to_vec());
            match self.call::<T>(what, request).await {
                Err(e) if e.status == Some(StatusCode::UNAUTHORIZED) && !refreshed => {
                    refreshed = true;
                    // Held while refreshing: buckets that met the same
                    // expired JWT wait for this one new JWT.
                    let mut current = jwt.lock().await;
                    if *current == token {
                        *current = self.upload_token(project).await?;
                    }
                    tracing::debug!(project, what, "upload token expired; refreshed");
                }
                other => return other.map_err(Into::into),
            }
        }
    }

    /// Sends one bucket of files.
    async fn upload_bucket(
        &self,
        manifest: &Manifest,
        bucket: Vec<Asset>,
        project: &str,
        jwt: &Mutex<String>,
    ) -> Result<(), StepError> {
        let mut contents = Vec::with_capacity(bucket.len());
        for asset in &bucket {
            let sha256 = manifest
                .files
                .get(&asset.path)
                .map(|e| e.sha256.clone())
                .unwrap_or_default();
            contents.push(read_checked(&self.store, &asset.path, &sha256).await?);
        }
        let body = tokio::task::spawn_blocking(move || {
            let items: Vec<UploadItem<'_>> = bucket
                .iter()
                .zip(&contents)
                .map(|(asset, content)| UploadItem {
                    key: &asset.hash,
                    value: base64::engine::general_purpose::STANDARD.encode(content),
                    metadata: UploadMetadata {
                        content_type: &asset.content_type,
                    },
                    base64: true,
                })
                .collect();
            serde_json::to_vec(&items)
                .map_err(|e| StepError::permanent(format!("encoding an upload: {e}")))
        })
        .await
        .map_err(|e| StepError::transient(format!("upload task: {e}")))??;
        self.asset_call::<Value>(
            "uploading files",
            "upload",
            &body,
            UPLOAD_TIMEOUT,
            project,
            jwt,
        )
        .await?;
        Ok(())
    }

    /// The most recent deployments of one environment.
    async fn recent_deployments(
        &self,
        project: &str,
        production: bool,
    ) -> Result<Vec<Deployment>, StepError> {
        let env = if production { "production" } else { "preview" };
        Ok(self
            .api::<Vec<Deployment>>(
                "listing deployments",
                self.http
                    .get(format!("{}/deployments", self.project_url(project)))
                    .query(&[("env", env), ("per_page", &RECENT_DEPLOYMENTS.to_string())]),
            )
            .await?
            .unwrap_or_default())
    }
}

/// A reqwest error's text without its URL (the URL is in `what` already).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out: "
    } else if e.is_connect() {
        "could not connect: "
    } else {
        ""
    };
    format!("{kind}{}", e.without_url())
}

#[async_trait::async_trait]
impl DeployTarget for CloudflarePages {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    /// Uploads the files Cloudflare does not have yet (steps 1–5 of the
    /// module docs). Calling it again uploads nothing new.
    async fn upload(
        &self,
        ctx: &StepContext,
        manifest: &Manifest,
        progress: &(dyn Fn() + Send + Sync),
    ) -> Result<(), StepError> {
        let project = self.project(&ctx.entity_id).await?;
        let assets = assets(&self.store, manifest).await?;
        progress();
        let jwt = Mutex::new(self.upload_token(&project.name).await?);
        let hashes: Vec<&str> = {
            let mut all: Vec<&str> = assets.iter().map(|a| a.hash.as_str()).collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        let hashes_body = serde_json::to_vec(&json!({ "hashes": hashes }))
            .map_err(|e| StepError::permanent(format!("encoding hashes: {e}")))?;
        let missing: Vec<String> = self
            .asset_call(
                "checking which files Cloudflare has",
                "check-missing",
                &hashes_body,
                API_TIMEOUT,
                &project.name,
                &jwt,
            )
            .await?
            .unwrap_or_default();
        progress();
        // One upload per distinct content.
        let mut seen = std::collections::HashSet::new();
        let to_send: Vec<Asset> = assets
            .iter()
            .filter(|a| missing.contains(&a.hash) && seen.insert(a.hash.clone()))
            .cloned()
            .collect();
        tracing::info!(
            deploy = %ctx.deploy_id,
            project = %project.name,
            files = assets.len(),
            uploading = to_send.len(),
            "uploading to Cloudflare Pages"
        );
        futures::stream::iter(buckets(to_send))
            .map(|bucket| self.upload_bucket(manifest, bucket, &project.name, &jwt))
            .buffer_unordered(BULK_UPLOAD_CONCURRENCY)
            .try_for_each(|()| async {
                progress();
                Ok(())
            })
            .await?;
        self.asset_call::<Value>(
            "recording the uploaded hashes",
            "upsert-hashes",
            &hashes_body,
            API_TIMEOUT,
            &project.name,
            &jwt,
        )
        .await?;
        Ok(())
    }

    /// Creates the Pages deployment: on the project's production branch
    /// (`main`) for a deploy that goes live, else on the deploy's own
    /// branch ([`preview_branch`]): a preview, and a production deploy
    /// completing while a rollback pins production, which must not change
    /// what `<project>.pages.dev` serves. A rollback is a new deployment of
    /// the earlier files on `main` (their assets are all there already,
    /// so nothing is uploaded again), and Pages serves them again. Its
    /// commit message names the deploy.
    ///
    /// Idempotent as far as Cloudflare allows: first the project's recent
    /// deployments of that environment are searched for one tagged with
    /// this deploy (commit message or preview branch), and it is reused,
    /// so a promote retried after a timeout or a worker crash does not make
    /// a second deployment. (Two workers promoting the same deploy at the
    /// same instant could still both create one; the entity lease makes
    /// that a lease-expiry corner case.)
    ///
    /// What Cloudflare cannot do: a deployment on the production branch
    /// goes live on `<project>.pages.dev` the moment it is created. There
    /// is no "create, then switch" on Pages, and the target cannot check
    /// that the deploy was not cancelled just before creating it (it sees
    /// only the step, not the event log). So a cancel that arrives while a
    /// production promote is in flight cannot stop the deployment on
    /// Cloudflare: deployd records the step as discarded and the deploy as
    /// cancelled, but Cloudflare serves that deployment until the next one
    /// (or someone rolls it back there). Preview deployments are on their
    /// own branch and change nothing anyone is served by default.
    async fn promote(&self, ctx: &StepContext, manifest: &Manifest) -> Result<Urls, StepError> {
        let project = self.project(&ctx.entity_id).await?;
        let production_url = ctx.production.then(|| project.production_url());
        if let Some(existing) = self
            .recent_deployments(&project.name, ctx.live)
            .await?
            .into_iter()
            .find(|d| d.is_for(&ctx.deploy_id))
        {
            tracing::info!(deploy = %ctx.deploy_id, deployment = %existing.id, "reusing the Pages deployment made for this deploy");
            return Ok(Urls {
                preview_url: Some(existing.url),
                production_url,
            });
        }

        let assets = assets(&self.store, manifest).await?;
        let pages_manifest: BTreeMap<String, &str> = assets
            .iter()
            .map(|a| (format!("/{}", a.path), a.hash.as_str()))
            .collect();
        let branch = if ctx.live {
            project.production_branch().to_string()
        } else {
            preview_branch(&ctx.deploy_id)
        };
        let mut form = reqwest::multipart::Form::new()
            .text(
                "manifest",
                serde_json::to_string(&pages_manifest)
                    .map_err(|e| StepError::permanent(format!("encoding the manifest: {e}")))?,
            )
            .text("branch", branch)
            .text("commit_message", commit_message(&ctx.deploy_id));
        // `_headers` and `_redirects` go with the deployment, as files.
        for special in ["_headers", "_redirects"] {
            if let Some(entry) = manifest.files.get(special) {
                let content = read_checked(&self.store, special, &entry.sha256).await?;
                form = form.part(
                    special,
                    reqwest::multipart::Part::bytes(content).file_name(special),
                );
            }
        }
        let deployment = self
            .api::<Deployment>(
                "creating the Pages deployment",
                self.http
                    .post(format!("{}/deployments", self.project_url(&project.name)))
                    .multipart(form),
            )
            .await?
            .ok_or_else(|| StepError::permanent("creating the Pages deployment: no result"))?;
        tracing::info!(deploy = %ctx.deploy_id, deployment = %deployment.id, url = %deployment.url, "Pages deployment created");
        Ok(Urls {
            preview_url: Some(deployment.url),
            production_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrangler's golden values (cloudflare/workers-sdk
    /// `packages/deploy-helpers/tests/hash.test.ts`).
    #[test]
    fn hashes_match_wranglers_golden_values() {
        assert_eq!(
            asset_hash("file.txt", b""),
            "f9bc91770fa5e997cbd47fba833629fc"
        );
        assert_eq!(
            asset_hash("file.html", b"hello world"),
            "b21ba0581fdc5f20b592c79af3d230e2"
        );
        assert_eq!(
            asset_hash("file.js", b"test file content"),
            "b41bdcbc16962c4e5d7e14d7c9103695"
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNk+A8AAQUBAScY42YAAAAASUVORK5CYII=")
            .unwrap();
        assert_eq!(
            asset_hash("file.png", &png),
            "226c49eec5fdea01c6810b84ccceb008"
        );
    }

    #[test]
    fn streamed_hashing_equals_whole_hashing() {
        for size in [0usize, 1, 2, 3, 196_607, 196_608, 196_609, 500_000] {
            let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            for piece in [1usize, 2, 7, 8192, 65_536] {
                let mut hasher = PagesHasher::default();
                for chunk in content.chunks(piece) {
                    hasher.update(chunk);
                }
                let (sha, hash) = hasher.finish("f.bin");
                assert_eq!(sha, super::super::hex(&Sha256::digest(&content)));
                assert_eq!(
                    hash,
                    asset_hash("f.bin", &content),
                    "size {size}, pieces {piece}"
                );
                if size > 10_000 && piece < 8 {
                    break;
                }
            }
        }
    }

    #[test]
    fn extensions_follow_node_extname() {
        assert_eq!(extension("a/b.min.js"), "js");
        assert_eq!(extension("LICENSE"), "");
        assert_eq!(extension(".env"), "");
        assert_eq!(extension("dir.d/file"), "");
        assert_eq!(extension("a/.b.css"), "css");
        assert_eq!(extension("trailing."), "");
    }

    #[test]
    fn project_names_are_valid_pages_names() {
        let entity: EntityId = "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap();
        let name = project_name(&entity);
        assert_eq!(name, "deployd-app-01jdq2v7c8x3zj8q6y0w6h4k5m");
        assert!(name.len() <= 58);
        assert_eq!(project_name(&entity), name);
    }

    #[test]
    fn buckets_respect_wranglers_limits() {
        let file = |i: usize, size: u64| Asset {
            path: format!("f{i}"),
            hash: format!("{i:032}"),
            size,
            content_type: "text/plain".into(),
        };
        let files: Vec<Asset> = (0..5_000).map(|i| file(i, 10)).collect();
        let made = buckets(files);
        assert!(made.iter().all(|b| b.len() <= MAX_BUCKET_FILE_COUNT));
        assert_eq!(made.iter().map(Vec::len).sum::<usize>(), 5_000);
        let big: Vec<Asset> = (0..4).map(|i| file(i, 24 * 1024 * 1024)).collect();
        let made = buckets(big);
        assert_eq!(made.len(), 4);
        assert!(made
            .iter()
            .all(|b| b.iter().map(|a| a.size).sum::<u64>() <= MAX_BUCKET_SIZE));
    }

    #[test]
    fn wranglers_ignored_files_are_not_assets() {
        assert!(is_asset("index.html"));
        assert!(is_asset("docs/_headers"));
        assert!(!is_asset("_headers"));
        assert!(!is_asset("_worker.js"));
        assert!(!is_asset("functions/api.js"));
        assert!(!is_asset("a/node_modules/x.js"));
        assert!(!is_asset("a/.DS_Store"));
    }
}
