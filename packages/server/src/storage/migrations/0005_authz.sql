-- Role-based access control: roles hold permissions (see src/authz/permissions.ts for the
-- language), users hold roles. A user's effective permissions are the union over their roles.
CREATE TABLE roles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Role names appear in token claims: a short lower-case slug.
  name text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
  description text NOT NULL DEFAULT '',
  -- Builtin roles are seeded here; they cannot be deleted or renamed.
  builtin boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_permissions (
  role_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
  -- Validated by the service; the length bound matches MAX_PERMISSION_LENGTH.
  permission text NOT NULL CHECK (char_length(permission) BETWEEN 1 AND 258),
  PRIMARY KEY (role_id, permission)
);

CREATE TABLE user_roles (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
  granted_at timestamptz NOT NULL DEFAULT now(),
  -- Who granted it; no foreign key: a grant outlives the account that made it (the audit trail
  -- keeps the full story), and null means the system (seed, bootstrap).
  granted_by uuid,
  PRIMARY KEY (user_id, role_id)
);
-- "Who holds this role": role changes look up the users whose live tokens must be revoked.
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

WITH seeded AS (
  INSERT INTO roles (name, description, builtin) VALUES
    ('admin', 'Full access to everything, including administration', true),
    ('premium', 'Model access including heavy inference; manages own API keys', true),
    ('user', 'Model access and inference; manages own API keys', true)
  RETURNING id, name
)
INSERT INTO role_permissions (role_id, permission)
SELECT seeded.id, grants.permission
FROM seeded
JOIN (VALUES
  ('admin', '*'),
  ('premium', 'models:read'),
  ('premium', 'inference:run'),
  ('premium', 'inference:heavy'),
  ('premium', 'keys:manage:own'),
  ('user', 'models:read'),
  ('user', 'inference:run'),
  ('user', 'keys:manage:own')
) AS grants (role, permission) ON grants.role = seeded.name;
