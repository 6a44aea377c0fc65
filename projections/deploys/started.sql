UPDATE deploys SET status = 'running', started_at = $2 WHERE id = $1
