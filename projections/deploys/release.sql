-- A production deploy $1 completed: its entity's release row. $2: it went
-- live (then it is the live deploy since $3); $4: what pins production now.
-- The production URL is the entity's, the same on every production deploy.
INSERT INTO releases (entity_id, workspace_id, live_deploy_id, live_build_id, live_since, pinned_by,
                      production_url)
SELECT d.entity_id, d.workspace_id,
       CASE WHEN $2 THEN d.id END, CASE WHEN $2 THEN d.build_id END, CASE WHEN $2 THEN $3 END,
       $4, d.production_url
FROM deploys d
WHERE d.id = $1
ON CONFLICT (entity_id) DO UPDATE
SET live_deploy_id = CASE WHEN $2 THEN EXCLUDED.live_deploy_id ELSE releases.live_deploy_id END,
    live_build_id  = CASE WHEN $2 THEN EXCLUDED.live_build_id ELSE releases.live_build_id END,
    live_since     = CASE WHEN $2 THEN EXCLUDED.live_since ELSE releases.live_since END,
    pinned_by      = EXCLUDED.pinned_by,
    production_url = COALESCE(EXCLUDED.production_url, releases.production_url)
