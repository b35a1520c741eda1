-- Web Push subscriptions of the phone view (/m): one row per browser that
-- subscribed, owned by a user and bound to the session that made it, so logging
-- out (or the session expiring, or a password change ending sessions) removes it.
-- The push service's 404/410 removes it too (hub.alerts.notifiers.webpush).

CREATE TABLE IF NOT EXISTS push_subscriptions (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_hash    bytea REFERENCES sessions (token_hash) ON DELETE CASCADE,
    endpoint        text NOT NULL UNIQUE CHECK (length(endpoint) <= 2048),
    p256dh          text NOT NULL CHECK (length(p256dh) <= 200),
    auth            text NOT NULL CHECK (length(auth) <= 100),
    user_agent      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_ok_at      timestamptz,
    last_error      text
);

CREATE INDEX IF NOT EXISTS push_subscriptions_user_idx ON push_subscriptions (user_id);
