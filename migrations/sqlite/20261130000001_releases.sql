-- Releases (see migrations/postgres/…_releases.sql).

ALTER TABLE deploys ADD COLUMN target text NOT NULL DEFAULT 'production'
    CHECK (target IN ('production', 'preview'));
ALTER TABLE deploys ADD COLUMN live integer NOT NULL DEFAULT 0 CHECK (live IN (0, 1));
ALTER TABLE deploys ADD COLUMN rollback_of text;
ALTER TABLE deploys ADD COLUMN promoted_from text;
ALTER TABLE deploys ADD COLUMN superseded_by text;

UPDATE deploys
SET live = 1
WHERE id IN (SELECT (SELECT d.id
                     FROM deploys d
                     WHERE d.entity_id = e.entity_id
                       AND d.status = 'completed' AND d.production_url IS NOT NULL
                     ORDER BY d.completed_at DESC, d.sequence_number DESC
                     LIMIT 1)
             FROM (SELECT DISTINCT entity_id FROM deploys) e);

CREATE UNIQUE INDEX deploys_one_live ON deploys (entity_id) WHERE live;

CREATE TABLE releases
(
    entity_id      text PRIMARY KEY,
    workspace_id   text NOT NULL,
    live_deploy_id text,
    live_build_id  text,
    live_since     text,
    pinned_by      text,
    production_url text
) STRICT;
INSERT INTO releases (entity_id, workspace_id, live_deploy_id, live_build_id, live_since, pinned_by,
                      production_url)
SELECT entity_id, workspace_id, id, build_id, completed_at, NULL, production_url
FROM deploys
WHERE live;

ALTER TABLE entities ADD COLUMN deploy_policy text NOT NULL DEFAULT 'queue'
    CHECK (deploy_policy IN ('queue', 'latest'));
