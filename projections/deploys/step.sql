-- A step moved: $3 is its new status; times and error are kept when null.
UPDATE deploy_steps
SET status       = $3,
    started_at   = COALESCE($4, started_at),
    completed_at = COALESCE($5, completed_at),
    error        = COALESCE($6, error)
WHERE deploy_id = $1 AND name = $2
