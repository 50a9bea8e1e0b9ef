/** Key names (the KES rule) and glob patterns over them. */
import { err } from '../errors.js';

const NAME_RE = /^[A-Za-z0-9_-]{1,80}$/;

export function isValidName(name: string): boolean {
  return NAME_RE.test(name) && name !== '_' && !name.startsWith('-') && !name.endsWith('-');
}

export function checkName(name: string): string {
  if (!isValidName(name)) {
    const shown = JSON.stringify(name.length > 90 ? name.slice(0, 90) + '…' : name);
    throw err('INVALID_NAME', `invalid key name ${shown}: use 1-80 of A-Z a-z 0-9 _ -, not starting or ending with -`);
  }
  return name;
}

export interface Pattern {
  source: string;
  /** the literal part before the first wildcard: lets stores list by prefix */
  prefix: string;
  /** a plain name with no wildcard */
  exact: boolean;
  test(name: string): boolean;
}

const LITERAL = /[A-Za-z0-9_-]/;

/** Compile a glob (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`); a malformed glob is an error, never "matches nothing". */
export function compilePattern(glob: string | undefined): Pattern {
  const src = glob ?? '*';
  if (src === '') throw err('USAGE', 'empty pattern: give a key name or a glob such as "app-*"');
  let re = '^';
  let prefix = '';
  let literalSoFar = true;
  for (let i = 0; i < src.length; i++) {
    const ch = src[i]!;
    if (ch === '*') {
      re += '[A-Za-z0-9_-]*';
      literalSoFar = false;
    } else if (ch === '?') {
      re += '[A-Za-z0-9_-]';
      literalSoFar = false;
    } else if (ch === '[') {
      const end = src.indexOf(']', i + 2);
      if (end < 0) throw err('USAGE', `malformed pattern ${JSON.stringify(src)}: '[' at ${i + 1} is never closed`);
      let body = src.slice(i + 1, end);
      let neg = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        neg = true;
        body = body.slice(1);
      }
      if (!body) throw err('USAGE', `malformed pattern ${JSON.stringify(src)}: empty character class`);
      for (let j = 0; j < body.length; j++) {
        const c = body[j]!;
        if (c === '-' && j > 0 && j < body.length - 1) {
          if (body[j - 1]! > body[j + 1]!)
            throw err('USAGE', `malformed pattern ${JSON.stringify(src)}: bad range ${body[j - 1]}-${body[j + 1]}`);
          continue;
        }
        if (!LITERAL.test(c)) throw err('USAGE', `malformed pattern ${JSON.stringify(src)}: '${c}' cannot appear in a key name`);
      }
      const cls = body.replace(/-(?=.)/g, (_m, off: number) => (off === 0 ? '\\-' : '-'));
      re += neg ? `[^${cls}]` : `[${cls}]`;
      i = end;
      literalSoFar = false;
    } else if (LITERAL.test(ch)) {
      re += ch;
      if (literalSoFar) prefix += ch;
    } else if (ch === ']') {
      throw err('USAGE', `malformed pattern ${JSON.stringify(src)}: ']' without '['`);
    } else {
      throw err('USAGE', `malformed pattern ${JSON.stringify(src)}: '${ch}' cannot appear in a key name`);
    }
  }
  if (src.length > 200) throw err('USAGE', 'pattern too long');
  const rx = new RegExp(re + '$');
  return { source: src, prefix, exact: literalSoFar, test: (n) => rx.test(n) };
}
