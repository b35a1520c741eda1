-- Core schema: the grid tree, devices, their presence, readings and events.
-- Readings and events carry no foreign key to devices: the ingest already rejects
-- unknown devices, and a key check per row would cost batch throughput (and is not
-- allowed from a TimescaleDB hypertable to a plain table anyway).

CREATE TABLE grid_units (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    parent_code text REFERENCES grid_units (code) DEFERRABLE INITIALLY DEFERRED,
    level       smallint NOT NULL,
    CHECK (parent_code IS NULL OR starts_with(code, parent_code))
);
CREATE INDEX grid_units_parent ON grid_units (parent_code);

CREATE TABLE devices (
    id          text PRIMARY KEY,
    site        text NOT NULL,
    kind        text NOT NULL,
    grid_code   text NOT NULL REFERENCES grid_units (code),
    building    text,
    subject_id  text,
    location    jsonb NOT NULL DEFAULT '{}'::jsonb,
    heartbeat_s double precision NOT NULL DEFAULT 60,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_grid ON devices (grid_code);
CREATE INDEX devices_subject ON devices (subject_id) WHERE subject_id IS NOT NULL;

-- One row per device. ``state`` comes only from status messages (retained online,
-- Last Will offline); ``last_seen``/``last_seq`` from any message. ``status_ts`` and
-- ``status_seq`` order status messages, so a stale retained one never wins.
CREATE TABLE presence (
    device_id  text PRIMARY KEY,
    state      text NOT NULL DEFAULT 'unknown' CHECK (state IN ('online', 'offline', 'unknown')),
    since      timestamptz,
    last_seen  timestamptz,
    last_seq   bigint,
    reason     text,
    status_ts  timestamptz,
    status_seq bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per reading. A telemetry message (device, seq) holds 1..100 readings;
-- ``idx`` is the reading's position in the message, so every reading of a message
-- is kept (even two of one metric) while a redelivered message adds nothing.
-- Index maintenance is most of the database's share of ingest, so readings carry
-- one b-tree (the key, which also finds a device's rows) and a BRIN index on ts,
-- nearly free to maintain because rows arrive roughly in time order; together they
-- serve a device's time-range queries.
CREATE TABLE readings (
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    idx         smallint NOT NULL,
    ts          timestamptz NOT NULL,
    metric      text NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    received_at timestamptz NOT NULL,
    CONSTRAINT readings_pkey PRIMARY KEY (device_id, seq, idx)
);
CREATE INDEX readings_ts_brin ON readings USING brin (ts);

CREATE TABLE events (
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (device_id, seq)
);
CREATE INDEX events_device_ts ON events (device_id, ts);
CREATE INDEX events_type_ts ON events (type, ts);
