//! The Cloudflare Pages target against a local HTTP server.
//!
//! Cloudflare cannot be reached from where these tests run, so `FakePages`
//! follows Cloudflare's documented request and response shapes instead: the
//! `{success, errors, messages, result}` envelope, the project, upload-token
//! and deployment endpoints under `/client/v4/accounts/{account}/pages/…`,
//! and the asset endpoints (`/client/v4/pages/assets/…`) that take the
//! upload JWT. It keeps uploaded assets in memory, checks every upload and
//! recomputes every manifest hash from the stored content and the path's
//! extension, and records the calls it gets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use deployd::domain::ids::{DeployId, EntityId, EntityKind};
use deployd::hosting::cloudflare::{CloudflarePages, CloudflareSettings};
use deployd::hosting::store::ArtifactStore;
use deployd::hosting::{DeployTarget, Manifest, StepContext, StepError};

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const API_TOKEN: &str = "test-api-token";

/// What the fake Cloudflare holds.
#[derive(Default)]
struct Cloud {
    projects: HashMap<String, Value>,
    /// Asset hash → base64 content.
    assets: HashMap<String, String>,
    upserted: HashSet<String>,
    /// Deployments by project, oldest first, with the manifest and form
    /// they were made from.
    deployments: Vec<Made>,
    jwts: HashSet<String>,
    issued: usize,
    /// Every request, as `METHOD /path`.
    calls: Vec<String>,
    /// Answers to give instead of the real one: (method, path suffix,
    /// status, code, message), first match used once.
    failures: Vec<(Method, String, u16, i64, String)>,
    /// Invalidate every JWT when a request to this path suffix arrives.
    expire_on: Option<String>,
    /// Refuse every JWT.
    refuse_jwts: bool,
}

type Shared = Arc<Mutex<Cloud>>;

/// A deployment the fake made, with what it was made from.
#[derive(Clone)]
struct Made {
    project: String,
    deployment: Value,
    manifest: BTreeMap<String, String>,
    form: HashMap<String, String>,
}

struct FakePages {
    addr: SocketAddr,
    cloud: Shared,
    /// The artifact store the target reads (a directory of the test's own).
    store: Arc<ArtifactStore>,
    _blobs: tempfile::TempDir,
}

/// An artifact store in a directory of its own.
fn store() -> (Arc<ArtifactStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(None, dir.path()).unwrap();
    (Arc::new(store), dir)
}

impl FakePages {
    async fn start() -> Self {
        let cloud = Shared::default();
        let app = Router::new()
            .route(
                "/client/v4/accounts/{account}/pages/projects",
                post(create_project),
            )
            .route(
                "/client/v4/accounts/{account}/pages/projects/{project}",
                get(get_project),
            )
            .route(
                "/client/v4/accounts/{account}/pages/projects/{project}/upload-token",
                get(upload_token),
            )
            .route(
                "/client/v4/accounts/{account}/pages/projects/{project}/deployments",
                get(list_deployments).post(create_deployment),
            )
            .route("/client/v4/pages/assets/check-missing", post(check_missing))
            .route("/client/v4/pages/assets/upload", post(upload_assets))
            .route("/client/v4/pages/assets/upsert-hashes", post(upsert_hashes))
            .layer(axum::middleware::from_fn_with_state(cloud.clone(), record))
            .with_state(cloud.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let (store, _blobs) = store();
        Self {
            addr,
            cloud,
            store,
            _blobs,
        }
    }

    fn target(&self) -> CloudflarePages {
        CloudflarePages::new(
            CloudflareSettings {
                api_base: format!("http://{}/client/v4", self.addr),
                account_id: ACCOUNT.into(),
                api_token: API_TOKEN.into(),
            },
            self.store.clone(),
        )
        .unwrap()
    }

    fn calls(&self, call: &str) -> usize {
        let cloud = self.cloud.lock().unwrap();
        cloud.calls.iter().filter(|c| c.as_str() == call).count()
    }

    fn fail(&self, method: Method, suffix: &str, status: u16, code: i64, message: &str) {
        self.cloud.lock().unwrap().failures.push((
            method,
            suffix.into(),
            status,
            code,
            message.into(),
        ));
    }

    fn deployments(&self) -> Vec<Made> {
        self.cloud.lock().unwrap().deployments.clone()
    }
}

fn envelope(result: Value) -> Response {
    Json(json!({"success": true, "errors": [], "messages": [], "result": result})).into_response()
}

fn error(status: u16, code: i64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({
            "success": false,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": null,
        })),
    )
        .into_response()
}

