-- Uploaded builds until finalized, as in migrations/postgres/…_uploads.sql.
CREATE TABLE uploads
(
    build_id        text PRIMARY KEY,
    workspace_id    text NOT NULL,
    entity_id       text NOT NULL,
    version_id      text NOT NULL,
    branch          text,
    commit_sha      text,
    source_event_id text NOT NULL,
    files           text NOT NULL,
    status          text NOT NULL DEFAULT 'uploading'
        CHECK (status IN ('uploading', 'succeeded')),
    created_at      text NOT NULL
);
CREATE INDEX uploads_workspace ON uploads (workspace_id, status);

CREATE TABLE upload_blobs
(
    build_id text    NOT NULL REFERENCES uploads (build_id) ON DELETE CASCADE,
    sha256   text    NOT NULL,
    size     integer NOT NULL,
    PRIMARY KEY (build_id, sha256)
);
CREATE INDEX upload_blobs_sha256 ON upload_blobs (sha256);

CREATE TABLE workspace_blobs
(
    workspace_id text NOT NULL,
    sha256       text NOT NULL,
    PRIMARY KEY (workspace_id, sha256)
);
