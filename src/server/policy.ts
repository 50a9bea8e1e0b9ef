/**
 * KES v0.24 policy patterns (kms-go/kes Policy.Verify, used by KES v0.24.0):
 *   - a pattern ending in '*' matches every URL path it (without the '*') prefixes;
 *   - any other pattern matches only the URL path equal to it;
 *   - the empty pattern matches nothing; a request is allowed when no deny and at least one allow matches.
 * KES ≤ 0.21 matched with Go's path.Match ('*' inside a segment, '?', '[a-z]'); KES v0.24 takes such a
 * pattern literally, so `deny: /v1/key/describe/*-prod` silently denies nothing. keyport follows v0.24
 * exactly and refuses at start-up every pattern that cannot match a request any route serves, naming it.
 * An allow rule for an API that older KES versions served and v0.24 dropped (MinIO's documented policy
 * still lists `/v1/key/bulk/decrypt`) allows nothing; it is accepted with a notice instead.
 */
import { isValidName } from '../keys/names.js';

/** KES v0.24's validPattern: name characters, '-' not first or last, '*' only as the last character */
export function isKesListPattern(s: string): boolean {
  if (s === '*') return true;
  if (s === '_' || s.length > 80) return false;
  const n = s.length - 1;
  for (let i = 0; i <= n; i++) {
    const c = s[i]!;
    if (/[0-9A-Za-z_]/.test(c) || (c === '-' && i > 0 && i < n) || (c === '*' && i === n)) continue;
    return false;
  }
  return true;
}

/** the policy match of KES v0.24 */
export function matchPattern(pattern: string, path: string): boolean {
  if (!pattern) return false;
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

/** APIs of KES v0.21–v0.23 that v0.24 no longer serves */
const RETIRED = [
  '/v1/key/bulk/decrypt',
  '/v1/secret/',
  '/v1/enclave/',
  '/v1/policy/write/',
  '/v1/policy/delete/',
  '/v1/policy/assign/',
  '/v1/identity/delete/',
  '/v1/identity/assign/',
  '/v1/sys/',
];

const LIST_ROUTES = /\/list\/$/;

/** can `rest` be extended to a resource the route accepts (a key/policy name, or a listing pattern)? */
function resourcePrefixOk(rest: string): boolean {
  if (rest === '') return true;
  if (!/^[A-Za-z0-9_-]*$/.test(rest)) return false;
  return !rest.startsWith('-') && rest.length <= 80;
}

function resourceOk(res: string, route: string): boolean {
  if (LIST_ROUTES.test(route)) return res === '' || isKesListPattern(res);
  if (route.startsWith('/v1/identity/describe/')) return /^[0-9a-f]{64}$/.test(res) || isValidName(res);
  return isValidName(res);
}

/**
 * Why `pattern` can match no request a route serves (undefined: it can match one). `routes` are the served
 * paths: exact ('/v1/status') or subtrees ('/v1/key/describe/').
 */
export function unmatchableReason(pattern: string, routes: readonly string[]): string | undefined {
  if (pattern === '') return 'an empty pattern matches nothing';
  const star = pattern.endsWith('*');
  const body = star ? pattern.slice(0, -1) : pattern;
  if (/[*?[\]\\]/.test(body))
    return "it is a path.Match glob (KES ≤ 0.21); KES v0.24 matches a path exactly, or by prefix with one '*' at the end";
  const ok = routes.some((r) => {
    const subtree = r.endsWith('/');
    if (star) {
      if (r.startsWith(body)) return true;
      return subtree && body.startsWith(r) && resourcePrefixOk(body.slice(r.length));
    }
    if (!subtree) return body === r;
    return body.startsWith(r) && resourceOk(body.slice(r.length), r);
  });
  if (ok) return undefined;
  return 'no API path keyport serves matches it';
}

export function isRetiredApi(pattern: string): boolean {
  const body = pattern.endsWith('*') ? pattern.slice(0, -1) : pattern;
  return RETIRED.some((r) => body.startsWith(r) || (pattern.endsWith('*') && r.startsWith(body)));
}

/**
 * Check every pattern of every policy: throws (via `refuse`) on the first one that cannot match, returns
 * notices for allow rules naming retired KES APIs.
 */
export function checkPolicyPatterns(
  policies: Iterable<{ name: string; allow: string[]; deny: string[] }>,
  routes: readonly string[],
  refuse: (msg: string) => never,
): string[] {
  const notices: string[] = [];
  for (const p of policies) {
    for (const [kind, list] of [
      ['allow', p.allow],
      ['deny', p.deny],
    ] as const) {
      for (const pat of list) {
        const why = unmatchableReason(pat, routes);
        if (!why) continue;
        if (kind === 'allow' && isRetiredApi(pat) && !why.includes('glob')) {
          notices.push(`policy '${p.name}': allow pattern '${pat}' names an API KES v0.24 no longer has: it allows nothing`);
          continue;
        }
        refuse(`policy '${p.name}': ${kind} pattern '${pat}' cannot match any request: ${why}`);
      }
    }
  }
  return notices;
}
