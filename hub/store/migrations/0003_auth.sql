-- Users, sessions and login attempts for the API and the console.
-- Passwords are argon2 hashes; session and API tokens are stored only as SHA-256
-- digests, so a leaked table does not leak usable credentials.

CREATE TABLE IF NOT EXISTS users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin', 'operator', 'grid_worker', 'viewer')),
    -- Root of the grid subtree this user may see; a code is a prefix of all beneath it.
    scope_code      text NOT NULL CHECK (scope_code ~ '^\d{6}(\d{3}(\d{3}(\d{2}(\d{2})?)?)?)?$'),
    person_id       text,          -- the site's people[].id, for grid workers
    display_name    text NOT NULL DEFAULT '',
    disabled        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS users_person_idx ON users (person_id);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash      bytea PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    -- Cookie sessions carry a CSRF token the page must echo in X-CSRF-Token.
    csrf_token      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    ip              text NOT NULL DEFAULT '',
    user_agent      text NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS sessions_user_idx ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires_idx ON sessions (expires_at);

CREATE TABLE IF NOT EXISTS login_attempts (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL,
    ip              text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    ok              boolean NOT NULL
);

CREATE INDEX IF NOT EXISTS login_attempts_user_idx ON login_attempts (username, at);
CREATE INDEX IF NOT EXISTS login_attempts_ip_idx ON login_attempts (ip, at);

-- Photos and notes a grid worker attaches when handling an incident; the audit row
-- links to them by id. Incident ids are not a foreign key here so this migration does
-- not depend on the incidents table's shape.
CREATE TABLE IF NOT EXISTS attachments (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL,
    user_id         bigint REFERENCES users (id) ON DELETE SET NULL,
    path            text NOT NULL,  -- relative to the data directory
    content_type    text NOT NULL,
    size_bytes      integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS attachments_incident_idx ON attachments (incident_id);
