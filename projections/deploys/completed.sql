UPDATE deploys
SET status = 'completed', completed_at = $2, production_url = $3, preview_url = $4
WHERE id = $1
