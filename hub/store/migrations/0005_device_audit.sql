-- What people did to a device rather than to an incident (issue 13): an operator
-- renewing a fire-lane camera's empty-lane reference. Append-only like `audit`.
CREATE TABLE IF NOT EXISTS device_audit (
    id         bigserial   PRIMARY KEY,
    device_id  text        NOT NULL,
    at         timestamptz NOT NULL,
    actor      text        NOT NULL,    -- username
    action     text        NOT NULL,    -- rebaseline
    data       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    source     text                     -- the caller's address
);
CREATE INDEX IF NOT EXISTS device_audit_device ON device_audit (device_id, id);

CREATE TRIGGER device_audit_append_only BEFORE UPDATE OR DELETE ON device_audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER device_audit_no_truncate BEFORE TRUNCATE ON device_audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
