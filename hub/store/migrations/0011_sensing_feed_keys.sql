-- The sensing feed names a telemetry or event message by its key (device, seq): the
-- reader takes the message from the readings or events table it was committed to,
-- so the ingest writes a few columns per message instead of a second copy (which
-- cost a third more time per batch). Only a status, which the presence table keeps
-- no history of, carries its message.
ALTER TABLE sensing_feed ADD COLUMN seq bigint;
ALTER TABLE sensing_feed ALTER COLUMN msg DROP NOT NULL;
ALTER TABLE sensing_feed ADD CONSTRAINT sensing_feed_named
    CHECK (msg IS NOT NULL OR (kind IN ('telemetry', 'event') AND seq IS NOT NULL));
