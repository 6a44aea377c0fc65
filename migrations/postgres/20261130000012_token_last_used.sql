-- When each token was last used (recorded at most once a minute per token
-- per server), for `deployd token list`.
ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