/// Records the call, then answers with an injected failure if one matches.
async fn record(State(cloud): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    {
        let mut cloud = cloud.lock().unwrap();
        cloud.calls.push(format!("{method} {path}"));
        if cloud
            .expire_on
            .as_deref()
            .is_some_and(|suffix| path.ends_with(suffix))
        {
            cloud.expire_on = None;
            cloud.jwts.clear();
        }
        if let Some(i) = cloud
            .failures
            .iter()
            .position(|(m, suffix, ..)| *m == method && path.ends_with(suffix.as_str()))
        {
            let (_, _, status, code, message) = cloud.failures.remove(i);
            return error(status, code, &message);
        }
    }
    next.run(request).await
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

fn api_auth(headers: &HeaderMap, account: &str) -> Option<Response> {
    if bearer(headers).as_deref() != Some(API_TOKEN) {
        return Some(error(403, 10000, "Authentication error"));
    }
    if account != ACCOUNT {
        return Some(error(403, 10000, "Authentication error"));
    }
    None
}

fn jwt_auth(cloud: &Cloud, headers: &HeaderMap) -> Option<Response> {
    match bearer(headers) {
        Some(jwt) if !cloud.refuse_jwts && cloud.jwts.contains(&jwt) => None,
        _ => Some(error(401, 8000013, "Invalid token: the JWT has expired")),
    }
}

async fn create_project(
    State(cloud): State<Shared>,
    UrlPath(account): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = api_auth(&headers, &account) {
        return refused;
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let valid = !name.is_empty()
        && name.len() <= 58
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return error(400, 8000039, "Project name is invalid");
    }
    let mut cloud = cloud.lock().unwrap();
    if cloud.projects.contains_key(&name) {
        return error(409, 8000002, "A project with this name already exists");
    }
    let project = json!({
        "id": format!("proj-{name}"),
        "name": name,
        "subdomain": format!("{name}.pages.dev"),
        "production_branch": body["production_branch"].as_str().unwrap_or("main"),
        "domains": [format!("{name}.pages.dev")],
    });
    cloud.projects.insert(name, project.clone());
    envelope(project)
}

async fn get_project(
    State(cloud): State<Shared>,
    UrlPath((account, project)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = api_auth(&headers, &account) {
        return refused;
    }
    match cloud.lock().unwrap().projects.get(&project) {
        Some(p) => envelope(p.clone()),
        None => error(404, 8000007, "Project not found. The specified project name does not match any of your existing projects."),
    }
}

async fn upload_token(
    State(cloud): State<Shared>,
    UrlPath((account, project)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = api_auth(&headers, &account) {
        return refused;
    }
    let mut cloud = cloud.lock().unwrap();
    if !cloud.projects.contains_key(&project) {
        return error(404, 8000007, "Project not found.");
    }
    cloud.issued += 1;
    let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{project}.{}", cloud.issued);
    cloud.jwts.insert(jwt.clone());
    envelope(json!({ "jwt": jwt }))
}

fn is_hash(h: &str) -> bool {
    h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit())
}

fn hashes_of(body: &Value) -> Option<Vec<String>> {
    body["hashes"]
        .as_array()?
        .iter()
        .map(|h| h.as_str().filter(|h| is_hash(h)).map(str::to_string))
        .collect()
}

async fn check_missing(
    State(cloud): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let cloud = cloud.lock().unwrap();
    if let Some(refused) = jwt_auth(&cloud, &headers) {
        return refused;
    }
    let Some(hashes) = hashes_of(&body) else {
        return error(400, 8000096, "Invalid list of hashes");
    };
    let missing: Vec<String> = hashes
        .into_iter()
        .filter(|h| !cloud.assets.contains_key(h))
        .collect();
    envelope(json!(missing))
}

async fn upload_assets(State(cloud): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut cloud = cloud.lock().unwrap();
    if let Some(refused) = jwt_auth(&cloud, &headers) {
        return refused;
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return error(400, 8000096, "The upload body must be a JSON array");
    };
    for item in &items {
        let key = item["key"].as_str().unwrap_or_default();
        let value = item["value"].as_str().unwrap_or_default();
        let ok = is_hash(key)
            && item["base64"] == json!(true)
            && item["metadata"]["contentType"].is_string()
            && base64::engine::general_purpose::STANDARD
                .decode(value)
                .is_ok();
        if !ok {
            return error(400, 8000096, &format!("Invalid upload item {key:?}"));
        }
    }
    for item in &items {
        cloud.assets.insert(
            item["key"].as_str().unwrap().to_string(),
            item["value"].as_str().unwrap().to_string(),
        );
    }
    envelope(json!({"successful_key_count": items.len(), "unsuccessful_keys": []}))
}

async fn upsert_hashes(
    State(cloud): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut cloud = cloud.lock().unwrap();
    if let Some(refused) = jwt_auth(&cloud, &headers) {
        return refused;
    }
    let Some(hashes) = hashes_of(&body) else {
        return error(400, 8000096, "Invalid list of hashes");
    };
    if let Some(h) = hashes.iter().find(|h| !cloud.assets.contains_key(*h)) {
        return error(400, 8000096, &format!("Unknown hash {h}"));
    }
    cloud.upserted.extend(hashes);
    envelope(json!(true))
}

/// The form fields of a multipart body (text only).
fn form_fields(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let content_type = headers.get("content-type")?.to_str().ok()?;
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let text = String::from_utf8_lossy(body);
    let mut fields = HashMap::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = head.split("name=\"").nth(1)?.split('"').next()?;
        fields.insert(
            name.to_string(),
            content.strip_suffix("\r\n").unwrap_or(content).to_string(),
        );
    }
    Some(fields)
}

/// Node's `path.extname` without the dot, written again here so the
/// server's check does not lean on the code it checks.
fn node_extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap();
    match name.rfind('.') {
        Some(0) | None => String::new(),
        Some(i) => name[i + 1..].to_string(),
    }
}

