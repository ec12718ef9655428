/**
 * Email addresses are compared case-insensitively after NFKC: `Ada@Example.COM` and
 * `ada@example.com` are one account. The local part's case is not significant at any
 * provider that matters, and treating it so closes a duplicate-account hole.
 */
export function normalizeEmail(raw: string): string {
  return raw.trim().normalize('NFKC').toLowerCase();
}

// One @, no spaces or control characters, a dot in the domain; deliberately not RFC 5322 in full.
const SHAPE = /^[^\s@\p{Cc}]{1,64}@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]{2,}$/u;

export function isValidEmail(normalized: string): boolean {
  return normalized.length <= 254 && SHAPE.test(normalized);
}
