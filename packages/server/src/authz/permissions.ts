/**
 * The permission language of Gatehouse's authorization model. Pure logic, no I/O.
 *
 * A permission is `resource:action` or `resource:action:resource-id`, e.g. `models:read`,
 * `models:predict:llama-3-8b`. Resource and action are lower-case slugs; resource ids are
 * case-sensitive (`[A-Za-z0-9._-]{1,128}`). Wildcards exist in exactly three forms:
 *
 *   `*`                  everything
 *   `resource:*`         every action on the resource, narrowed to an id or not
 *   `resource:action:*`  the action on every resource id
 *
 * A plain `resource:action` grants the same as `resource:action:*`: holding `models:predict`
 * means predicting any model. Any other `*` (`*:read`, `models:*:x`, `mod*`) is rejected, and
 * an invalid permission is never held and never granted (fail closed).
 */

/** `resource:action` and `resource:action:*` parse to the same kind: they grant the same. */
export type ParsedPermission =
  | { kind: 'all' }
  | { kind: 'resource'; resource: string }
  | { kind: 'action'; resource: string; action: string }
  | { kind: 'instance'; resource: string; action: string; id: string };

// Slugs are capped at 64 characters so a permission (and a token's scope) stays bounded.
const SLUG = /^[a-z][a-z0-9_-]{0,63}$/;
const RESOURCE_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** Longest valid permission: two 64-character slugs, a 128-character id and two colons. */
export const MAX_PERMISSION_LENGTH = 64 + 1 + 64 + 1 + 128;

/** Why `value` is not a valid permission, in words fit for a field error; null when it is valid. */
export function permissionProblem(value: unknown): string | null {
  if (typeof value !== 'string') return 'must be a string';
  if (value === '*') return null;
  if (value.length === 0) return 'must not be empty';
  if (value.length > MAX_PERMISSION_LENGTH) return `must be at most ${MAX_PERMISSION_LENGTH} characters`;
  const parts = value.split(':');
  if (parts.length < 2 || parts.length > 3) {
    return 'must be `resource:action` or `resource:action:resource-id`';
  }
  const [resource = '', action = '', id] = parts;
  if (!SLUG.test(resource)) {
    return resource.includes('*')
      ? 'wildcards are allowed only as `*`, `resource:*` or `resource:action:*`'
      : 'the resource must be lower-case letters, digits, `_` or `-`, starting with a letter';
  }
  if (action === '*') {
    return id === undefined ? null : 'wildcards are allowed only as `*`, `resource:*` or `resource:action:*`';
  }
  if (!SLUG.test(action)) {
    return action.includes('*')
      ? 'wildcards are allowed only as `*`, `resource:*` or `resource:action:*`'
      : 'the action must be lower-case letters, digits, `_` or `-`, starting with a letter';
  }
  if (id === undefined || id === '*') return null;
  if (!RESOURCE_ID.test(id)) {
    return id.includes('*')
      ? 'wildcards are allowed only as `*`, `resource:*` or `resource:action:*`'
      : 'the resource id must be 1-128 letters, digits, `.`, `_` or `-`';
  }
  return null;
}

export function isValidPermission(value: unknown): value is string {
  return permissionProblem(value) === null;
}

/** The structured form of a permission, or null when it is not valid. */
export function parsePermission(value: string): ParsedPermission | null {
  if (permissionProblem(value) !== null) return null;
  if (value === '*') return { kind: 'all' };
  const [resource = '', action = '', id] = value.split(':');
  if (action === '*') return { kind: 'resource', resource };
  if (id === undefined || id === '*') return { kind: 'action', resource, action };
  return { kind: 'instance', resource, action, id };
}

/** True when everything `required` stands for is granted by the single permission `held`. */
function covers(held: ParsedPermission, required: ParsedPermission): boolean {
  switch (held.kind) {
    case 'all':
      return true;
    case 'resource':
      return required.kind !== 'all' && required.resource === held.resource;
    case 'action':
      return (
        (required.kind === 'action' || required.kind === 'instance') &&
        required.resource === held.resource &&
        required.action === held.action
      );
    case 'instance':
      return (
        required.kind === 'instance' &&
        required.resource === held.resource &&
        required.action === held.action &&
        required.id === held.id
      );
  }
}

