-- Token signing keys and their rotation. A key is published in the JWKS from the moment it
-- is created (state next), signs only once every cached JWKS can hold it (current), stays
-- published while tokens it signed may still be in use (retiring), then is unpublished (retired).
CREATE TABLE signing_keys (
  -- RFC 7638 JWK thumbprint of the public key.
  kid text PRIMARY KEY,
  alg text NOT NULL CHECK (alg IN ('ES256', 'RS256', 'EdDSA')),
  use text NOT NULL CHECK (use IN ('access_token', 'id_token')),
  state text NOT NULL CHECK (state IN ('next', 'current', 'retiring', 'retired')),
  -- Public members only (kty, crv, x, y, n, e) plus kid, alg, use.
  public_jwk jsonb NOT NULL,
  -- PKCS#8 DER sealed with AES-256-GCM under an HKDF-derived key of the master secret, the
  -- kid as additional authenticated data: version | 96-bit IV | ciphertext | 128-bit tag.
  private_key_enc bytea NOT NULL,
  created_at timestamptz NOT NULL,
  activated_at timestamptz,
  retiring_at timestamptz,
  retired_at timestamptz,
  -- When the last token this key may have signed expires; it is retired after that.
  not_after timestamptz
);

-- At most one signing key and one pending key per (alg, use), whatever several nodes do at once.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (alg, use) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (alg, use) WHERE state = 'next';
CREATE INDEX signing_keys_published ON signing_keys (state) WHERE state <> 'retired';
