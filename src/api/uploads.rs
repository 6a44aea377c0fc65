//! Builds uploaded through the API, as `vercel deploy` or `wrangler pages
//! deploy` send them: the client lists its files, sends only the blobs this
//! workspace has not sent before, and finalizes.
//!
//! 1. `POST /api/builds {entityId, versionId?, branch?, commitSha?, files}`
//!    records the upload (`store::uploads`) and answers which blobs are
//!    `missing`.
//! 2. `PUT /api/blobs/{sha256}` streams one file into the artifact store,
//!    hashed on the way (a wrong hash stores nothing). Only a blob that one
//!    of the caller's uploading builds lists is taken, so no workspace can
//!    learn what another has stored.
//! 3. `POST /api/builds/{id}/finalize` keeps the build's manifest in the
//!    store and records the build through the catalog's own handler, as an
//!    upstream `build.succeeded` would be: the same `BuildSucceeded` event,
//!    the same auto-deploy, the same read model.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::auth::RequestId;
use crate::api::deploys::{json_object, unknown_fields};
use crate::api::problem::{body_problem, FieldError, Problem};
use crate::api::AppState;
use crate::catalog::{CatalogDocument, Rejection};
use crate::domain::catalog::{BuildEvent, BuildRecorded};
use crate::domain::ids::{BuildId, DeployId, EntityId, EventId, VersionId};
use crate::hosting::store::{is_sha256, PutError};
use crate::hosting::{Manifest, ManifestEntry};
use crate::read_model::catalog_pages::{self, BuildView};
use crate::store::tokens::Caller;
use crate::store::uploads::{self, Upload, UploadFile};

/// Longest path of a file in an upload, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest `branch` or `commitSha`.
const MAX_LABEL_BYTES: usize = 256;
/// Largest `_redirects` read at finalize (for the single-page-app rule).
const MAX_REDIRECTS_BYTES: u64 = 64 * 1024;

/// `POST /api/builds`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // documents the body, which is parsed by hand
pub struct CreateBuildRequest {
    /// The app or function (`app_…`, `fn_…`) of one of the caller's workspaces.
    entity_id: String,
    /// The version built (`ver_…`); default: the entity's default version.
    version_id: Option<String>,
    branch: Option<String>,
    commit_sha: Option<String>,
    /// Every file of the build (at most `DEPLOYD_MAX_BUILD_FILES`).
    files: Vec<UploadFileRequest>,
}

/// One file of an upload.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadFileRequest {
    /// Relative, `/`-separated (`assets/app.js`); `./` and repeated `/` are
    /// normalised away; absolute paths, `..`, `\` and NUL are refused.
    path: String,
    /// Hex SHA-256 of the content.
    sha256: String,
    /// Bytes (at most `DEPLOYD_MAX_BLOB_BYTES`).
    size: u64,
}

/// The answer to `POST /api/builds`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBuildResponse {
    /// The new build (`bld_…`).
    pub id: String,
    /// `uploading` until finalized.
    pub status: String,
    /// The blobs to `PUT /api/blobs/{sha256}` before finalizing (each once).
    pub missing: Vec<String>,
}

/// The answer to `PUT /api/blobs/{sha256}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BlobStored {
    pub sha256: String,
    pub size: u64,
}

/// The answer to `POST /api/builds/{id}/finalize`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalizedBuild {
    #[serde(flatten)]
    pub build: BuildView,
    /// The deploy the build started (`dep_…`), when its entity deploys
    /// builds of its default version automatically; otherwise null.
    pub auto_deploy_id: Option<String>,
}

/// `{sha256}` in a blob's path.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BlobPath {
    /// Hex SHA-256 of the blob (64 lowercase digits).
    pub sha256: String,
}

/// A path of an upload, normalised: `./` segments and repeated `/` dropped.
/// `Err`: why it is refused.
pub fn normalize_upload_path(path: &str) -> Result<String, &'static str> {
    if path.contains('\0') {
        return Err("contains NUL");
    }
    if path.contains('\\') {
        return Err("contains a backslash; separate directories with /");
    }
    if path.starts_with('/') {
        return Err("is absolute; send paths relative to the build's directory");
    }
    if path.len() > MAX_PATH_BYTES {
        return Err("is longer than 1024 bytes");
    }
    let mut parts = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("steps up with `..`"),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err("names no file");
    }
    if path.ends_with('/') {
        return Err("ends with /: a directory, not a file");
    }
    Ok(parts.join("/"))
}

fn optional_label(
    map: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match map.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if let Some(issue) = crate::domain::json::string_issue(s) {
                errors.push(FieldError::new(format!("body/{field}"), issue));
                None
            } else if s.len() > MAX_LABEL_BYTES || s.is_empty() {
                errors.push(FieldError::new(
                    format!("body/{field}"),
                    format!("1 to {MAX_LABEL_BYTES} bytes"),
                ));
                None
            } else {
                Some(s.clone())
            }
        }
        Some(_) => {
            errors.push(FieldError::new(
                format!("body/{field}"),
                "expected a string",
            ));
            None
        }
    }
}

