-- The case flow of GB/T 30428.8: a parked (挂账) incident waits for its review date,
-- when the alert worker's timers hand it back to the dispatcher.
ALTER TABLE incidents DROP CONSTRAINT incidents_state_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_state_check CHECK (state IN (
    'reported', 'registered', 'cancelled', 'dispatched', 'accepted', 'handled', 'closed',
    'parked'));
ALTER TABLE incidents ADD COLUMN review_at timestamptz;
CREATE INDEX incidents_review_due ON incidents (review_at) WHERE state = 'parked';
