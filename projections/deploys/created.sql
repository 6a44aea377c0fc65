INSERT INTO deploys (id, workspace_id, entity_id, sequence_number, build_id, status, trigger,
                     source_event_id, metadata, created_by, created_at, event_sequence,
                     target, rollback_of, promoted_from)
VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO NOTHING
