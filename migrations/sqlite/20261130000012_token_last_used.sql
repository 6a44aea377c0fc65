-- When each token was last used (see migrations/postgres/…_token_last_used.sql).
ALTER TABLE api_tokens ADD COLUMN last_used_at text;