/// A parsed `POST /api/builds` body.
struct NewBuild {
    entity_id: EntityId,
    version_id: Option<VersionId>,
    branch: Option<String>,
    commit_sha: Option<String>,
    files: BTreeMap<String, UploadFile>,
}

fn parse_create(map: &Map<String, Value>, state: &AppState) -> Result<NewBuild, Problem> {
    let settings = &state.settings;
    let mut errors = unknown_fields(
        map,
        &["entityId", "versionId", "branch", "commitSha", "files"],
    );
    let entity_id = match map.get("entityId") {
        Some(Value::String(s)) => match s.parse::<EntityId>() {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(FieldError::new("body/entityId", e.to_string()));
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(FieldError::new("body/entityId", "required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("body/entityId", "expected a string"));
            None
        }
    };
    let version_id = match map.get("versionId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.parse::<VersionId>() {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(FieldError::new("body/versionId", e.to_string()));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new("body/versionId", "expected a string"));
            None
        }
    };
    let branch = optional_label(map, "branch", &mut errors);
    let commit_sha = optional_label(map, "commitSha", &mut errors);
    let mut files = BTreeMap::new();
    let mut oversized = Vec::new();
    match map.get("files") {
        Some(Value::Array(items)) if items.len() > settings.max_build_files => {
            errors.push(FieldError::new(
                "body/files",
                format!(
                    "{} files; a build holds at most {} (DEPLOYD_MAX_BUILD_FILES)",
                    items.len(),
                    settings.max_build_files
                ),
            ));
        }
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push(FieldError::new(
                "body/files",
                "a build holds at least one file",
            ));
        }
        Some(Value::Array(items)) => {
            let mut first_at: BTreeMap<String, usize> = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("body/files/{i}");
                let Value::Object(item) = item else {
                    errors.push(FieldError::new(
                        at,
                        "expected an object {path, sha256, size}",
                    ));
                    continue;
                };
                for key in item.keys() {
                    if !["path", "sha256", "size"].contains(&key.as_str()) {
                        errors.push(FieldError::new(
                            format!("{at}/{key}"),
                            "unknown field; expected one of path, sha256, size",
                        ));
                    }
                }
                let path = match item.get("path") {
                    Some(Value::String(p)) => match normalize_upload_path(p) {
                        Ok(path) => Some(path),
                        Err(why) => {
                            errors.push(FieldError::new(
                                format!("{at}/path"),
                                format!("{p:?} {why}"),
                            ));
                            None
                        }
                    },
                    _ => {
                        errors.push(FieldError::new(format!("{at}/path"), "expected a string"));
                        None
                    }
                };
                let sha256 = match item.get("sha256") {
                    Some(Value::String(s)) if is_sha256(&s.to_ascii_lowercase()) => {
                        Some(s.to_ascii_lowercase())
                    }
                    _ => {
                        errors.push(FieldError::new(
                            format!("{at}/sha256"),
                            "expected the hex SHA-256 of the content (64 digits)",
                        ));
                        None
                    }
                };
                let size = match item.get("size").and_then(Value::as_u64) {
                    Some(size) if size > settings.max_blob_bytes => {
                        oversized.push(FieldError::new(
                            format!("{at}/size"),
                            format!(
                                "{size} bytes; a file may have at most {} (DEPLOYD_MAX_BLOB_BYTES)",
                                settings.max_blob_bytes
                            ),
                        ));
                        None
                    }
                    Some(size) => Some(size),
                    None => {
                        errors.push(FieldError::new(
                            format!("{at}/size"),
                            "expected the size in bytes (an integer ≥ 0)",
                        ));
                        None
                    }
                };
                let (Some(path), Some(sha256), Some(size)) = (path, sha256, size) else {
                    continue;
                };
                if let Some(first) = first_at.get(&path) {
                    errors.push(FieldError::new(
                        format!("{at}/path"),
                        format!("{path:?} is listed twice (also files/{first})"),
                    ));
                    continue;
                }
                first_at.insert(path.clone(), i);
                files.insert(path, UploadFile { sha256, size });
            }
        }
        None | Some(Value::Null) => errors.push(FieldError::new("body/files", "required")),
        Some(_) => errors.push(FieldError::new(
            "body/files",
            "expected an array of {path, sha256, size}",
        )),
    }
    if !errors.is_empty() {
        errors.extend(oversized);
        return Err(Problem::invalid(errors));
    }
    if !oversized.is_empty() {
        let mut problem = Problem::too_large(match oversized.as_slice() {
            [one] => format!("{}: {}", one.pointer, one.message),
            more => format!("{} files are larger than the server takes", more.len()),
        });
        problem.errors = oversized;
        return Err(problem);
    }
    Ok(NewBuild {
        entity_id: entity_id.expect("no errors"),
        version_id,
        branch,
        commit_sha,
        files,
    })
}