fn pages_hash(base64_content: &str, path: &str) -> String {
    let mut input = base64_content.to_string();
    input.push_str(&node_extension(path));
    blake3::hash(input.as_bytes()).to_hex()[..32].to_string()
}

async fn create_deployment(
    State(cloud): State<Shared>,
    UrlPath((account, project)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = api_auth(&headers, &account) {
        return refused;
    }
    let Some(fields) = form_fields(&headers, &body) else {
        return error(400, 8000096, "Expected multipart/form-data");
    };
    let Some(manifest) = fields
        .get("manifest")
        .and_then(|m| serde_json::from_str::<BTreeMap<String, String>>(m).ok())
    else {
        return error(400, 8000096, "Invalid manifest");
    };
    let mut cloud = cloud.lock().unwrap();
    let Some(p) = cloud.projects.get(&project).cloned() else {
        return error(404, 8000007, "Project not found.");
    };
    for (path, hash) in &manifest {
        let Some(content) = cloud.assets.get(hash) else {
            return error(
                400,
                8000096,
                &format!("{path}: asset {hash} was never uploaded"),
            );
        };
        if !path.starts_with('/') || pages_hash(content, path) != *hash {
            return error(
                400,
                8000096,
                &format!("{path}: hash {hash} does not match its content"),
            );
        }
    }
    let branch = fields
        .get("branch")
        .cloned()
        .unwrap_or_else(|| "main".into());
    let environment = if branch == p["production_branch"] {
        "production"
    } else {
        "preview"
    };
    let n = cloud.deployments.len() + 1;
    let short = format!("{n:08x}");
    let subdomain = p["subdomain"].as_str().unwrap().to_string();
    let deployment = json!({
        "id": format!("{short}-0000-4000-8000-000000000000"),
        "short_id": short,
        "project_name": project,
        "environment": environment,
        "url": format!("https://{short}.{subdomain}"),
        "aliases": if environment == "preview" { json!([format!("https://{branch}.{subdomain}")]) } else { json!(null) },
        "production_branch": p["production_branch"],
        "deployment_trigger": {
            "type": "ad_hoc",
            "metadata": {
                "branch": branch,
                "commit_hash": "",
                "commit_message": fields.get("commit_message").cloned().unwrap_or_default(),
                "commit_dirty": false,
            }
        },
        "latest_stage": {"name": "deploy", "status": "success"},
    });
    cloud.deployments.push(Made {
        project,
        deployment: deployment.clone(),
        manifest,
        form: fields,
    });
    envelope(deployment)
}

async fn list_deployments(
    State(cloud): State<Shared>,
    UrlPath((account, project)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = api_auth(&headers, &account) {
        return refused;
    }
    let cloud = cloud.lock().unwrap();
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(25);
    let list: Vec<Value> = cloud
        .deployments
        .iter()
        .rev()
        .filter(|made| {
            made.project == project
                && query
                    .get("env")
                    .is_none_or(|env| made.deployment["environment"] == json!(env))
        })
        .take(per_page)
        .map(|made| made.deployment.clone())
        .collect();
    Json(json!({
        "success": true, "errors": [], "messages": [], "result": list,
        "result_info": {"page": 1, "per_page": per_page, "count": list.len(), "total_count": list.len()},
    }))
    .into_response()
}

// ---- helpers ----

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, content: &[u8]| {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    };
    write("index.html", b"<h1>home</h1>");
    write("about/index.html", b"<h1>home</h1>"); // same content, same hash
    write("css/app.css", b"body { color: red }");
    write(
        "img/logo.png",
        &[0x89, b'P', b'N', b'G', 0, 1, 2, 3, 255, 254],
    );
    write("LICENSE", b"MIT");
    write("_headers", b"/*\n  X-Frame-Options: DENY\n");
    dir
}

fn context(entity: EntityId, dir: &Path, production: bool) -> StepContext {
    StepContext {
        deploy_id: DeployId::generate(),
        entity_id: entity,
        build_id: deployd::domain::ids::BuildId::generate(),
        artifact_dir: Some(dir.to_path_buf()),
        production,
        live: production,
    }
}

fn expected_manifest(dir: &Path) -> BTreeMap<String, String> {
    [
        "index.html",
        "about/index.html",
        "css/app.css",
        "img/logo.png",
        "LICENSE",
    ]
    .into_iter()
    .map(|path| {
        let content = std::fs::read(dir.join(path)).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(content);
        (format!("/{path}"), pages_hash(&b64, path))
    })
    .collect()
}

/// The deploy's manifest, with its files in the target's store (as
/// `prepare` leaves them).
async fn prepared(target: &CloudflarePages, ctx: &StepContext) -> Manifest {
    let dir = ctx.artifact_dir.as_deref().unwrap();
    let manifest = Manifest::scan(dir).unwrap();
    for (path, entry) in &manifest.files {
        target
            .store()
            .put_artifact(dir, path, &entry.sha256)
            .await
            .unwrap();
    }
    manifest
}

async fn upload(target: &CloudflarePages, ctx: &StepContext) -> Result<usize, StepError> {
    let manifest = prepared(target, ctx).await;
    let progress = AtomicUsize::new(0);
    target
        .upload(ctx, &manifest, &|| {
            progress.fetch_add(1, Ordering::Relaxed);
        })
        .await?;
    Ok(progress.load(Ordering::Relaxed))
}

async fn promote(
    target: &CloudflarePages,
    ctx: &StepContext,
) -> Result<deployd::hosting::Urls, StepError> {
    let manifest = prepared(target, ctx).await;
    target.promote(ctx, &manifest).await
}

const UPLOAD: &str = "POST /client/v4/pages/assets/upload";
const CHECK: &str = "POST /client/v4/pages/assets/check-missing";

fn project_of(entity: &EntityId) -> String {
    format!(
        "deployd-{}",
        entity.to_string().to_lowercase().replace('_', "-")
    )
}

// ---- tests ----

#[tokio::test]
async fn a_first_deploy_uploads_every_file_and_its_deployment_maps_each_path_to_its_hash() {
    let cf = FakePages::start().await;
    let target = cf.target();
    let dir = site();
    let entity = EntityId::new(EntityKind::App);
    let ctx = context(entity, dir.path(), true);

    let progress = upload(&target, &ctx).await.unwrap();
    assert!(progress >= 1, "progress is reported");
    let expected = expected_manifest(dir.path());
    let distinct: HashSet<&String> = expected.values().collect();
    {
        let cloud = cf.cloud.lock().unwrap();
        let project = &cloud.projects[&project_of(&entity)];
        assert_eq!(project["production_branch"], "main");
        assert_eq!(cloud.assets.len(), distinct.len(), "one asset per content");
        assert_eq!(cloud.upserted.len(), distinct.len());
    }
    // Like wrangler: three buckets to start with, so even a small deploy
    // uploads in parallel; four distinct files make three requests.
    assert_eq!(cf.calls(UPLOAD), 3);

    let urls = promote(&target, &ctx).await.unwrap();
    let deployments = cf.deployments();
    assert_eq!(deployments.len(), 1);
    let Made {
        deployment,
        manifest,
        form,
        ..
    } = &deployments[0];
    assert_eq!(*manifest, expected, "each path maps to its hash");
    assert_eq!(form["branch"], "main");
    assert!(form["commit_message"].contains(&ctx.deploy_id.to_string()));
    assert_eq!(form["_headers"], "/*\n  X-Frame-Options: DENY\n");
    assert_eq!(deployment["environment"], "production");
    assert_eq!(urls.preview_url.as_deref(), deployment["url"].as_str());
    assert_eq!(
        urls.production_url,
        Some(format!("https://{}.pages.dev/", project_of(&entity)))
    );
}

#[tokio::test]
async fn a_second_deploy_of_the_same_files_uploads_nothing_new() {
    let cf = FakePages::start().await;
    let dir = site();
    let entity = EntityId::new(EntityKind::App);
    let first = context(entity, dir.path(), true);
    upload(&cf.target(), &first).await.unwrap();
    promote(&cf.target(), &first).await.unwrap();
    let uploads = cf.calls(UPLOAD);
    let assets = cf.cloud.lock().unwrap().assets.len();

    // Another worker (a new target, nothing cached) deploys the same files.
    let second = context(entity, dir.path(), true);
    let target = cf.target();
    upload(&target, &second).await.unwrap();
    assert_eq!(cf.calls(CHECK), 2, "check-missing asked each time");
    assert_eq!(
        cf.calls(UPLOAD),
        uploads,
        "nothing uploaded the second time"
    );
    assert_eq!(cf.cloud.lock().unwrap().assets.len(), assets);
    assert_eq!(
        cf.calls("POST /client/v4/accounts/0123456789abcdef0123456789abcdef/pages/projects"),
        1,
        "the project is created once and found afterwards"
    );
    promote(&target, &second).await.unwrap();
    let deployments = cf.deployments();
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[0].manifest, deployments[1].manifest);
}

