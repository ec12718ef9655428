import { isCommonPassword, MIN_BLOCKED_LENGTH } from './common-passwords.ts';

/**
 * Password rules after NIST SP 800-63B-4 §3.1.1.2: a minimum and a generous maximum length
 * counted in Unicode code points after NFKC, no composition rules, no truncation, a check
 * against common and breached passwords, and no email or name inside the password.
 */

/** NFKC, so the same password typed on another keyboard or device hashes the same. */
export function normalizePassword(raw: string): string {
  return raw.normalize('NFKC');
}

export interface PolicyViolation {
  code: 'too_short' | 'too_long' | 'invalid_characters' | 'common' | 'contains_personal_info';
  message: string;
}

export interface PasswordPolicyOptions {
  /** Default 15 (NIST's minimum for a password used as the only factor); at least 8. */
  minLength?: number;
  /** Default 128; at least 64, as NIST requires verifiers to accept 64 characters. */
  maxLength?: number;
}

export interface PasswordContext {
  email?: string;
  name?: string | null;
}

export const DEFAULT_MIN_PASSWORD_LENGTH = 15;
export const DEFAULT_MAX_PASSWORD_LENGTH = 128;
// Shorter emails, local parts or names would forbid far too many passwords ("ab@x.io").
const MIN_PERSONAL_LENGTH = 4;
// NFKC composes at most 4 code points into 1, and a code point is at most 2 UTF-16 units, so
// a string this many times longer than the maximum can be refused before normalising it.
const RAW_LENGTH_FACTOR = 16;

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

function normalizeIdentifier(value: string): string {
  return value.trim().normalize('NFKC').toLowerCase();
}

/** The personal strings a password must not contain, lower-cased; too-short ones left out. */
function personalTerms(context: PasswordContext): string[] {
  const terms: string[] = [];
  if (context.email) {
    const email = normalizeIdentifier(context.email);
    terms.push(email);
    const at = email.lastIndexOf('@');
    if (at > 0) terms.push(email.slice(0, at));
  }
  if (context.name) {
    const name = normalizeIdentifier(context.name);
    terms.push(name);
    // Each word of the name too: "Ada Lovelace" must not allow "lovelace-forever-2024".
    for (const word of name.split(/[\s\p{P}]+/u)) terms.push(word);
  }
  return terms.filter((term) => codePoints(term) >= MIN_PERSONAL_LENGTH);
}

export class PasswordPolicy {
  readonly minLength: number;
  readonly maxLength: number;

  constructor(options: PasswordPolicyOptions = {}) {
    const minLength = options.minLength ?? DEFAULT_MIN_PASSWORD_LENGTH;
    const maxLength = options.maxLength ?? DEFAULT_MAX_PASSWORD_LENGTH;
    if (!Number.isInteger(maxLength) || maxLength < 64 || maxLength > 4096) {
      throw new RangeError('maxLength must be an integer from 64 to 4096');
    }
    if (!Number.isInteger(minLength) || minLength < MIN_BLOCKED_LENGTH || minLength > maxLength) {
      throw new RangeError(`minLength must be an integer from ${MIN_BLOCKED_LENGTH} to maxLength`);
    }
    this.minLength = minLength;
    this.maxLength = maxLength;
  }

  /** Every rule the password breaks (empty: acceptable). Messages never repeat the password. */
  check(password: string, context: PasswordContext = {}): PolicyViolation[] {
    const tooLong: PolicyViolation = {
      code: 'too_long',
      message: `Use at most ${this.maxLength} characters.`,
    };
    if (password.length > this.maxLength * RAW_LENGTH_FACTOR) return [tooLong];

    const normalized = normalizePassword(password);
    const length = codePoints(normalized);
    if (length > this.maxLength) return [tooLong];

    const violations: PolicyViolation[] = [];
    if (normalized.includes('\0') || !normalized.isWellFormed()) {
      violations.push({
        code: 'invalid_characters',
        message:
          'The password contains a character that cannot be used (a null character or an incomplete Unicode character).',
      });
    }
    if (length < this.minLength) {
      violations.push({
        code: 'too_short',
        message: `Use at least ${this.minLength} characters. A few unrelated words make a long password that is easy to remember.`,
      });
    }
    if (isCommonPassword(normalized)) {
      violations.push({
        code: 'common',
        message:
          'This password appears in lists of common or breached passwords, which attackers try first. Choose another one.',
      });
    }
    const lower = normalized.toLowerCase();
    if (personalTerms(context).some((term) => lower.includes(term))) {
      violations.push({
        code: 'contains_personal_info',
        message: 'The password must not contain your email address or your name.',
      });
    }
    return violations;
  }
}
