-- Builds uploaded through the API (`POST /api/builds`) until they are
-- finalized: the files each lists, and which blobs each workspace has sent
-- (so `missing` and `PUT /api/blobs` answer per workspace, never telling
-- one workspace what another stored). Bookkeeping, not history: a build
-- becomes history (`BuildSucceeded`) at finalize.
CREATE TABLE uploads
(
    build_id        text PRIMARY KEY,
    workspace_id    text        NOT NULL,
    entity_id       text        NOT NULL,
    version_id      text        NOT NULL,
    branch          text,
    commit_sha      text,
    -- the id of the BuildSucceeded document finalize records (so a
    -- repeated finalize records nothing new and auto-deploys once)
    source_event_id text        NOT NULL,
    -- {"<path>": {"sha256": …, "size": …}, …}
    files           text        NOT NULL,
    status          text        NOT NULL DEFAULT 'uploading'
        CHECK (status IN ('uploading', 'succeeded')),
    created_at      timestamptz NOT NULL
);
CREATE INDEX uploads_workspace ON uploads (workspace_id, status);

CREATE TABLE upload_blobs
(
    build_id text   NOT NULL REFERENCES uploads (build_id) ON DELETE CASCADE,
    sha256   text   NOT NULL,
    size     bigint NOT NULL,
    PRIMARY KEY (build_id, sha256)
);
CREATE INDEX upload_blobs_sha256 ON upload_blobs (sha256);

CREATE TABLE workspace_blobs
(
    workspace_id text NOT NULL,
    sha256       text NOT NULL,
    PRIMARY KEY (workspace_id, sha256)
);
