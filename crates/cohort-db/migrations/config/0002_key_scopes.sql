-- Admin keys that can do only their job: read-only, limited to named environments, expiring
-- (rotation with an overlap sets the old key's expiry); and when each key was last used.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS read_only boolean NOT NULL DEFAULT false;
-- Admin keys only: the environments the key may reach; NULL for every environment.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS environment_ids uuid[];
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
-- Updated at most once a minute per key: a time, not a request count.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
