-- The sensing feed holds one row per ingest batch and partition instead of one per
-- message: the batch's messages of that partition, in the order received, as
-- parallel arrays (device, kind, seq, receive time; a status also its message).
-- A batch of 1000 messages wrote 1000 rows and index entries (about 8 ms), now at
-- most one per partition. The feed is a queue of what is not yet consumed; rows
-- written in the per-message form are dropped with it (a worker upgraded mid-stream
-- loses at most the unconsumed moments of sensing, never stored data).
DROP TABLE sensing_feed;
CREATE TABLE sensing_feed (
    scope     text NOT NULL,
    part      integer NOT NULL,
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id        bigint GENERATED ALWAYS AS IDENTITY,
    devices   text[] NOT NULL,
    kinds     text[] NOT NULL,
    seqs      bigint[] NOT NULL,
    received  timestamptz[] NOT NULL,
    statuses  jsonb[] NOT NULL,  -- a status's message at its place, NULL elsewhere
    PRIMARY KEY (scope, part, xid, id),
    CHECK (cardinality(devices) = cardinality(kinds) AND cardinality(kinds) = cardinality(seqs)
           AND cardinality(seqs) = cardinality(received)
           AND cardinality(received) = cardinality(statuses))
);
