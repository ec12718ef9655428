import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compilePermissions,
  coveringPermissions,
  intersectScopes,
  isValidPermission,
  MAX_PERMISSION_LENGTH,
  type ParsedPermission,
  parsePermission,
  permissionProblem,
  permits,
  uniqueSorted,
} from './permissions.ts';

const VALID: [string, ParsedPermission][] = [
  ['*', { kind: 'all' }],
  ['models:*', { kind: 'resource', resource: 'models' }],
  ['models:read', { kind: 'action', resource: 'models', action: 'read' }],
  ['models:predict:*', { kind: 'action', resource: 'models', action: 'predict' }],
  [
    'models:predict:llama-3-8b',
    { kind: 'instance', resource: 'models', action: 'predict', id: 'llama-3-8b' },
  ],
  ['keys:manage:own', { kind: 'instance', resource: 'keys', action: 'manage', id: 'own' }],
  [
    'models:predict:Llama_3.1-8B',
    { kind: 'instance', resource: 'models', action: 'predict', id: 'Llama_3.1-8B' },
  ],
  ['a:b', { kind: 'action', resource: 'a', action: 'b' }],
  ['my_res-1:do-it_2', { kind: 'action', resource: 'my_res-1', action: 'do-it_2' }],
  ['models:predict:.', { kind: 'instance', resource: 'models', action: 'predict', id: '.' }],
  [
    `models:predict:${'x'.repeat(128)}`,
    { kind: 'instance', resource: 'models', action: 'predict', id: 'x'.repeat(128) },
  ],
  [
    `${'r'.repeat(64)}:${'a'.repeat(64)}`,
    { kind: 'action', resource: 'r'.repeat(64), action: 'a'.repeat(64) },
  ],
];

const INVALID: [string, RegExp][] = [
  ['', /empty/],
  ['models', /resource:action/],
  ['models:read:x:y', /resource:action/],
  ['*:read', /wildcards/],
  ['*:*', /wildcards/],
  ['**', /resource:action/],
  ['mod*:read', /wildcards/],
  ['models:re*', /wildcards/],
  ['models:*:llama', /wildcards/],
  ['models:*:*', /wildcards/],
  ['models:predict:llama*', /wildcards/],
  ['models:predict:*llama', /wildcards/],
  ['Models:read', /resource/],
  ['models:Read', /action/],
  ['1models:read', /resource/],
  ['models:1read', /action/],
  ['_models:read', /resource/],
  [':read', /resource/],
  ['models:', /action/],
  ['models::x', /action/],
  ['models:read:', /resource id/],
  ['models:read:a b', /resource id/],
  ['models:read:a/b', /resource id/],
  ['models:read:a"b', /resource id/],
  ['models:read:ünï', /resource id/],
  [' models:read', /resource/],
  ['models:read ', /action/],
  ['models.v2:read', /resource/],
  [`models:predict:${'x'.repeat(129)}`, /resource id/],
  [`${'r'.repeat(65)}:read`, /resource/],
  [`models:${'a'.repeat(65)}`, /action/],
  ['x'.repeat(MAX_PERMISSION_LENGTH + 1), /at most/],
];

describe('permission syntax', () => {
  for (const [value, parsed] of VALID) {
    it(`accepts ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`, () => {
      assert.equal(isValidPermission(value), true);
      assert.equal(permissionProblem(value), null);
      assert.deepEqual(parsePermission(value), parsed);
    });
  }
  for (const [value, problem] of INVALID) {
    it(`rejects ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`, () => {
      assert.equal(isValidPermission(value), false);
      assert.equal(parsePermission(value), null);
      assert.match(permissionProblem(value) ?? '', problem);
    });
  }
  it('rejects non-strings', () => {
    for (const value of [undefined, null, 1, {}, ['models:read']]) {
      assert.equal(isValidPermission(value), false);
      assert.match(permissionProblem(value) ?? '', /string/);
    }
  });
});

