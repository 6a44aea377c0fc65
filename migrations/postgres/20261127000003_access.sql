-- Bearer tokens and idempotency records: configuration and request
-- bookkeeping, not domain history, so they are plain tables.

CREATE TABLE api_tokens
(
    id            text COLLATE "C" PRIMARY KEY,
    name          text COLLATE "C" NOT NULL,
    -- SHA-256 of the secret; the secret itself is shown once and never stored
    secret_sha256 bytea            NOT NULL UNIQUE,
    workspace_ids text[] COLLATE "C" NOT NULL CHECK (cardinality(workspace_ids) > 0),
    created_at    timestamptz      NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- One row per (principal, Idempotency-Key). `status` is null while the first
-- request is in flight; `lease_until` lets a retry take over a request whose
-- server died before answering.
CREATE TABLE idempotency_keys
(
    principal     text COLLATE "C" NOT NULL,
    key           text COLLATE "C" NOT NULL,
    request_sha256 bytea           NOT NULL,
    resource_id   text COLLATE "C" NOT NULL,
    status        smallint,
    response      jsonb,
    lease_until   timestamptz      NOT NULL,
    created_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Secrets shared by every server of an installation, made once here.
-- `cursor_hmac` signs list cursors (244 random bits from two v4 UUIDs).
CREATE TABLE server_secrets
(
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
INSERT INTO server_secrets (name, value)
VALUES ('cursor_hmac', uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
