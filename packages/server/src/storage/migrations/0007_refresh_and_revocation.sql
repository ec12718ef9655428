-- Refresh-token families (rotation with reuse detection, RFC 9700 section 4.14.2) and the
-- revocation of access tokens (per-token denylist and per-user token versions).

-- One family per grant (login, authorization code, device flow): every rotation adds a token
-- to it, and revoking the family invalidates every token it ever had.
CREATE TABLE refresh_families (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  client_id text NOT NULL,
  session_id uuid REFERENCES sessions (id) ON DELETE SET NULL,
  scope text[] NOT NULL DEFAULT '{}',
  audience text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Rotation never extends this: the family dies here whatever happens.
  absolute_expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text
);
CREATE INDEX refresh_families_user_idx ON refresh_families (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_families_session_idx ON refresh_families (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX refresh_families_expiry_idx ON refresh_families (absolute_expires_at);

-- Only the SHA-256 of each token is kept. Consumed rows stay until the family is purged:
-- a consumed token presented again is how theft is detected.
CREATE TABLE refresh_tokens (
  token_hash bytea PRIMARY KEY,
  family_id uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  idle_expires_at timestamptz NOT NULL,
  consumed_at timestamptz,
  replaced_by bytea
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

-- Access tokens revoked one by one (by jti) until they expire anyway. user_id is null for
-- tokens without a user (client credentials).
CREATE TABLE revoked_access_tokens (
  jti text PRIMARY KEY,
  user_id uuid,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_access_tokens_expiry_idx ON revoked_access_tokens (expires_at);

-- Access tokens carry `ver`, the user's version at issuance; bumping it revokes every older token.
CREATE TABLE user_token_versions (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  version integer NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The change feed every node (and the HTTP feed) follows. Writers insert under an advisory
-- lock, so ids are assigned in commit order and `WHERE id > last seen` never skips an event.
CREATE TABLE revocation_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('token', 'user')),
  jti text,
  user_id uuid,
  version integer,
  expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (
    (kind = 'token' AND jti IS NOT NULL AND expires_at IS NOT NULL)
    OR (kind = 'user' AND user_id IS NOT NULL AND version IS NOT NULL)
  )
);