/** [held, required, expected] */
const PERMITS: [string[], string, boolean][] = [
  // Exact matches.
  [['models:read'], 'models:read', true],
  [['models:read'], 'models:list', false],
  [['models:read'], 'datasets:read', false],
  [['models:predict:llama'], 'models:predict:llama', true],
  [['models:predict:llama'], 'models:predict:mistral', false],
  [['models:predict:llama'], 'models:predict:Llama', false],
  // A plain resource:action grants every resource id, and equals resource:action:*.
  [['models:predict'], 'models:predict:llama', true],
  [['models:predict'], 'models:predict:*', true],
  [['models:predict'], 'models:read:llama', false],
  [['models:predict:*'], 'models:predict:llama', true],
  [['models:predict:*'], 'models:predict', true],
  [['models:predict:*'], 'models:train:llama', false],
  // A resource id never grants the whole action.
  [['models:predict:llama'], 'models:predict', false],
  [['models:predict:llama'], 'models:predict:*', false],
  [['models:predict:llama'], 'models:*', false],
  // resource:* grants every action on the resource, narrowed or not.
  [['models:*'], 'models:read', true],
  [['models:*'], 'models:predict:llama', true],
  [['models:*'], 'models:predict:*', true],
  [['models:*'], 'models:*', true],
  [['models:*'], 'datasets:read', false],
  [['models:*'], 'models-v2:read', false],
  [['models:*'], '*', false],
  [['models:read'], 'models:*', false],
  [['models:read', 'models:predict'], 'models:*', false],
  // * grants everything valid.
  [['*'], 'models:read', true],
  [['*'], 'models:predict:llama', true],
  [['*'], 'anything:at-all:x', true],
  [['*'], 'models:*', true],
  [['*'], '*', true],
  // The union of held permissions counts.
  [['datasets:read', 'models:predict:llama'], 'models:predict:llama', true],
  [['datasets:read', 'models:predict:llama'], 'datasets:read:x', true],
  // Nothing held, nothing granted.
  [[], 'models:read', false],
  [[], '*', false],
  // Invalid required permissions are never granted, not even by *.
  [['*'], '*:read', false],
  [['*'], 'models:*:llama', false],
  [['*'], 'mod*:read', false],
  [['*'], '', false],
  [['models:*'], 'models:re*', false],
  [['models:read'], 'Models:read', false],
  // Invalid held permissions grant nothing (fail closed) and do not break the others.
  [['*:read'], 'models:read', false],
  [['mod*'], 'models:read', false],
  [['models:*:*'], 'models:read', false],
  [['models:re*'], 'models:read', false],
  [['Models:*'], 'models:read', false],
  [['bogus', 'models:read'], 'models:read', true],
  // Prefixes are not wildcards.
  [['models:pre'], 'models:predict', false],
  [['model:read'], 'models:read', false],
  [['models:predict:llama'], 'models:predict:llama-3', false],
];

describe('permits and compilePermissions', () => {
  for (const [held, required, expected] of PERMITS) {
    it(`${JSON.stringify(held)} ${expected ? 'grants' : 'does not grant'} ${JSON.stringify(required)}`, () => {
      assert.equal(permits(held, required), expected);
      assert.equal(compilePermissions(held)(required), expected);
      // coveringPermissions() is the same relation, for SQL: held contains one of them.
      const covering = coveringPermissions(required);
      assert.equal(
        held.some((permission) => covering.includes(permission)),
        expected,
      );
    });
  }

  it('a compiled matcher is reusable and does not see later changes to the input array', () => {
    const held = ['models:read'];
    const check = compilePermissions(held);
    held.push('*');
    assert.equal(check('models:read'), true);
    assert.equal(check('datasets:read'), false);
    assert.equal(check('models:read'), true);
  });

  it('permits and the compiled matcher agree on every pair of a sample set', () => {
    const sample = [
      '*',
      'models:*',
      'models:read',
      'models:read:*',
      'models:read:a',
      'models:read:b',
      'models:predict',
      'models:predict:a',
      'datasets:*',
      'datasets:read:a',
      '*:read',
      'models:*:a',
    ];
    for (const held of sample) {
      for (const other of sample) {
        for (const required of sample) {
          const set = [held, other];
          assert.equal(compilePermissions(set)(required), permits(set, required), `${set} vs ${required}`);
          const covering = coveringPermissions(required);
          assert.equal(
            set.some((permission) => covering.includes(permission)),
            permits(set, required),
            `covering ${set} vs ${required}`,
          );
        }
      }
    }
  });
});

