-- Audit trail: append-only. No foreign keys to users: events must outlive the accounts they describe.
CREATE TABLE audit_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- When the event happened (taken when it was recorded, not when the batch was written).
  occurred_at timestamptz NOT NULL DEFAULT now(),
  type text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
  actor_id uuid,
  subject_id uuid,
  ip text,
  user_agent text,
  request_id text,
  details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_time_idx ON audit_events (occurred_at, id);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_id, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id);
CREATE INDEX audit_events_type_idx ON audit_events (type, id);

-- Enforced in the database, not only in code: a bug or a stray SQL session cannot rewrite history.
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
  BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
