//! `deployd deploy DIR --app NAME|ID`: a directory from this machine, live.
//!
//! 1. Every file under DIR is hashed (SHA-256), several at once.
//! 2. The app is found by id or name (`--create` makes it when the name is
//!    new).
//! 3. `POST /api/builds` lists the files; the server answers which blobs it
//!    lacks, and only those are sent (`PUT /api/blobs/{sha256}`), several at
//!    once, with a progress bar (plain lines when stderr is not a
//!    terminal). Transient failures (connection errors, 408, 429, 5xx) are
//!    retried with backoff; a run that still fails leaves what it sent in
//!    the store, so running it again sends only the rest.
//! 4. `POST /api/builds/{id}/finalize`, then a deploy of the build (or the
//!    auto-deploy the build started), followed to its end by its event
//!    stream; the preview and production URLs are printed, and the exit
//!    status is 0 only when the deploy completed.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::client::{self, describe_problem, ending, Client, Connection};

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The directory to publish (its files, at their paths below it).
    pub dir: PathBuf,
    /// The app or function: its name, or its id (`app_…`, `fn_…`).
    #[arg(long)]
    pub app: String,
    /// Make the app when no app has that name.
    #[arg(long)]
    pub create: bool,
    /// The workspace (`ws_…`): for a token of several workspaces, where the
    /// name is looked up and `--create` makes the app.
    #[arg(long)]
    pub workspace: Option<String>,
    /// `production` or `preview` (default: production, as a build of the
    /// app's default version).
    #[arg(long)]
    pub target: Option<String>,
    /// The branch the files were built from (recorded on the build).
    #[arg(long)]
    pub branch: Option<String>,
    /// The commit the files were built from (recorded on the build).
    #[arg(long)]
    pub commit: Option<String>,
    /// Follow the deploy until it ends (the default); exit non-zero unless
    /// it completes.
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Create the deploy and exit without following it.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,
    /// Files uploaded at once.
    #[arg(long, env = "DEPLOYD_UPLOAD_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Attempts of a request that fails transiently (connection errors,
    /// 408, 429, 5xx), with backoff between them.
    #[arg(long, env = "DEPLOYD_UPLOAD_ATTEMPTS", default_value_t = 5)]
    pub attempts: u32,
}

/// A file of the directory, hashed.
#[derive(Debug, Clone)]
struct LocalFile {
    /// Relative to the directory, `/`-separated.
    path: String,
    full: PathBuf,
    size: u64,
    sha256: String,
}