/**
 * A matcher over a fixed set of held permissions: set lookups instead of a scan per check.
 * Invalid held entries are ignored; an invalid required permission is never permitted.
 */
export function compilePermissions(held: readonly string[]): (required: string) => boolean {
  let all = false;
  const resources = new Set<string>();
  const actions = new Set<string>();
  const instances = new Set<string>();
  for (const value of held) {
    const permission = parsePermission(value);
    if (permission === null) continue;
    switch (permission.kind) {
      case 'all':
        all = true;
        break;
      case 'resource':
        resources.add(permission.resource);
        break;
      case 'action':
        actions.add(`${permission.resource}:${permission.action}`);
        break;
      case 'instance':
        instances.add(value);
        break;
    }
  }
  if (all) return (required) => isValidPermission(required);
  return (required) => {
    const permission = parsePermission(required);
    if (permission === null) return false;
    switch (permission.kind) {
      case 'all':
        return false;
      case 'resource':
        return resources.has(permission.resource);
      case 'action':
        return (
          resources.has(permission.resource) || actions.has(`${permission.resource}:${permission.action}`)
        );
      case 'instance':
        return (
          resources.has(permission.resource) ||
          actions.has(`${permission.resource}:${permission.action}`) ||
          instances.has(required)
        );
    }
  };
}

/**
 * True when the held permissions grant `required`. `required` is usually concrete
 * (`models:predict:llama-3-8b`) but may be a wildcard form, which is then granted only by a
 * held permission at least as broad.
 */
export function permits(held: readonly string[], required: string): boolean {
  const wanted = parsePermission(required);
  if (wanted === null) return false;
  for (const value of held) {
    const permission = parsePermission(value);
    if (permission !== null && covers(permission, wanted)) return true;
  }
  return false;
}

/** Code-unit order: the same on every machine, unlike localeCompare. */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The scopes a token may carry: the requested permissions, capped by what the subject holds.
 * A requested scope the held permissions grant is kept as requested; one broader than what is
 * held (`models:*` while holding `models:read`) is narrowed to the held permissions inside it;
 * anything else, including strings that are not permissions (e.g. `openid`), is dropped. The
 * result is deduplicated, has no entry a broader entry already grants, and is sorted.
 */
export function intersectScopes(requested: readonly string[], held: readonly string[]): string[] {
  const heldParsed = held.flatMap((value) => {
    const permission = parsePermission(value);
    return permission === null ? [] : [{ value, permission }];
  });
  const kept = new Map<string, ParsedPermission>();
  for (const value of requested) {
    const wanted = parsePermission(value);
    if (wanted === null || kept.has(value)) continue;
    if (heldParsed.some((entry) => covers(entry.permission, wanted))) {
      kept.set(value, wanted);
      continue;
    }
    for (const entry of heldParsed) {
      if (covers(wanted, entry.permission)) kept.set(entry.value, entry.permission);
    }
  }
  const entries = [...kept];
  return entries
    .filter(
      ([value, permission]) =>
        // Drop an entry when a strictly broader one is kept (equivalents like `a:b` and `a:b:*` both stay).
        !entries.some(
          ([other, broader]) =>
            other !== value && covers(broader, permission) && !covers(permission, broader),
        ),
    )
    .map(([value]) => value)
    .sort(byCodeUnit);
}

/** Deduplicated, code-unit sorted copy: the canonical order of roles and permissions everywhere. */
export function uniqueSorted(values: Iterable<string>): string[] {
  return [...new Set(values)].sort(byCodeUnit);
}

/**
 * Every permission string that on its own grants `required` (empty when `required` is not
 * valid): `permits(held, p)` is exactly "held contains one of coveringPermissions(p)". This
 * lets SQL test coverage with plain equality, with the semantics still defined here.
 */
export function coveringPermissions(required: string): string[] {
  const permission = parsePermission(required);
  if (permission === null) return [];
  switch (permission.kind) {
    case 'all':
      return ['*'];
    case 'resource':
      return ['*', `${permission.resource}:*`];
    case 'action': {
      const base = `${permission.resource}:${permission.action}`;
      return ['*', `${permission.resource}:*`, base, `${base}:*`];
    }
    case 'instance': {
      const base = `${permission.resource}:${permission.action}`;
      return ['*', `${permission.resource}:*`, base, `${base}:*`, required];
    }
  }
}
