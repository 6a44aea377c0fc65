-- The embedded schema: the same tables as migrations/postgres/, in one
-- SQLite file (WAL mode, set on every connection by src/store/db.rs).
--
-- Types: timestamps are TEXT in sqlx's RFC 3339 rendering (UTC, `+00:00`,
-- microseconds at most), which sorts as time does, so every comparison the
-- SQL makes (keyset seeks, asOf, leases) is a text comparison of one
-- format. JSON is TEXT, booleans are 0/1, binary is BLOB. Text compares in
-- SQLite's BINARY collation: byte order, as PostgreSQL's COLLATE "C".
--
-- deployd_ulid(), deployd_now() and deployd_event_hash() are SQL functions
-- deployd registers on every connection (src/store/sqlite_fns.rs).

-- The event store. The first seven columns are sqlite-es 0.5's `events`
-- table (its primary key is what makes a concurrent append fail with the
-- optimistic-lock error); the rest make it the global log.
--
--   tx_id        always 0: kept so a log position reads (tx_id, position)
--                on both engines
--   position     the log order. SQLite has one writer at a time, so the
--                transaction that appends holds the write lock from its
--                first insert to its commit: positions are taken as
--                MAX(position) + 1 under that lock, a rolled-back append
--                gives its numbers back, and a later position is never
--                committed before an earlier one. Readers need no horizon:
--                everything below the newest committed position is final.
CREATE TABLE events
(
    aggregate_type text    NOT NULL,
    aggregate_id   text    NOT NULL,
    sequence       integer NOT NULL CHECK (sequence >= 0),
    event_type     text    NOT NULL,
    event_version  text    NOT NULL,
    payload        text    NOT NULL,
    metadata       text    NOT NULL,
    position       integer,
    tx_id          integer NOT NULL DEFAULT 0,
    recorded_at    text,
    event_id       text,
    hash           blob,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE UNIQUE INDEX events_position ON events (position);
CREATE INDEX events_log_order ON events (tx_id, position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- sqlite-es expects it; deployd never snapshots.
CREATE TABLE snapshots
(
    aggregate_type   text    NOT NULL,
    aggregate_id     text    NOT NULL,
    last_sequence    integer NOT NULL CHECK (last_sequence >= 0),
    current_snapshot integer NOT NULL CHECK (current_snapshot >= 0),
    payload          text    NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

-- An entity's deploys are numbered 1, 2, 3, ... (see the PostgreSQL
-- migration): the number is assigned in the appending transaction, under
-- the write lock.
CREATE TABLE entity_deploy_counters
(
    entity_id     text PRIMARY KEY,
    last_sequence integer NOT NULL
) STRICT;

-- Everything the store adds to an appended event, in the appending
-- transaction: the deploy number (0 means "to be assigned"; a number that
-- is already there, as in `deployd events import`, is kept and moves the
-- counter), the log position, the event id and time (kept when given), and
-- the stream's hash chain link over the event as stored.
CREATE TRIGGER events_append AFTER INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'DeployCreated without entityId')
    WHERE NEW.aggregate_type = 'Deploy' AND NEW.event_type = 'DeployCreated'
      AND json_extract(NEW.payload, '$.DeployCreated.entityId') IS NULL;

    INSERT INTO entity_deploy_counters (entity_id, last_sequence)
    SELECT json_extract(NEW.payload, '$.DeployCreated.entityId'),
           MAX(1, COALESCE(json_extract(NEW.payload, '$.DeployCreated.sequenceNumber'), 0))
    WHERE NEW.aggregate_type = 'Deploy' AND NEW.event_type = 'DeployCreated'
    ON CONFLICT (entity_id) DO UPDATE SET last_sequence =
        CASE WHEN COALESCE(json_extract(NEW.payload, '$.DeployCreated.sequenceNumber'), 0) > 0
             THEN MAX(last_sequence, excluded.last_sequence)
             ELSE last_sequence + 1 END;

    UPDATE events SET payload = json_set(payload, '$.DeployCreated.sequenceNumber',
        (SELECT c.last_sequence FROM entity_deploy_counters c
         WHERE c.entity_id = json_extract(NEW.payload, '$.DeployCreated.entityId')))
    WHERE rowid = NEW.rowid
      AND NEW.aggregate_type = 'Deploy' AND NEW.event_type = 'DeployCreated'
      AND COALESCE(json_extract(NEW.payload, '$.DeployCreated.sequenceNumber'), 0) = 0;

    UPDATE events SET position = (SELECT COALESCE(MAX(position), 0) + 1 FROM events),
                      event_id = COALESCE(NEW.event_id, 'evt_' || deployd_ulid()),
                      recorded_at = COALESCE(NEW.recorded_at, deployd_now())
    WHERE rowid = NEW.rowid;

    UPDATE events SET hash = deployd_event_hash(
        (SELECT p.hash FROM events p
         WHERE p.aggregate_type = NEW.aggregate_type AND p.aggregate_id = NEW.aggregate_id
           AND p.sequence = NEW.sequence - 1),
        aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
        event_id)
    WHERE rowid = NEW.rowid;
END;

-- One row per catch-up reader: the last position it has applied, written
-- in the same transaction as its effects. (`tx_id` is always 0 here: the
-- log needs no transaction order in SQLite.)
CREATE TABLE checkpoints
(
    name       text PRIMARY KEY,
    tx_id      integer NOT NULL DEFAULT 0,
    position   integer NOT NULL DEFAULT 0,
    updated_at text
) STRICT;

-- The read model (see migrations/postgres/…_read_model.sql).
CREATE TABLE entities
(
    id                 text PRIMARY KEY,
    workspace_id       text    NOT NULL,
    kind               text    NOT NULL CHECK (kind IN ('app', 'function')),
    name               text    NOT NULL,
    default_version_id text,
    auto_deploy        integer NOT NULL,
    created_at         text    NOT NULL,
    updated_at         text    NOT NULL
) STRICT;
CREATE INDEX entities_workspace ON entities (workspace_id, id);

CREATE TABLE builds
(
    id              text PRIMARY KEY,
    workspace_id    text NOT NULL,
    entity_id       text NOT NULL,
    version_id      text NOT NULL,
    status          text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    artifact_dir    text,
    commit_sha      text,
    branch          text,
    error           text,
    source_event_id text NOT NULL,
    created_at      text NOT NULL
) STRICT;
CREATE INDEX builds_latest_success ON builds (entity_id, version_id, created_at DESC, id DESC)
    WHERE status = 'succeeded';
CREATE INDEX builds_workspace ON builds (workspace_id, id);

CREATE TABLE deploys
(
    id              text PRIMARY KEY,
    workspace_id    text    NOT NULL,
    entity_id       text    NOT NULL,
    sequence_number integer NOT NULL,
    build_id        text    NOT NULL,
    status          text    NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    trigger         text    NOT NULL CHECK (trigger IN ('auto', 'manual', 'rollback')),
    source_event_id text,
    production_url  text,
    preview_url     text,
    error           text,
    metadata        text    NOT NULL,
    created_by      text    NOT NULL,
    started_at      text,
    completed_at    text,
    created_at      text    NOT NULL,
    cancel_reason   text,
    cancelled_by    text,
    cancelled_at    text,
    event_sequence  integer NOT NULL,
    UNIQUE (entity_id, sequence_number)
) STRICT;
CREATE INDEX deploys_ws_created ON deploys (workspace_id, created_at DESC, id DESC);
CREATE INDEX deploys_ws_status_created ON deploys (workspace_id, status, created_at DESC, id DESC);
CREATE INDEX deploys_entity_created ON deploys (entity_id, created_at DESC, id DESC);
CREATE INDEX deploys_build ON deploys (build_id);
CREATE INDEX deploys_ws_sequence ON deploys (workspace_id, sequence_number DESC, id DESC);
CREATE INDEX deploys_created ON deploys (created_at DESC, id DESC);
CREATE INDEX deploys_status_created ON deploys (status, created_at DESC, id DESC);
CREATE INDEX deploys_ws_status ON deploys (workspace_id, status);

CREATE TABLE deploy_steps
(
    deploy_id    text    NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    name         text    NOT NULL,
    status       text    NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'discarded', 'skipped')),
    started_at   text,
    completed_at text,
    error        text,
    PRIMARY KEY (deploy_id, ordinal)
) STRICT;

-- Tokens, idempotency records and server secrets
-- (see migrations/postgres/…_access.sql). `workspace_ids` is a JSON array.
CREATE TABLE api_tokens
(
    id            text PRIMARY KEY,
    name          text NOT NULL,
    secret_sha256 blob NOT NULL UNIQUE,
    workspace_ids text NOT NULL CHECK (json_array_length(workspace_ids) > 0),
    created_at    text NOT NULL DEFAULT (deployd_now()),
    revoked_at    text
) STRICT;

CREATE TABLE idempotency_keys
(
    principal      text NOT NULL,
    key            text NOT NULL,
    request_sha256 blob NOT NULL,
    resource_id    text NOT NULL,
    status         integer,
    response       text,
    lease_until    text NOT NULL,
    created_at     text NOT NULL DEFAULT (deployd_now()),
    PRIMARY KEY (principal, key)
) STRICT;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE server_secrets
(
    name  text PRIMARY KEY,
    value blob NOT NULL
) STRICT;
INSERT INTO server_secrets (name, value) VALUES ('cursor_hmac', randomblob(32));