pub async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let api = Api {
        client: client::client(&c.url, c.token.clone())?,
        attempts: args.attempts.max(1),
    };
    let started = Instant::now();
    let quiet = c.json;
    if let Some(target) = &args.target {
        anyhow::ensure!(
            target == "production" || target == "preview",
            "--target is production or preview, not {target:?}"
        );
    }

    let listed = list_files(&args.dir)?;
    let entity = resolve_app(&api, &args).await?;
    let files = hash_files(&args.dir, listed).await?;
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();

    let entity_id = entity["id"].as_str().unwrap_or_default().to_string();
    let name = entity["name"].as_str().unwrap_or_default().to_string();

    let mut body = json!({
        "entityId": entity_id,
        "files": files.iter().map(|f| json!({"path": f.path, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
    });
    if let Some(branch) = &args.branch {
        body["branch"] = json!(branch);
    }
    if let Some(commit) = &args.commit {
        body["commitSha"] = json!(commit);
    }
    let created = api
        .call("listing the files", || {
            api.client
                .http
                .post(api.client.endpoint("/api/builds"))
                .json(&body)
        })
        .await?;
    let build = created["id"].as_str().unwrap_or_default().to_string();
    let missing: Vec<String> = strings(&created["missing"]);
    let by_hash: HashMap<&str, &LocalFile> = files.iter().map(|f| (f.sha256.as_str(), f)).collect();

    let sent = upload(&api, &by_hash, &missing, args.concurrency, files.len()).await?;
    let finalized = finalize(&api, &build, &by_hash, args.concurrency, files.len()).await?;
    let sent_files = sent.files + finalized.1.files;
    let sent_bytes = sent.bytes + finalized.1.bytes;
    let finalized = finalized.0;

    // The build may have started a deploy itself (auto-deploy of the
    // default version); that one is followed rather than a second made.
    let auto = finalized["autoDeployId"].as_str().map(str::to_string);
    let deploy = match (&auto, args.target.as_deref()) {
        (Some(id), None | Some("production")) => {
            if !quiet {
                eprintln!("auto-deploy {id} started by build {build}");
            }
            api.client.get(&format!("/api/deploys/{id}"), &[]).await?
        }
        _ => {
            let mut body = json!({ "buildId": build });
            if let Some(target) = &args.target {
                body["target"] = json!(target);
            }
            let key = format!("deployd-deploy-{build}");
            api.call("creating the deploy", || {
                api.client
                    .http
                    .post(api.client.endpoint("/api/deploys"))
                    .header("Idempotency-Key", &key)
                    .json(&body)
            })
            .await?
        }
    };
    let deploy_id = deploy["id"].as_str().unwrap_or_default().to_string();
    if !quiet {
        eprintln!(
            "deploy {deploy_id} (#{}) of {name} ({entity_id}), build {build}",
            client_cell(&deploy["sequenceNumber"])
        );
    }
    let summary = |detail: &Value| {
        json!({
            "entity": entity,
            "build": finalized,
            "files": files.len(),
            "bytes": total_bytes,
            "uploaded": {"files": sent_files, "bytes": sent_bytes},
            "deploy": detail,
        })
    };
    if args.no_wait {
        if quiet {
            println!("{}", serde_json::to_string_pretty(&summary(&deploy))?);
        } else {
            println!("{deploy_id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let detail = client::follow_to_end(&api.client, &deploy_id, quiet).await?;
    let completed = detail["status"] == "completed";
    if quiet {
        println!("{}", serde_json::to_string_pretty(&summary(&detail))?);
    } else if completed {
        eprintln!(
            "deploy {deploy_id} completed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if let Some(url) = detail["previewUrl"].as_str() {
            println!("preview     {url}");
        }
        if let Some(url) = detail["productionUrl"].as_str() {
            println!("production  {url}");
        }
        if detail["target"] == "production" && detail["live"] != true {
            eprintln!(
                "production is pinned by a rollback, so this deploy is not live there; \
                 `deployd deploys promote {deploy_id}` makes it so"
            );
        }
    } else {
        eprintln!("{}", ending(&deploy_id, &detail));
    }
    Ok(if completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn client_cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The files under `dir` (links followed; `.git` left out), by path.
fn list_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.file_type().is_dir() && e.file_name() == ".git"));
    for entry in walk {
        let entry = entry.map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let mut parts = Vec::new();
        for part in relative.components() {
            let part = part.as_os_str().to_str().ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: the path is not UTF-8, and URLs need it to be",
                    entry.path().display()
                )
            })?;
            parts.push(part.to_string());
        }
        files.push((parts.join("/"), entry.path().to_path_buf()));
    }
    anyhow::ensure!(!files.is_empty(), "{} holds no files", dir.display());
    Ok(files)
}

/// SHA-256 and size of one file, read in blocks.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), size))
}

/// Hashes every file, as many at once as there are cores, but for those
/// the hash cache knows unchanged.
async fn hash_files(dir: &Path, listed: Vec<(String, PathBuf)>) -> anyhow::Result<Vec<LocalFile>> {
    let cache = HashCache::open(dir);
    let started = std::time::SystemTime::now();
    let mut files = Vec::with_capacity(listed.len());
    let mut stale = Vec::new();
    for (path, full) in listed {
        let meta = std::fs::metadata(&full)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", full.display()))?;
        let stamp = Stamp::of(&meta);
        match cache.known(&path, &stamp) {
            Some(sha256) => files.push((
                LocalFile {
                    path,
                    full,
                    size: meta.len(),
                    sha256,
                },
                stamp,
            )),
            None => stale.push((path, full, stamp, meta.len())),
        }
    }
    if !stale.is_empty() {
        let total: u64 = stale.iter().map(|s| s.3).sum();
        let progress = Progress::new("hashing", stale.len() as u64, total);
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hashed: Vec<(LocalFile, Stamp)> = futures::stream::iter(stale)
            .map(|(path, full, stamp, _)| {
                let progress = progress.clone();
                async move {
                    let at = full.clone();
                    let (sha256, size) = tokio::task::spawn_blocking(move || hash_file(&at))
                        .await?
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", full.display()))?;
                    progress.add_bytes(size);
                    progress.file_done();
                    let stamp = Stamp { size, ..stamp };
                    Ok::<_, anyhow::Error>((
                        LocalFile {
                            path,
                            full,
                            size,
                            sha256,
                        },
                        stamp,
                    ))
                }
            })
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        progress.finish("hashed");
        files.extend(hashed);
    }
    let reused = files.len() as u64 - cache.missed();
    if reused > 0 {
        eprintln!("{reused} files unchanged since they were last hashed");
    }
    files.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    cache.save(dir, &files, started);
    Ok(files.into_iter().map(|(f, _)| f).collect())
}