/** [requested, held, expected] */
const INTERSECT: [string[], string[], string[]][] = [
  // Requested within held: kept as requested.
  [['models:read'], ['models:read', 'inference:run'], ['models:read']],
  [['models:predict:llama'], ['models:predict'], ['models:predict:llama']],
  [['models:predict:llama'], ['models:*'], ['models:predict:llama']],
  [['models:read'], ['*'], ['models:read']],
  [['*'], ['*'], ['*']],
  [['models:*'], ['*'], ['models:*']],
  [['models:predict:*'], ['models:predict'], ['models:predict:*']],
  // Not held at all: dropped.
  [['models:train'], ['models:read'], []],
  [['models:predict:mistral'], ['models:predict:llama'], []],
  [['admin:*'], ['models:read'], []],
  [[], ['*'], []],
  [['models:read'], [], []],
  // Broader than held: narrowed to the held permissions inside it.
  [
    ['*'],
    ['models:read', 'inference:run', 'keys:manage:own'],
    ['inference:run', 'keys:manage:own', 'models:read'],
  ],
  [
    ['models:*'],
    ['models:read', 'models:predict:llama', 'datasets:read'],
    ['models:predict:llama', 'models:read'],
  ],
  [
    ['models:predict'],
    ['models:predict:llama', 'models:predict:mistral'],
    ['models:predict:llama', 'models:predict:mistral'],
  ],
  [['models:predict:*'], ['models:predict:llama', 'models:read'], ['models:predict:llama']],
  [['models:*'], ['datasets:*'], []],
  // Non-permission and invalid scopes are dropped; invalid held entries grant nothing.
  [['openid', 'profile', 'models:read'], ['*'], ['models:read']],
  [['*:read', 'models:*:x', 'mod*'], ['*'], []],
  [['models:read'], ['*:read', 'mod*'], []],
  [['*'], ['*:read', 'models:read'], ['models:read']],
  // Deduplicated, and nothing a kept broader entry already grants.
  [['models:read', 'models:read'], ['models:read'], ['models:read']],
  [['models:read', 'models:*'], ['models:*'], ['models:*']],
  [['models:predict:llama', 'models:predict'], ['*'], ['models:predict']],
  [
    ['*', 'models:read'],
    ['models:read', 'inference:run'],
    ['inference:run', 'models:read'],
  ],
  [
    ['models:*', 'models:read'],
    ['models:read', 'models:predict:x'],
    ['models:predict:x', 'models:read'],
  ],
  // Deterministic order regardless of input order (code-unit order, not locale).
  [['b:x', 'a:x', 'B-is-not-valid:x'], ['*'], ['a:x', 'b:x']],
  [
    ['models:predict:b', 'models:predict:B', 'models:predict:a'],
    ['models:predict'],
    ['models:predict:B', 'models:predict:a', 'models:predict:b'],
  ],
];

describe('intersectScopes', () => {
  for (const [requested, held, expected] of INTERSECT) {
    it(`${JSON.stringify(requested)} ∩ ${JSON.stringify(held)} = ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(intersectScopes(requested, held), expected);
    });
  }

  it('never yields a scope the subject does not hold', () => {
    const held = ['models:read', 'models:predict:llama', 'inference:run'];
    const requested = ['*', 'models:*', 'models:predict', 'inference:*', 'keys:manage', 'models:read:x'];
    const result = intersectScopes(requested, held);
    for (const scope of result) assert.ok(permits(held, scope), scope);
    assert.deepEqual(result, ['inference:run', 'models:predict:llama', 'models:read']);
  });

  it('is independent of the order of its inputs', () => {
    const requested = ['models:*', 'inference:run', 'keys:manage:own', 'models:read'];
    const held = ['keys:manage:own', 'models:read', 'models:predict:a', 'inference:*'];
    const expected = intersectScopes(requested, held);
    assert.deepEqual(intersectScopes([...requested].reverse(), [...held].reverse()), expected);
    assert.deepEqual(expected, ['inference:run', 'keys:manage:own', 'models:predict:a', 'models:read']);
  });
});

describe('uniqueSorted', () => {
  it('dedupes and sorts by code unit', () => {
    assert.deepEqual(uniqueSorted(['b', 'a', 'B', 'a', '_']), ['B', '_', 'a', 'b']);
  });
});
