INSERT INTO entities (id, workspace_id, kind, name, default_version_id, auto_deploy, created_at, updated_at,
                      deploy_policy)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
ON CONFLICT (id) DO UPDATE
SET kind = EXCLUDED.kind,
    name = EXCLUDED.name,
    default_version_id = EXCLUDED.default_version_id,
    auto_deploy = EXCLUDED.auto_deploy,
    updated_at = EXCLUDED.updated_at,
    deploy_policy = EXCLUDED.deploy_policy
