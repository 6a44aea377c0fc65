UPDATE deploys SET status = 'failed', completed_at = $2, error = $3 WHERE id = $1
