/**
 * The audit trail's write side, as every domain sees it. `record` never blocks the request:
 * events are queued and written in batches; `flush` drains the queue (called on shutdown).
 * Never put a password, token, key or secret in an event: details are stored verbatim.
 */
export interface AuditEvent {
  /** Dotted event type, e.g. `login.failed`, `session.revoked`, `token.reuse_detected`. */
  type: string;
  outcome: 'success' | 'failure';
  /** Who did it (user id), when known. */
  actorId?: string | null;
  /** Whom it concerns (user id), when it differs from the actor or the actor is unknown. */
  subjectId?: string | null;
  ip?: string | null;
  userAgent?: string | null;
  requestId?: string | null;
  /** Internal context (e.g. the reason a login failed); never shown to the caller. */
  details?: Record<string, unknown>;
}

export interface AuditLog {
  record(event: AuditEvent): void;
  flush(): Promise<void>;
}

/** The request facts every audit event carries; routes build it once per request. */
export interface RequestMeta {
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
}