#[tokio::test]
async fn a_server_error_or_a_rate_limit_is_transient_and_the_retry_succeeds() {
    let cf = FakePages::start().await;
    let target = cf.target();
    let dir = site();
    let ctx = context(EntityId::new(EntityKind::App), dir.path(), false);

    cf.fail(
        Method::POST,
        "/pages/assets/check-missing",
        500,
        8000000,
        "An unknown error occurred",
    );
    let error = upload(&target, &ctx).await.unwrap_err();
    assert!(error.transient, "{error}");
    assert!(
        error.message.contains("An unknown error occurred"),
        "{error}"
    );

    cf.fail(
        Method::POST,
        "/pages/assets/upload",
        429,
        971,
        "Please wait and consider throttling your request speed",
    );
    let error = upload(&target, &ctx).await.unwrap_err();
    assert!(error.transient, "{error}");

    // What the worker does with a transient error: run the step again.
    upload(&target, &ctx).await.unwrap();
    promote(&target, &ctx).await.unwrap();
    assert_eq!(cf.deployments()[0].manifest, expected_manifest(dir.path()));
}

#[tokio::test]
async fn an_unreachable_api_is_a_transient_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (blobs, _dir) = store();
    let target = CloudflarePages::new(
        CloudflareSettings {
            api_base: format!("http://{addr}/client/v4"),
            account_id: ACCOUNT.into(),
            api_token: API_TOKEN.into(),
        },
        blobs,
    )
    .unwrap();
    let dir = site();
    let ctx = context(EntityId::new(EntityKind::App), dir.path(), true);
    let error = upload(&target, &ctx).await.unwrap_err();
    assert!(error.transient, "{error}");
}

