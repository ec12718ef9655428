import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { derToP1363, p1363ToDer } from './ecdsa-signature.ts';

describe('ECDSA signature encodings', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

  it('converts node:crypto DER signatures to the r || s node:crypto itself verifies, and back', () => {
    const componentLengths = new Set<number>();
    // 600 signatures: r and s with a set top bit (DER pads them to 33 bytes) and without.
    for (let i = 0; i < 600; i++) {
      const data = Buffer.from(`message ${i}`);
      const der = sign('sha256', data, privateKey);
      componentLengths.add(der[3] as number).add(der[4 + (der[3] as number) + 1] as number);
      const raw = derToP1363(der, 32);
      assert.equal(raw.length, 64);
      assert.ok(verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, raw), `signature ${i}`);
      const back = p1363ToDer(raw, 32);
      assert.ok(back);
      assert.deepEqual(back, der);
      assert.ok(verify('sha256', data, publicKey, back));
    }
    assert.ok(componentLengths.has(33) && componentLengths.has(32), [...componentLengths].join());
  });

  it('keeps leading zero bytes of a component as padding', () => {
    const raw = Buffer.alloc(64);
    raw[31] = 0x05; // r = 5
    raw.fill(0xff, 32); // s with its top bit set
    const der = p1363ToDer(raw, 32) as Buffer;
    assert.deepEqual([...der.subarray(0, 5)], [0x30, 3 + 35, 0x02, 0x01, 0x05]);
    assert.deepEqual([...der.subarray(5, 8)], [0x02, 0x21, 0x00]);
    assert.deepEqual(derToP1363(der, 32), raw);
  });

  it('refuses r || s of the wrong length and DER that is not an ECDSA signature', () => {
    assert.equal(p1363ToDer(Buffer.alloc(63), 32), undefined);
    assert.equal(p1363ToDer(Buffer.alloc(65), 32), undefined);
    assert.throws(() => derToP1363(Buffer.from([0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01]), 32));
  });
});