/// POST /api/builds
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(body_problem)?;
    let map = json_object(&headers, &body, false)?;
    let new = parse_create(&map, &state)?;
    let scope = caller.workspace_strings();
    let entity = catalog_pages::entity(&state.db, &new.entity_id.to_string(), &scope)
        .await?
        .ok_or_else(|| Problem::not_found(format!("entity {} not found", new.entity_id)))?;
    let version_id = match new.version_id {
        Some(v) => v.to_string(),
        None => entity.default_version_id.clone().ok_or_else(|| {
            Problem::unprocessable(format!(
                "entity {} has no default version; send versionId",
                entity.id
            ))
        })?,
    };
    let hashes: Vec<String> = new
        .files
        .values()
        .map(|f| f.sha256.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let known: BTreeSet<String> = uploads::known_blobs(&state.db, &entity.workspace_id, &hashes)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<String> = hashes.into_iter().filter(|h| !known.contains(h)).collect();
    let build_id = BuildId::generate();
    uploads::create(
        &state.db,
        &Upload {
            build_id: build_id.to_string(),
            workspace_id: entity.workspace_id.clone(),
            entity_id: entity.id.clone(),
            version_id,
            branch: new.branch,
            commit_sha: new.commit_sha,
            source_event_id: EventId::generate().to_string(),
            files: new.files,
            status: "uploading".into(),
            created_at: crate::domain::time::now(),
        },
    )
    .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(CreateBuildResponse {
            id: build_id.to_string(),
            status: "uploading".into(),
            missing,
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/builds/{build_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// PUT /api/blobs/{sha256}
pub async fn put_blob(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    Path(BlobPath { sha256 }): Path<BlobPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BlobStored>, Problem> {
    let not_found = || {
        Problem::not_found(format!(
            "no uploading build of yours lists blob {sha256}; POST /api/builds first"
        ))
    };
    if !is_sha256(&sha256) {
        return Err(not_found());
    }
    let wanted = uploads::wanted_by(&state.db, &sha256, &caller.workspace_strings()).await?;
    if wanted.is_empty() {
        return Err(not_found());
    }
    let limit = state.settings.max_blob_bytes;
    let too_large = || {
        Problem::too_large(format!(
            "a file may have at most {limit} bytes (DEPLOYD_MAX_BLOB_BYTES)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    let size = match state.store.put_verified(&sha256, stream, limit).await {
        Ok(size) => size,
        Err(PutError::Mismatch { actual, .. }) => {
            return Err(Problem::invalid_field(
                "body",
                format!("the bytes hash to {actual}, not {sha256}; nothing was stored"),
            ))
        }
        Err(PutError::TooLarge { .. }) => return Err(too_large()),
        Err(PutError::Source(e)) => {
            return Err(Problem::invalid_field(
                "body",
                format!("could not be read: {e}; nothing was stored"),
            ))
        }
        Err(PutError::Store(e)) => return Err(Problem::internal(format!("{e:#}"))),
    };
    if !wanted.iter().any(|(_, listed)| *listed as u64 == size) {
        return Err(Problem::invalid_field(
            "body",
            format!(
                "{size} bytes, but the build lists {} for this blob",
                wanted[0].1
            ),
        ));
    }
    let workspaces: Vec<String> = wanted
        .into_iter()
        .filter(|(_, listed)| *listed as u64 == size)
        .map(|(ws, _)| ws)
        .collect();
    uploads::record_blob(&state.db, &workspaces, &sha256).await?;
    Ok(Json(BlobStored { sha256, size }))
}

/// `{id}` in a build's path.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FinalizePath {
    /// The build's id, `bld_…`.
    pub id: String,
}

/// The blobs of `upload` its workspace has not sent, or the store lacks.
async fn still_missing(state: &AppState, upload: &Upload) -> Result<Vec<String>, Problem> {
    let hashes: Vec<String> = upload
        .files
        .values()
        .map(|f| f.sha256.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let known: BTreeSet<String> = uploads::known_blobs(&state.db, &upload.workspace_id, &hashes)
        .await?
        .into_iter()
        .collect();
    let (sent, mut missing): (Vec<String>, Vec<String>) =
        hashes.into_iter().partition(|h| known.contains(h));
    missing.extend(state.store.missing(sent).await?);
    missing.sort();
    Ok(missing)
}

/// The manifest of an upload: content types by extension, and the
/// single-page-app rule when its `_redirects` holds it.
async fn manifest_of(state: &AppState, upload: &Upload) -> Result<Manifest, Problem> {
    let files = upload
        .files
        .iter()
        .map(|(path, file)| {
            let content_type = mime_guess::from_path(path)
                .first_or_octet_stream()
                .essence_str()
                .to_string();
            (
                path.clone(),
                ManifestEntry {
                    sha256: file.sha256.clone(),
                    size: file.size,
                    content_type,
                },
            )
        })
        .collect();
    let spa_fallback = match upload.files.get("_redirects") {
        Some(file) if file.size <= MAX_REDIRECTS_BYTES => state
            .store
            .read_small(&file.sha256, MAX_REDIRECTS_BYTES)
            .await?
            .is_some_and(|bytes| crate::hosting::spa_rule(&String::from_utf8_lossy(&bytes))),
        _ => false,
    };
    Ok(Manifest {
        files,
        spa_fallback,
    })
}

/// POST /api/builds/{id}/finalize
pub async fn finalize(
    State(state): State<AppState>,
    caller: Caller,
    _: crate::api::params::Strict<crate::api::params::NoQuery>,
    request_id: RequestId,
    Path(FinalizePath { id }): Path<FinalizePath>,
) -> Result<Json<FinalizedBuild>, Problem> {
    let not_found = || Problem::not_found(format!("build {id} not found"));
    let build_id = id.parse::<BuildId>().map_err(|_| not_found())?;
    let scope = caller.workspace_strings();
    let upload = uploads::find(&state.db, &build_id.to_string(), &scope)
        .await?
        .ok_or_else(not_found)?;
    if upload.status == "uploading" {
        let missing = still_missing(&state, &upload).await?;
        if !missing.is_empty() {
            let mut problem = Problem::unprocessable(format!(
                "{} blobs have not been uploaded yet (PUT /api/blobs/{{sha256}} each, then finalize again)",
                missing.len()
            ));
            problem.extensions.push(("missing", missing.into()));
            return Err(problem);
        }
    }
    // Again after a finalize that recorded the build: the same document
    // (same eventId) records nothing new, and the same auto-deploy id.
    let manifest = manifest_of(&state, &upload).await?;
    state
        .store
        .save_build_manifest(&build_id, &manifest)
        .await?;
    let parse =
        |what: &str, e: String| Problem::internal(format!("stored upload {id}: {what}: {e}"));
    let recorded = BuildRecorded {
        workspace_id: upload
            .workspace_id
            .parse()
            .map_err(|e| parse("workspace", format!("{e}")))?,
        build_id,
        entity_id: upload
            .entity_id
            .parse()
            .map_err(|e| parse("entity", format!("{e}")))?,
        version_id: upload
            .version_id
            .parse()
            .map_err(|e| parse("version", format!("{e}")))?,
        commit_sha: upload.commit_sha.clone(),
        branch: upload.branch.clone(),
        source_event_id: upload
            .source_event_id
            .parse()
            .map_err(|e: <EventId as std::str::FromStr>::Err| parse("event", format!("{e}")))?,
        occurred_at: upload.created_at,
        artifact_dir: None,
        error: None,
    };
    let auto_deploy = DeployId::from_ulid(recorded.source_event_id.ulid());
    let head = state
        .catalog
        .handle(
            CatalogDocument::Build(BuildEvent::BuildSucceeded(recorded)),
            &request_id.0,
        )
        .await
        .map_err(|rejection| match rejection {
            Rejection::Invalid(errors) => {
                let mut p = Problem::unprocessable(
                    errors
                        .iter()
                        .map(|e| e.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                p.errors = errors;
                p
            }
            Rejection::Failed(e) => Problem::internal(format!("{e:#}")),
        })?;
    uploads::mark_succeeded(&state.db, &build_id.to_string()).await?;
    state.catalog.make_visible(head).await?;
    let build = catalog_pages::build(&state.db, &build_id.to_string(), &scope)
        .await?
        .ok_or_else(|| Problem::internal(format!("build {id} was recorded but is not shown")))?;
    let started = crate::store::log::stream_head(&state.db, "Deploy", &auto_deploy.to_string())
        .await?
        .is_some();
    Ok(Json(FinalizedBuild {
        build,
        auto_deploy_id: started.then(|| auto_deploy.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_paths_are_normalised_or_refused() {
        assert_eq!(normalize_upload_path("index.html").unwrap(), "index.html");
        assert_eq!(normalize_upload_path("./a//b/./c.js").unwrap(), "a/b/c.js");
        for bad in ["/etc/passwd", "a/../b", "..", "a\0b", "a\\b", "", ".", "a/"] {
            assert!(normalize_upload_path(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_upload_path(&"a".repeat(MAX_PATH_BYTES + 1)).is_err());
    }
}
