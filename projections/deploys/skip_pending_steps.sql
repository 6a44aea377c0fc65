-- A deploy ended: the steps that never started never will.
UPDATE deploy_steps SET status = 'skipped' WHERE deploy_id = $1 AND status = 'pending'