#[tokio::test]
async fn a_bad_request_is_permanent_and_carries_cloudflares_message() {
    let cf = FakePages::start().await;
    let target = cf.target();
    let dir = site();
    let ctx = context(EntityId::new(EntityKind::App), dir.path(), true);
    upload(&target, &ctx).await.unwrap();

    cf.fail(
        Method::POST,
        "/deployments",
        400,
        8000096,
        "The manifest is invalid: too many files",
    );
    let error = promote(&target, &ctx).await.unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(
        error
            .message
            .contains("The manifest is invalid: too many files"),
        "{error}"
    );
    assert!(cf.deployments().is_empty());
}

#[tokio::test]
async fn an_expired_upload_token_is_refreshed_once() {
    let cf = FakePages::start().await;
    let target = cf.target();
    let dir = site();
    let ctx = context(EntityId::new(EntityKind::App), dir.path(), true);
    let token_call = |project: &str| {
        format!("GET /client/v4/accounts/{ACCOUNT}/pages/projects/{project}/upload-token")
    };
    let project = project_of(&ctx.entity_id);

    // The JWT expires just before the upload request: 401, a new JWT, again.
    cf.cloud.lock().unwrap().expire_on = Some("/pages/assets/upload".into());
    upload(&target, &ctx).await.unwrap();
    // The three bucket requests all met the expired JWT; one new JWT.
    assert_eq!(cf.calls(&token_call(&project)), 2);
    assert_eq!(cf.cloud.lock().unwrap().assets.len(), 4);
    promote(&target, &ctx).await.unwrap();

    // A refreshed JWT refused again is not refreshed a second time.
    let other = context(EntityId::new(EntityKind::Function), dir.path(), true);
    cf.cloud.lock().unwrap().refuse_jwts = true;
    let error = upload(&target, &other).await.unwrap_err();
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("JWT has expired"), "{error}");
    assert_eq!(cf.calls(&token_call(&project_of(&other.entity_id))), 2);
}

