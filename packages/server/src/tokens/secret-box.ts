import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Envelope encryption for secrets at rest (signing private keys, and any other domain that
 * must store something it needs back in clear): AES-256-GCM under a key derived from the
 * master secret with HKDF-SHA256. Each domain derives its own key with its own `info`, so a
 * ciphertext of one domain never opens under another's key.
 *
 * Sealed layout (one bytea column): version (1 byte) | IV (12 bytes) | ciphertext | tag (16 bytes).
 * The additional authenticated data (e.g. the row's primary key) binds a ciphertext to its
 * row: copying it into another row makes `open` fail.
 */
const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** A ciphertext that cannot be opened: wrong key, wrong AAD, or tampered bytes. Carries no detail on purpose. */
export class SecretBoxError extends Error {
  constructor() {
    super('The sealed secret cannot be opened: wrong master secret, or the data was altered');
    this.name = 'SecretBoxError';
  }
}

/** Derives a 256-bit AES key from the master secret; `info` names the purpose (e.g. 'gatehouse signing keys v1'). */
export function deriveKey(masterSecret: string, info: string): Buffer {
  // No salt: the master secret is already high-entropy, and every node must derive the same key.
  return Buffer.from(hkdfSync('sha256', Buffer.from(masterSecret, 'utf8'), Buffer.alloc(0), info, KEY_BYTES));
}

function bytes(value: Uint8Array | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
}

/** Encrypts `plaintext` with a fresh random 96-bit IV; `aad` is authenticated, not stored. */
export function seal(key: Uint8Array, plaintext: Uint8Array | string, aad: Uint8Array | string): Buffer {
  if (key.length !== KEY_BYTES) throw new RangeError('secret-box keys are 32 bytes (use deriveKey)');
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(bytes(aad));
  const body = Buffer.concat([cipher.update(bytes(plaintext)), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), iv, body, cipher.getAuthTag()]);
}

/** Decrypts what `seal` produced with the same key and AAD; throws SecretBoxError otherwise. */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array | string): Buffer {
  if (key.length !== KEY_BYTES) throw new RangeError('secret-box keys are 32 bytes (use deriveKey)');
  if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) throw new SecretBoxError();
  const data = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const iv = data.subarray(1, 1 + IV_BYTES);
  const tag = data.subarray(data.length - TAG_BYTES);
  const body = data.subarray(1 + IV_BYTES, data.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(bytes(aad));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new SecretBoxError();
  }
}
