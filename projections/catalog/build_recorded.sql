INSERT INTO builds (id, workspace_id, entity_id, version_id, status, artifact_dir, commit_sha,
                    branch, error, source_event_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO NOTHING