#[tokio::test]
async fn a_retried_promote_finds_the_deployment_it_already_made() {
    let cf = FakePages::start().await;
    let dir = site();
    let entity = EntityId::new(EntityKind::App);
    for production in [true, false] {
        let ctx = context(entity, dir.path(), production);
        let target = cf.target();
        upload(&target, &ctx).await.unwrap();
        let first = promote(&target, &ctx).await.unwrap();
        // The worker died before recording the step: a new one runs it again.
        let again = promote(&cf.target(), &ctx).await.unwrap();
        assert_eq!(first, again);
    }
    assert_eq!(cf.deployments().len(), 2, "one deployment per deploy");
    assert_eq!(
        cf.calls(&format!(
            "POST /client/v4/accounts/{ACCOUNT}/pages/projects/{}/deployments",
            project_of(&entity)
        )),
        2
    );
}

#[tokio::test]
async fn production_deploys_go_to_main_and_previews_to_a_branch_of_their_own() {
    let cf = FakePages::start().await;
    let target = cf.target();
    let dir = site();
    let entity = EntityId::new(EntityKind::Function);

    let preview = context(entity, dir.path(), false);
    upload(&target, &preview).await.unwrap();
    let urls = promote(&target, &preview).await.unwrap();
    assert_eq!(urls.production_url, None);
    let production = context(entity, dir.path(), true);
    upload(&target, &production).await.unwrap();
    let live = promote(&target, &production).await.unwrap();
    assert_eq!(
        live.production_url,
        Some(format!("https://{}.pages.dev/", project_of(&entity)))
    );

    let deployments = cf.deployments();
    let (preview_deployment, preview_form) = (&deployments[0].deployment, &deployments[0].form);
    let branch = preview
        .deploy_id
        .to_string()
        .to_lowercase()
        .replace('_', "-");
    assert_eq!(preview_form["branch"], branch);
    assert_eq!(preview_deployment["environment"], "preview");
    assert_eq!(
        urls.preview_url.as_deref(),
        preview_deployment["url"].as_str()
    );
    let (production_deployment, production_form) =
        (&deployments[1].deployment, &deployments[1].form);
    assert_eq!(production_form["branch"], "main");
    assert_eq!(production_deployment["environment"], "production");
    assert_ne!(urls.preview_url, live.preview_url);
}

