-- 12345 hotline tickets taken in (POST /api/intake/tickets): one incident per external
-- ticket id, however often the external system sends it.
CREATE TABLE intake_tickets (
    ticket_id    text        PRIMARY KEY,
    incident_id  bigint      NOT NULL REFERENCES incidents (id),
    received_at  timestamptz NOT NULL DEFAULT now(),
    ticket       jsonb       NOT NULL
);