/// What says a file is unchanged since it was hashed: its size, its
/// modification time to the nanosecond and its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    size: u64,
    modified_ns: i64,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_nanos() as i64);
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            size: meta.len(),
            modified_ns,
            inode,
        }
    }
}

/// The hashes of a directory's files as last computed, kept in the user's
/// cache directory (`DEPLOYD_CACHE_DIR`, default `$XDG_CACHE_HOME/deployd`
/// or `~/.cache/deployd`), one file per directory deployed: a run over an
/// unchanged directory reads no file's content. An entry is trusted only
/// when the file's stamp is the same and the file was last modified before
/// the hashing that recorded it began (a file written during it may have
/// changed after its bytes were read, with the same time on it).
struct HashCache {
    file: Option<PathBuf>,
    entries: HashMap<String, CachedHash>,
    /// When the hashing that wrote the cache began (ns since the epoch).
    hashed_at_ns: i64,
    missed: AtomicU64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CachedHash {
    sha256: String,
    stamp: Stamp,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheFile {
    directory: String,
    hashed_at_ns: i64,
    files: HashMap<String, CachedHash>,
}

impl HashCache {
    fn location(dir: &Path) -> Option<PathBuf> {
        let root = match std::env::var_os("DEPLOYD_CACHE_DIR") {
            Some(dir) if dir.is_empty() => return None,
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("XDG_CACHE_HOME") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("deployd"),
                _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/deployd"),
            },
        };
        let canonical = std::fs::canonicalize(dir).ok()?;
        let key: String = Sha256::digest(canonical.to_string_lossy().as_bytes())
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(root.join("hashes").join(format!("{key}.json")))
    }

    fn open(dir: &Path) -> HashCache {
        let file = Self::location(dir);
        let stored: Option<CacheFile> = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let (entries, hashed_at_ns) = match stored {
            Some(c) => (c.files, c.hashed_at_ns),
            None => (HashMap::new(), i64::MIN),
        };
        HashCache {
            file,
            entries,
            hashed_at_ns,
            missed: AtomicU64::new(0),
        }
    }

    /// The file's hash, when its stamp is the one recorded.
    fn known(&self, path: &str, stamp: &Stamp) -> Option<String> {
        let found = self
            .entries
            .get(path)
            .filter(|e| e.stamp == *stamp && stamp.modified_ns < self.hashed_at_ns)
            .map(|e| e.sha256.clone());
        if found.is_none() {
            self.missed.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Writes the hashes of this run (files gone are forgotten); a cache
    /// that cannot be written only costs the next run its hashing.
    fn save(&self, dir: &Path, files: &[(LocalFile, Stamp)], started: std::time::SystemTime) {
        let Some(file) = &self.file else { return };
        let hashed_at_ns = started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(i64::MIN, |d| d.as_nanos() as i64);
        let cache = CacheFile {
            directory: dir.display().to_string(),
            hashed_at_ns,
            files: files
                .iter()
                .map(|(f, stamp)| {
                    (
                        f.path.clone(),
                        CachedHash {
                            sha256: f.sha256.clone(),
                            stamp: *stamp,
                        },
                    )
                })
                .collect(),
        };
        let write = || -> std::io::Result<()> {
            let parent = file.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent)?;
            let temporary = parent.join(format!(".{}.tmp", ulid::Ulid::generate()));
            std::fs::write(&temporary, serde_json::to_vec(&cache)?)?;
            std::fs::rename(&temporary, file)
        };
        if let Err(e) = write() {
            eprintln!(
                "note: the hash cache {} was not written: {e}",
                file.display()
            );
        }
    }
}

/// The app named or identified by `--app`, made with `--create` when the
/// name is new.
async fn resolve_app(api: &Api, args: &DeployArgs) -> anyhow::Result<Value> {
    let app = args.app.trim();
    if app.starts_with("app_") || app.starts_with("fn_") {
        return api
            .call("finding the app", || {
                api.client
                    .http
                    .get(api.client.endpoint(&format!("/api/entities/{app}")))
            })
            .await;
    }
    let find = || async {
        let mut query = vec![("name", app.to_string())];
        if let Some(ws) = &args.workspace {
            query.push(("workspace_id", ws.clone()));
        }
        let page = api
            .call("finding the app", || {
                api.client
                    .http
                    .get(api.client.endpoint("/api/entities"))
                    .query(&query)
            })
            .await?;
        let found = page["data"].as_array().cloned().unwrap_or_default();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            several => anyhow::bail!(
                "{} apps are named {app:?} in your workspaces ({}): give --workspace, or the id",
                several.len(),
                several
                    .iter()
                    .map(|e| format!(
                        "{} in {}",
                        client_cell(&e["id"]),
                        client_cell(&e["workspaceId"])
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    if let Some(found) = find().await? {
        return Ok(found);
    }
    anyhow::ensure!(
        args.create,
        "no app is named {app:?} in your workspaces: add --create to make it, or give its id"
    );
    let mut body = json!({"kind": "app", "name": app});
    if let Some(ws) = &args.workspace {
        body["workspaceId"] = json!(ws);
    }
    match api
        .call_raw("creating the app", || {
            api.client
                .http
                .post(api.client.endpoint("/api/entities"))
                .json(&body)
        })
        .await?
    {
        (status, created) if status.is_success() => {
            if !args.connection.json {
                eprintln!("created app {app} ({})", client_cell(&created["id"]));
            }
            Ok(created)
        }
        // Made meanwhile by someone else (or a retry of ours): use it.
        (StatusCode::CONFLICT, _) => find()
            .await?
            .ok_or_else(|| anyhow::anyhow!("app {app:?} exists but could not be found")),
        (status, body) => anyhow::bail!("creating the app: {}", describe_problem(status, &body)),
    }
}

/// What an upload sent.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    files: u64,
    bytes: u64,
}

/// Sends the blobs in `missing` (one file of each), `concurrency` at once.
async fn upload(
    api: &Api,
    by_hash: &HashMap<&str, &LocalFile>,
    missing: &[String],
    concurrency: usize,
    file_count: usize,
) -> anyhow::Result<Sent> {
    let mut jobs: BTreeMap<&str, &LocalFile> = BTreeMap::new();
    for hash in missing {
        let file = by_hash.get(hash.as_str()).ok_or_else(|| {
            anyhow::anyhow!("the server asked for blob {hash}, which no file here has")
        })?;
        jobs.insert(hash.as_str(), file);
    }
    let bytes: u64 = jobs.values().map(|f| f.size).sum();
    if jobs.is_empty() {
        eprintln!("nothing to upload: the server has all {file_count} files");
        return Ok(Sent::default());
    }
    eprintln!(
        "uploading {} of {file_count} files ({}); the server has the rest",
        jobs.len(),
        HumanBytes(bytes)
    );
    let progress = Progress::new("uploading", jobs.len() as u64, bytes);
    let result = futures::stream::iter(jobs.into_values().map(Ok))
        .try_for_each_concurrent(concurrency.max(1), |file| {
            let progress = progress.clone();
            async move {
                put_blob(api, file, &progress).await?;
                progress.file_done();
                Ok::<_, anyhow::Error>(())
            }
        })
        .await;
    let sent = progress.files_done();
    if let Err(e) = result {
        progress.abandon();
        anyhow::bail!(
            "{e:#}\nthe upload stopped after {sent} of {} files; what was sent is kept: \
             run the same command again to send the rest",
            progress.files_total
        );
    }
    progress.finish("uploaded");
    Ok(Sent { files: sent, bytes })
}

/// `PUT /api/blobs/{sha256}` with the file's bytes, streamed and counted
/// into the progress; retried when the failure is transient.
async fn put_blob(api: &Api, file: &LocalFile, progress: &Progress) -> anyhow::Result<()> {
    let what = format!("uploading {}", file.path);
    let url = api.client.endpoint(&format!("/api/blobs/{}", file.sha256));
    let mut attempt = 1;
    loop {
        let counted = Arc::new(AtomicU64::new(0));
        let body = {
            let handle = tokio::fs::File::open(&file.full)
                .await
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.full.display()))?;
            reqwest::Body::wrap_stream(counting_stream(handle, progress.clone(), counted.clone()))
        };
        let request = api
            .client
            .http
            .put(&url)
            .bearer_auth(&api.client.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, file.size)
            .body(body);
        let outcome = Outcome::of(request.send().await).await;
        let counted = counted.load(Ordering::Relaxed);
        if !matches!(outcome, Outcome::Done(_)) {
            progress.sub_bytes(counted);
        }
        match outcome {
            Outcome::Done(_) => return Ok(()),
            Outcome::Refused(StatusCode::BAD_REQUEST, body)
                if body["detail"].as_str().is_some_and(|d| d.contains("hash")) =>
            {
                anyhow::bail!(
                    "{} changed while it was being deployed (its bytes no longer hash to what was listed); \
                     run the command again",
                    file.path
                )
            }
            Outcome::Refused(status, body) => {
                anyhow::bail!("{what}: {}", describe_problem(status, &body))
            }
            Outcome::Transient(why, wait) => {
                if attempt >= api.attempts {
                    anyhow::bail!("{what}: {why} (after {attempt} attempts)");
                }
                let wait = wait.unwrap_or_else(|| backoff(attempt));
                progress.note(&format!(
                    "{what}: {why}; retrying in {:.1} s",
                    wait.as_secs_f64()
                ));
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// The file's bytes as a stream of blocks, each counted as it goes.
fn counting_stream(
    file: tokio::fs::File,
    progress: Progress,
    counted: Arc<AtomicU64>,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures::stream::try_unfold(file, move |mut file| {
        let progress = progress.clone();
        let counted = counted.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut block = vec![0u8; 64 * 1024];
            let n = file.read(&mut block).await?;
            if n == 0 {
                return Ok(None);
            }
            block.truncate(n);
            counted.fetch_add(n as u64, Ordering::Relaxed);
            progress.add_bytes(n as u64);
            Ok(Some((block, file)))
        }
    })
}

/// Finalizes the build; blobs the server still lacks (it names them) are
/// sent and the finalize asked again, twice at most.
async fn finalize(
    api: &Api,
    build: &str,
    by_hash: &HashMap<&str, &LocalFile>,
    concurrency: usize,
    file_count: usize,
) -> anyhow::Result<(Value, Sent)> {
    let path = format!("/api/builds/{build}/finalize");
    let mut sent = Sent::default();
    for round in 0..3 {
        let (status, body) = api
            .call_raw("finalizing the build", || {
                api.client.http.post(api.client.endpoint(&path))
            })
            .await?;
        if status.is_success() {
            return Ok((body, sent));
        }
        let missing = strings(&body["missing"]);
        if status != StatusCode::UNPROCESSABLE_ENTITY || missing.is_empty() || round == 2 {
            anyhow::bail!(
                "finalizing build {build}: {}",
                describe_problem(status, &body)
            );
        }
        let more = upload(api, by_hash, &missing, concurrency, file_count).await?;
        sent.files += more.files;
        sent.bytes += more.bytes;
    }
    unreachable!("the loop returns or fails by its third round")
}

/// The wait before attempt `attempt + 1`: 250 ms doubling, at most 8 s,
/// with up to a quarter more at random so clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250)
        .saturating_mul(1 << (attempt - 1).min(5))
        .min(Duration::from_secs(8));
    let jitter = rand::random::<f64>() * 0.25;
    base.mul_f64(1.0 + jitter)
}

/// How one request went.
enum Outcome {
    Done(Value),
    /// An answer that trying again will not change.
    Refused(StatusCode, Value),
    /// Worth another try (after the server's `Retry-After`, when it gave one).
    Transient(String, Option<Duration>),
}

impl Outcome {
    async fn of(sent: reqwest::Result<reqwest::Response>) -> Outcome {
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Transient(error_chain(&e), None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(30)));
        let body = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => return Outcome::Transient(error_chain(&e), None),
        };
        let transient = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        if status.is_success() {
            Outcome::Done(body)
        } else if transient {
            Outcome::Transient(describe_problem(status, &body), retry_after)
        } else {
            Outcome::Refused(status, body)
        }
    }
}

/// An error with its causes (reqwest's own message hides them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The client with its retry policy.
struct Api {
    client: Client,
    attempts: u32,
}

impl Api {
    /// Sends the request `make` builds, again while it fails transiently;
    /// answers the status and JSON body of the last answer.
    async fn call_raw(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut attempt = 1;
        loop {
            let outcome = Outcome::of(make().bearer_auth(&self.client.token).send().await).await;
            match outcome {
                Outcome::Done(body) => return Ok((StatusCode::OK, body)),
                Outcome::Refused(status, body) => return Ok((status, body)),
                Outcome::Transient(why, wait) => {
                    if attempt >= self.attempts {
                        anyhow::bail!(
                            "{what}: {why} (after {attempt} attempts; deployd at {})",
                            self.client.url
                        );
                    }
                    let wait = wait.unwrap_or_else(|| backoff(attempt));
                    eprintln!("{what}: {why}; retrying in {:.1} s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// [`Api::call_raw`], with anything but a success as the error.
    async fn call(&self, what: &str, make: impl Fn() -> RequestBuilder) -> anyhow::Result<Value> {
        match self.call_raw(what, make).await? {
            (status, body) if status.is_success() => Ok(body),
            (status, body) => anyhow::bail!("{what}: {}", describe_problem(status, &body)),
        }
    }
}

/// Files and bytes done of a phase: an indicatif bar on a terminal, plain
/// lines (at most one a second, and one at the end) otherwise.
#[derive(Clone)]
struct Progress(Arc<ProgressInner>);

struct ProgressInner {
    what: &'static str,
    bar: ProgressBar,
    terminal: bool,
    files_total: u64,
    bytes_total: u64,
    files: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl std::ops::Deref for Progress {
    type Target = ProgressInner;
    fn deref(&self) -> &ProgressInner {
        &self.0
    }
}

impl Progress {
    fn new(what: &'static str, files: u64, bytes: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal {
            let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30.cyan/blue}] {msg} · {bytes}/{total_bytes} · {binary_bytes_per_sec} · {eta} left",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what);
            bar.set_message(format!("0/{files} files"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress(Arc::new(ProgressInner {
            what,
            bar,
            terminal,
            files_total: files,
            bytes_total: bytes,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }))
    }

    fn files_done(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.bar.inc(n);
        self.maybe_line();
    }

    fn sub_bytes(&self, n: u64) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
        self.bar.dec(n);
    }

    fn file_done(&self) {
        let done = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar
            .set_message(format!("{done}/{} files", self.files_total));
        self.maybe_line();
    }

    /// A line above the bar (or on its own).
    fn note(&self, line: &str) {
        if self.terminal {
            self.bar.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// The plain line, when a second has passed since the last.
    fn maybe_line(&self) {
        if self.terminal {
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    /// `uploading: 120/2000 files, 3.1 MiB/50.0 MiB, 12.3 MiB/s, 4 s left`
    fn line(&self) -> String {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = bytes as f64 / seconds;
        let left = if rate > 0.0 {
            HumanDuration(Duration::from_secs_f64(
                self.bytes_total.saturating_sub(bytes) as f64 / rate,
            ))
            .to_string()
        } else {
            "?".into()
        };
        format!(
            "{}: {}/{} files, {}/{}, {}/s, {left} left",
            self.what,
            self.files_done(),
            self.files_total,
            HumanBytes(bytes),
            HumanBytes(self.bytes_total),
            HumanBytes(rate as u64),
        )
    }

    /// Clears the bar and says what was done, how fast.
    fn finish(&self, done: &str) {
        self.bar.finish_and_clear();
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "{done} {} files ({}) in {:.1} s, {}/s",
            self.files_done(),
            HumanBytes(self.bytes.load(Ordering::Relaxed)),
            seconds,
            HumanBytes((self.bytes.load(Ordering::Relaxed) as f64 / seconds.max(0.001)) as u64)
        );
    }

    /// Leaves the bar where it stopped.
    fn abandon(&self) {
        self.bar.abandon();
        if !self.terminal {
            eprintln!("{}", self.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_bound_with_a_little_jitter() {
        for attempt in 1..10 {
            let wait = backoff(attempt);
            let base = 250u64 << (attempt - 1).min(5);
            let base = Duration::from_millis(base.min(8_000));
            assert!(
                wait >= base && wait <= base.mul_f64(1.25),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn files_are_listed_by_relative_path_without_git_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("index.html"), "hi").unwrap();
        std::fs::write(dir.path().join("a/b/c.js"), "").unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        std::fs::write(dir.path().join(".well-known"), "x").unwrap();
        let listed: Vec<String> = list_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(listed, [".well-known", "a/b/c.js", "index.html"]);
        let (hash, size) = hash_file(&dir.path().join("index.html")).unwrap();
        assert_eq!(size, 2);
        // sha256("hi")
        assert_eq!(
            hash,
            "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(list_files(empty.path())
            .unwrap_err()
            .to_string()
            .contains("holds no files"));
    }
}
