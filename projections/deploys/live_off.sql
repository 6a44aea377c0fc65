-- Deploy $1 goes live: its entity's live deploy stops being live. Runs
-- right before live_on.sql in the same transaction, so no reader sees two
-- live deploys of one entity, or none between two.
UPDATE deploys
SET live = false
WHERE entity_id = (SELECT d.entity_id FROM deploys d WHERE d.id = $1)
  AND live
  AND id <> $1
