INSERT INTO deploy_steps (deploy_id, ordinal, name, status)
SELECT $1, s.ordinal, s.name, 'pending'
FROM unnest($2::text[]) WITH ORDINALITY AS s(name, ordinal)
ON CONFLICT (deploy_id, ordinal) DO NOTHING
