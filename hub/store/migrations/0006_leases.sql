-- Work shared by several processes, owned by one at a time: leases in PostgreSQL.
-- ``kind`` says what is leased ('sensing': a partition of the households, 'camera': a
-- camera's analysis), ``scope`` whose (the site), ``key`` which one. A lease is held
-- while ``expires_at`` lies ahead of the database's clock; its owner renews it every
-- few seconds, a worker that dies stops renewing and another takes the row over with
-- SELECT ... FOR UPDATE SKIP LOCKED.
CREATE TABLE leases (
    kind       text NOT NULL,
    scope      text NOT NULL,
    key        text NOT NULL,
    owner      text,
    expires_at timestamptz,
    taken_at   timestamptz,
    PRIMARY KEY (kind, scope, key)
);

-- The workers alive for a kind and scope (renewed with their leases), so that a new
-- one that holds nothing yet counts in everyone's fair share.
CREATE TABLE lease_members (
    kind       text NOT NULL,
    scope      text NOT NULL,
    member     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (kind, scope, member)
);

-- What the ingest committed that the sensing rules must see: one row per new
-- telemetry, event or status message, written in the ingest's batch transaction.
-- ``part`` is the household's partition. Rows are read in (xid, id) order up to the
-- oldest transaction still running (pg_snapshot_xmin), so a reader never passes a
-- row that a slower transaction commits later.
CREATE TABLE sensing_feed (
    scope       text NOT NULL,
    part        integer NOT NULL,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    device_id   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('telemetry', 'event', 'status')),
    msg         jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (scope, part, xid, id)
);

-- A partition's sensing state and how far in the feed it has consumed, written
-- together in one transaction by the partition's owner.
CREATE TABLE sensing_cursors (
    scope      text NOT NULL,
    part       integer NOT NULL,
    parts      integer NOT NULL,
    cursor_xid xid8 NOT NULL DEFAULT '0',
    cursor_id  bigint NOT NULL DEFAULT 0,
    state      jsonb,
    saved_at   timestamptz,
    PRIMARY KEY (scope, part)
);
