-- Chat and SMS channels are plug-ins (hub/alerts/notifiers/registry.py): the outbox
-- takes any channel name a notifier registers instead of a fixed list.
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_name
    CHECK (channel ~ '^[a-z][a-z0-9_]{0,31}$');

-- The family-first cascade of a life-safety incident about a care subject
-- (hub/family): the pure cascade's state, and when its current window ends.
CREATE TABLE family_cascades (
    incident_id  bigint      PRIMARY KEY REFERENCES incidents (id),
    subject_id   text        NOT NULL,
    state        jsonb       NOT NULL,
    deadline_at  timestamptz,            -- NULL once the cascade is over
    started_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX family_cascades_due ON family_cascades (deadline_at)
    WHERE deadline_at IS NOT NULL;

-- One-time answer links: only the SHA-256 of the token is kept.
CREATE TABLE family_links (
    token_hash   bytea       PRIMARY KEY,
    incident_id  bigint      NOT NULL REFERENCES incidents (id),
    contact      integer     NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    answer       text
);
CREATE INDEX family_links_incident ON family_links (incident_id);
