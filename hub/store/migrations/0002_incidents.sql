-- Grid incidents, the alarms that fed them, their audit trail, the notification
-- outbox, silences and the sensing engine's snapshot.

CREATE TABLE incidents (
    id               bigserial PRIMARY KEY,
    dedup_key        text        NOT NULL,
    rule             text        NOT NULL DEFAULT '',
    category         text        NOT NULL,
    severity         smallint    NOT NULL CHECK (severity BETWEEN 1 AND 4),
    state            text        NOT NULL CHECK (state IN ('reported', 'registered',
                                     'cancelled', 'dispatched', 'accepted', 'handled', 'closed')),
    title            text        NOT NULL,
    grid_code        text,
    device_id        text,
    subject_id       text,
    zone             text,
    firing           boolean     NOT NULL DEFAULT true,
    alarm_count      integer     NOT NULL DEFAULT 1,
    last_alarm_ts    timestamptz,                -- data timestamp of the latest alarm
    cleared_at       timestamptz,                -- data timestamp of the latest clear
    evidence         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    evidence_image   text,                       -- relative to the data directory
    escalation_level smallint    NOT NULL DEFAULT 0,  -- highest chain level notified
    escalations      smallint    NOT NULL DEFAULT 0,  -- time limits that ran out
    deadline_at      timestamptz,                -- next time limit; NULL when none runs
    deadline_kind    text CHECK (deadline_kind IN ('accept', 'handle')),
    assignee         text,                       -- person id
    group_id         bigint REFERENCES incidents (id),
    opened_at        timestamptz NOT NULL,       -- data timestamp of the first alarm
    updated_at       timestamptz NOT NULL,
    reported_at      timestamptz,
    dispatched_at    timestamptz,
    accepted_at      timestamptz,
    handled_at       timestamptz,
    closed_at        timestamptz,                -- closed or cancelled
    extra            jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- engine fields with no column
    version          integer     NOT NULL DEFAULT 1  -- optimistic concurrency
);

-- One open incident per dedup key, enforced by the database itself so that even two
-- alert workers racing on the same alarm cannot open two.
CREATE UNIQUE INDEX incidents_open_dedup ON incidents (dedup_key)
    WHERE state NOT IN ('cancelled', 'closed');
CREATE INDEX incidents_deadline ON incidents (deadline_at)
    WHERE deadline_at IS NOT NULL AND state NOT IN ('cancelled', 'closed');
-- Keyset paging over the newest first, optionally within a grid subtree.
CREATE INDEX incidents_opened ON incidents (opened_at DESC, id DESC);
CREATE INDEX incidents_grid ON incidents (grid_code text_pattern_ops, opened_at DESC, id DESC);
CREATE INDEX incidents_subject_open ON incidents (subject_id)
    WHERE subject_id IS NOT NULL AND state NOT IN ('cancelled', 'closed');
CREATE INDEX incidents_open_state ON incidents (state, severity DESC)
    WHERE state NOT IN ('cancelled', 'closed');

-- Every alarm received; alarm_id is a digest of what identifies the alarm, so a
-- redelivered alarm is recognised and ignored.
CREATE TABLE incident_alarms (
    alarm_id     text        PRIMARY KEY,
    incident_id  bigint      REFERENCES incidents (id),
    dedup_key    text        NOT NULL,
    rule         text        NOT NULL,
    state        text        NOT NULL,
    severity     smallint    NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    outcome      text        NOT NULL,   -- opened | updated | grouped | inhibited | silenced | ignored
    evidence     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    evidence_image text
);
CREATE INDEX incident_alarms_incident ON incident_alarms (incident_id, ts);

-- Append-only audit trail: who did what to which incident, when, why, from where.
CREATE TABLE audit (
    id           bigserial   PRIMARY KEY,
    incident_id  bigint      NOT NULL REFERENCES incidents (id),
    at           timestamptz NOT NULL,
    actor        text        NOT NULL,    -- user id, or "system:<part>"
    action       text        NOT NULL,
    from_state   text,
    to_state     text,
    reason       text,
    data         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    source       text                     -- where the action came from (IP, worker id)
);
CREATE INDEX audit_incident ON audit (incident_id, id);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();

-- Notifications waiting to go out (at least once) and what became of them.
CREATE TABLE outbox (
    id              bigserial   PRIMARY KEY,
    incident_id     bigint      REFERENCES incidents (id),
    channel         text        NOT NULL CHECK (channel IN ('mqtt', 'webhook')),
    recipient       text        NOT NULL,   -- grid code (mqtt) or person id (webhook)
    target          text,                   -- webhook URL
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    summary_of      integer,                -- rows coalesced into the delivered message
    last_error      text,
    failed          boolean     NOT NULL DEFAULT false  -- gave up after max attempts
);
CREATE INDEX outbox_due ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND NOT failed;
CREATE INDEX outbox_recipient_pending ON outbox (channel, recipient, target)
    WHERE delivered_at IS NULL AND NOT failed;

-- Silences and maintenance windows: alarms matching them open no incident.
CREATE TABLE silences (
    id          bigserial   PRIMARY KEY,
    device_id   text,
    zone        text,
    subject_id  text,
    category    text,
    grid_code   text,                       -- this unit and everything beneath it
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    reason      text        NOT NULL CHECK (reason <> ''),
    created_by  text        NOT NULL,
    maintenance boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (device_id IS NOT NULL OR zone IS NOT NULL OR subject_id IS NOT NULL
           OR category IS NOT NULL OR grid_code IS NOT NULL)
);
CREATE INDEX silences_active ON silences (ends_at);

-- The sensing engine's state (last activity per subject, heartbeats...), saved
-- periodically so that a restart resumes its windows instead of starting over.
CREATE TABLE sensing_state (
    name        text        PRIMARY KEY,
    saved_at    timestamptz NOT NULL,
    snapshot    jsonb       NOT NULL
);
