-- Releases (spec/releases.md): every deploy has a target, at most one
-- deploy per entity is live, a rollback can pin production, and an entity
-- has a deploy policy. Written by the `deploys` projection (`releases`,
-- the new columns of `deploys`) and the `catalog` projection
-- (`entities.deploy_policy`); all of it rebuilds from the log.

ALTER TABLE deploys
    ADD COLUMN target        text COLLATE "C" NOT NULL DEFAULT 'production'
        CHECK (target IN ('production', 'preview')),
    ADD COLUMN live          boolean          NOT NULL DEFAULT false,
    ADD COLUMN rollback_of   text COLLATE "C",
    ADD COLUMN promoted_from text COLLATE "C",
    ADD COLUMN superseded_by text COLLATE "C";

-- Before targets, the newest completed deploy with a production URL was
-- live (what the upcast events say too, so a replay agrees).
UPDATE deploys
SET live = true
WHERE id IN (SELECT DISTINCT ON (entity_id) id
             FROM deploys
             WHERE status = 'completed' AND production_url IS NOT NULL
             ORDER BY entity_id, completed_at DESC, sequence_number DESC);

-- Never two live deploys of one entity: the projection moves `live` in
-- one transaction (off the old row, then onto the new one).
CREATE UNIQUE INDEX deploys_one_live ON deploys (entity_id) WHERE live;

-- Each entity's production: the live deploy, since when, and the rollback
-- that pins it (null: not pinned). A row appears with the entity's first
-- completed production deploy.
CREATE TABLE releases
(
    entity_id      text COLLATE "C" PRIMARY KEY,
    workspace_id   text COLLATE "C" NOT NULL,
    live_deploy_id text COLLATE "C",
    live_build_id  text COLLATE "C",
    live_since     timestamptz,
    pinned_by      text COLLATE "C",
    -- the entity's production URL, as its last production deploy was given it
    production_url text COLLATE "C"
);
INSERT INTO releases (entity_id, workspace_id, live_deploy_id, live_build_id, live_since, pinned_by,
                      production_url)
SELECT entity_id, workspace_id, id, build_id, completed_at, NULL, production_url
FROM deploys
WHERE live;

ALTER TABLE entities
    ADD COLUMN deploy_policy text COLLATE "C" NOT NULL DEFAULT 'queue'
        CHECK (deploy_policy IN ('queue', 'latest'));
