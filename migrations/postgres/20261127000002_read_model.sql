-- The read model: relational projections of the event log (DESIGN.md
-- decision 5). Every row here can be rebuilt from `events`. Strings that are
-- compared or sorted use COLLATE "C" (byte order, as the API promises).

CREATE TABLE entities
(
    id                 text COLLATE "C" PRIMARY KEY,
    workspace_id       text COLLATE "C" NOT NULL,
    kind               text COLLATE "C" NOT NULL CHECK (kind IN ('app', 'function')),
    name               text COLLATE "C" NOT NULL,
    default_version_id text COLLATE "C",
    auto_deploy        boolean          NOT NULL,
    created_at         timestamptz      NOT NULL,
    updated_at         timestamptz      NOT NULL
);
CREATE INDEX entities_workspace ON entities (workspace_id, id);

CREATE TABLE builds
(
    id              text COLLATE "C" PRIMARY KEY,
    workspace_id    text COLLATE "C" NOT NULL,
    entity_id       text COLLATE "C" NOT NULL,
    version_id      text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL CHECK (status IN ('succeeded', 'failed')),
    artifact_dir    text COLLATE "C",
    commit_sha      text COLLATE "C",
    branch          text COLLATE "C",
    error           text COLLATE "C",
    source_event_id text COLLATE "C" NOT NULL,
    created_at      timestamptz      NOT NULL
);
CREATE INDEX builds_latest_success ON builds (entity_id, version_id, created_at DESC, id DESC)
    WHERE status = 'succeeded';
CREATE INDEX builds_workspace ON builds (workspace_id, id);

CREATE TABLE deploys
(
    id              text COLLATE "C" PRIMARY KEY,
    workspace_id    text COLLATE "C" NOT NULL,
    entity_id       text COLLATE "C" NOT NULL,
    sequence_number bigint           NOT NULL,
    build_id        text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    trigger         text COLLATE "C" NOT NULL CHECK (trigger IN ('auto', 'manual', 'rollback')),
    source_event_id text COLLATE "C",
    production_url  text COLLATE "C",
    preview_url     text COLLATE "C",
    error           text COLLATE "C",
    metadata        jsonb            NOT NULL,
    created_by      text COLLATE "C" NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    created_at      timestamptz      NOT NULL,
    cancel_reason   text COLLATE "C",
    cancelled_by    text COLLATE "C",
    cancelled_at    timestamptz,
    -- the aggregate sequence of the last event applied to this row: the
    -- projector's guard against applying an event twice
    event_sequence  bigint           NOT NULL,
    UNIQUE (entity_id, sequence_number)
);
-- the default order, and the keyset seek on it, per workspace
CREATE INDEX deploys_ws_created ON deploys (workspace_id, created_at DESC, id DESC);
CREATE INDEX deploys_ws_status_created ON deploys (workspace_id, status, created_at DESC, id DESC);
CREATE INDEX deploys_entity_created ON deploys (entity_id, created_at DESC, id DESC);
CREATE INDEX deploys_build ON deploys (build_id);

CREATE TABLE deploy_steps
(
    deploy_id    text COLLATE "C" NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    ordinal      int              NOT NULL,
    name         text COLLATE "C" NOT NULL,
    status       text COLLATE "C" NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'discarded', 'skipped')),
    started_at   timestamptz,
    completed_at timestamptz,
    error        text COLLATE "C",
    PRIMARY KEY (deploy_id, ordinal)
);
