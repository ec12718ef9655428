-- The development outbox: with no SMTP_URL configured, outgoing mail is stored here instead
-- of being sent, and `gatehouse mail` lists it. Verification and reset mails carry single-use
-- links in their bodies: acceptable in this DEV outbox only (the links are short-lived, and a
-- deployment that serves real users sets SMTP_URL). Such links never go to logs.
CREATE TABLE mail_outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  to_address text NOT NULL,
  subject text NOT NULL,
  text_body text NOT NULL,
  html_body text,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Insertion order: timestamps tie within a transaction (and PGlite's clock is coarse).
  seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX mail_outbox_created_idx ON mail_outbox (created_at DESC, seq DESC);
CREATE INDEX mail_outbox_to_idx ON mail_outbox (lower(to_address), created_at DESC, seq DESC);