/// A site of one page with this content.
fn one_page(content: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), content).unwrap();
    dir
}

/// The manifest of the newest deployment in the production environment:
/// what `<project>.pages.dev` serves.
fn serving(cf: &FakePages, entity: &EntityId) -> BTreeMap<String, String> {
    cf.deployments()
        .into_iter()
        .rev()
        .find(|d| d.project == project_of(entity) && d.deployment["environment"] == "production")
        .map(|d| d.manifest)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_pinned_production_deploy_goes_to_its_own_branch_and_a_rollback_serves_the_earlier_files_again(
) {
    let cf = FakePages::start().await;
    let target = cf.target();
    let entity = EntityId::new(EntityKind::App);
    let (first, second) = (one_page("<h1>one</h1>"), one_page("<h1>two</h1>"));
    let production_url = Some(format!("https://{}.pages.dev/", project_of(&entity)));

    // The first production deploy goes live on main.
    let one = context(entity, first.path(), true);
    upload(&target, &one).await.unwrap();
    assert_eq!(
        promote(&target, &one).await.unwrap().production_url,
        production_url
    );
    let served_first = serving(&cf, &entity);
    assert_eq!(served_first.len(), 1);

    // A rollback pins production; a production deploy completing then
    // (an auto-deploy) keeps its production URL but must not change what
    // Pages serves: it goes to a branch of its own.
    let held = StepContext {
        live: false,
        ..context(entity, second.path(), true)
    };
    upload(&target, &held).await.unwrap();
    let urls = promote(&target, &held).await.unwrap();
    assert_eq!(urls.production_url, production_url);
    let made = cf.deployments().last().unwrap().clone();
    assert_eq!(made.form["branch"], preview_branch_of(&held));
    assert_eq!(made.deployment["environment"], "preview");
    assert_eq!(serving(&cf, &entity), served_first);

    // The second goes live (a promotion), then a rollback to the first:
    // a new deployment on main of the earlier files, none uploaded again.
    let promoted = context(entity, second.path(), true);
    upload(&target, &promoted).await.unwrap();
    promote(&target, &promoted).await.unwrap();
    assert_ne!(serving(&cf, &entity), served_first);
    let uploads = cf.calls(UPLOAD);
    let rollback = context(entity, first.path(), true);
    upload(&target, &rollback).await.unwrap();
    assert_eq!(cf.calls(UPLOAD), uploads, "a rollback uploads nothing");
    let urls = promote(&target, &rollback).await.unwrap();
    assert_eq!(urls.production_url, production_url);
    assert_eq!(cf.deployments().last().unwrap().form["branch"], "main");
    assert_eq!(serving(&cf, &entity), served_first);
}

fn preview_branch_of(ctx: &StepContext) -> String {
    ctx.deploy_id.to_string().to_lowercase().replace('_', "-")
}
