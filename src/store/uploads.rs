//! Uploaded builds until they are finalized (`api/uploads.rs`): the
//! `uploads` row with its file list, one `upload_blobs` row per distinct
//! blob it lists, and `workspace_blobs`, the blobs each workspace has sent
//! (or had in an earlier build). Plain tables on either engine, like the
//! tokens: a build enters the log only when it is finalized.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::on_db;
use crate::store::bind::{any_of, TextList};
use crate::store::db::Db;

/// A file as an upload lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadFile {
    pub sha256: String,
    pub size: u64,
}

/// An upload as recorded.
#[derive(Debug, Clone)]
pub struct Upload {
    pub build_id: String,
    pub workspace_id: String,
    pub entity_id: String,
    pub version_id: String,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub source_event_id: String,
    /// Path → file.
    pub files: BTreeMap<String, UploadFile>,
    /// `uploading` or `succeeded`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

type UploadRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    DateTime<Utc>,
);

fn from_row(row: UploadRow) -> sqlx::Result<Upload> {
    let files = serde_json::from_str(&row.7).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Upload {
        build_id: row.0,
        workspace_id: row.1,
        entity_id: row.2,
        version_id: row.3,
        branch: row.4,
        commit_sha: row.5,
        source_event_id: row.6,
        files,
        status: row.8,
        created_at: row.9,
    })
}

/// Records a new upload with its blobs, in one transaction.
pub async fn create(db: &Db, upload: &Upload) -> sqlx::Result<()> {
    let files = serde_json::to_string(&upload.files).map_err(|e| sqlx::Error::Encode(e.into()))?;
    // Each distinct blob once, as `<sha256>:<size>` (a hash is 64 characters).
    let mut blobs: Vec<String> = upload
        .files
        .values()
        .map(|f| format!("{}:{}", f.sha256, f.size))
        .collect();
    blobs.sort();
    blobs.dedup_by(|a, b| a[..64] == b[..64]);
    let insert_blobs = db.pick(
        "INSERT INTO upload_blobs (build_id, sha256, size) \
         SELECT $1, substr(v, 1, 64), substr(v, 66)::bigint FROM unnest($2::text[]) AS v",
        "INSERT INTO upload_blobs (build_id, sha256, size) \
         SELECT $1, substr(value, 1, 64), CAST(substr(value, 66) AS INTEGER) FROM json_each($2)",
    );
    let mut tx = db.begin().await?;
    crate::on_tx!(&mut tx, c => {
        sqlx::query(
            "INSERT INTO uploads (build_id, workspace_id, entity_id, version_id, branch, \
             commit_sha, source_event_id, files, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'uploading', $9)",
        )
        .bind(&upload.build_id)
        .bind(&upload.workspace_id)
        .bind(&upload.entity_id)
        .bind(&upload.version_id)
        .bind(&upload.branch)
        .bind(&upload.commit_sha)
        .bind(&upload.source_event_id)
        .bind(&files)
        .bind(upload.created_at)
        .execute(&mut *c)
        .await?;
        sqlx::query(insert_blobs)
            .bind(&upload.build_id)
            .bind(TextList(&blobs))
            .execute(&mut *c)
            .await?;
    });
    tx.commit().await
}

/// The upload `build_id`, if it is in one of `scope`'s workspaces.
pub async fn find(db: &Db, build_id: &str, scope: &[String]) -> sqlx::Result<Option<Upload>> {
    let sql = format!(
        "SELECT build_id, workspace_id, entity_id, version_id, branch, commit_sha, \
         source_event_id, files, status, created_at FROM uploads WHERE build_id = $1 AND {}",
        any_of(db.engine(), "workspace_id", 2)
    );
    let row: Option<UploadRow> = on_db!(db, pool => sqlx::query_as(&sql)
        .bind(build_id)
        .bind(TextList(scope))
        .fetch_optional(pool)
        .await)?;
    row.map(from_row).transpose()
}

/// Those of `hashes` the workspace has sent (or had in an earlier build).
pub async fn known_blobs(db: &Db, workspace: &str, hashes: &[String]) -> sqlx::Result<Vec<String>> {
    let sql = format!(
        "SELECT sha256 FROM workspace_blobs WHERE workspace_id = $1 AND {}",
        any_of(db.engine(), "sha256", 2)
    );
    on_db!(db, pool => sqlx::query_scalar(&sql)
        .bind(workspace)
        .bind(TextList(hashes))
        .fetch_all(pool)
        .await)
}

/// The workspaces of `scope` with an uploading build that lists the blob,
/// each with the size it says the blob has.
pub async fn wanted_by(
    db: &Db,
    sha256: &str,
    scope: &[String],
) -> sqlx::Result<Vec<(String, i64)>> {
    let sql = format!(
        "SELECT DISTINCT u.workspace_id, b.size FROM upload_blobs b \
         JOIN uploads u ON u.build_id = b.build_id \
         WHERE b.sha256 = $1 AND u.status = 'uploading' AND {}",
        any_of(db.engine(), "u.workspace_id", 2)
    );
    on_db!(db, pool => sqlx::query_as(&sql)
        .bind(sha256)
        .bind(TextList(scope))
        .fetch_all(pool)
        .await)
}

/// Records that each of `workspaces` has the blob.
pub async fn record_blob(db: &Db, workspaces: &[String], sha256: &str) -> sqlx::Result<()> {
    let sql = db.pick(
        "INSERT INTO workspace_blobs (workspace_id, sha256) \
         SELECT w, $2 FROM unnest($1::text[]) AS w ON CONFLICT DO NOTHING",
        "INSERT INTO workspace_blobs (workspace_id, sha256) \
         SELECT value, $2 FROM json_each($1) WHERE true ON CONFLICT DO NOTHING",
    );
    crate::on_writer!(db.writer().await, pool => sqlx::query(sql)
        .bind(TextList(workspaces))
        .bind(sha256)
        .execute(pool)
        .await
        .map(drop))
}

/// Marks an upload finalized.
pub async fn mark_succeeded(db: &Db, build_id: &str) -> sqlx::Result<()> {
    crate::on_writer!(db.writer().await, pool => sqlx::query(
        "UPDATE uploads SET status = 'succeeded' WHERE build_id = $1",
    )
    .bind(build_id)
    .execute(pool)
    .await
    .map(drop))
}
