UPDATE deploys
SET status = 'cancelled', completed_at = $2, cancelled_at = $2, cancel_reason = $3, cancelled_by = $4,
    superseded_by = $5
WHERE id = $1
