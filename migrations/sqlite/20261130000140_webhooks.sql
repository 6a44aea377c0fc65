-- Webhooks (spec/feeds.md), as in migrations/postgres/: endpoints of a
-- workspace, and one delivery row per (webhook, event).

CREATE TABLE webhooks
(
    id                    text PRIMARY KEY,
    workspace_id          text    NOT NULL,
    url                   text    NOT NULL,
    events                text,
    description           text,
    secret                text    NOT NULL,
    previous_secret       text,
    previous_secret_until text,
    disabled              integer NOT NULL DEFAULT 0,
    disabled_reason       text,
    failing_since         text,
    created_at            text    NOT NULL,
    updated_at            text    NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, id);

CREATE TABLE webhook_deliveries
(
    id              text PRIMARY KEY,
    webhook_id      text    NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        text    NOT NULL,
    event_type      text    NOT NULL,
    position        integer NOT NULL,
    body            text    NOT NULL,
    attempt         integer NOT NULL DEFAULT 0,
    status          text    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    response_status integer,
    duration_ms     integer,
    error           text,
    next_attempt_at text,
    created_at      text    NOT NULL,
    updated_at      text    NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook_id, id);
