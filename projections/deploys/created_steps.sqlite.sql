-- created_steps.sql for SQLite: the step names come as a JSON array.
INSERT INTO deploy_steps (deploy_id, ordinal, name, status)
SELECT $1, s.key + 1, s.value, 'pending'
FROM json_each($2) AS s
WHERE true
ON CONFLICT (deploy_id, ordinal) DO NOTHING
