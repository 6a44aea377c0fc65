-- Webhooks (spec/feeds.md): endpoints of a workspace, and one delivery row
-- per (webhook, event), made by the `webhooks` reader of the log in the
-- transaction that moves its checkpoint, then sent by the sender.

CREATE TABLE webhooks
(
    id                    text COLLATE "C" PRIMARY KEY,
    workspace_id          text COLLATE "C" NOT NULL,
    url                   text             NOT NULL,
    -- a JSON array of event types; null: every type
    events                text,
    description           text,
    secret                text             NOT NULL,
    -- the secret before the last rotation, still signed with until then
    previous_secret       text,
    previous_secret_until timestamptz,
    disabled              boolean          NOT NULL DEFAULT false,
    disabled_reason       text,
    -- the first failure since the last success
    failing_since         timestamptz,
    created_at            timestamptz      NOT NULL,
    updated_at            timestamptz      NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, id);

CREATE TABLE webhook_deliveries
(
    id              text COLLATE "C" PRIMARY KEY,
    webhook_id      text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        text COLLATE "C" NOT NULL,
    event_type      text COLLATE "C" NOT NULL,
    position        bigint           NOT NULL,
    -- the body as sent (the event as every feed sends it)
    body            text             NOT NULL,
    attempt         integer          NOT NULL DEFAULT 0,
    status          text COLLATE "C" NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    response_status integer,
    duration_ms     bigint,
    error           text,
    -- when a pending delivery is due
    next_attempt_at timestamptz,
    created_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook_id, id);
