import { err } from '../errors.js';

/** "300ms", "30s", "5m", "1h", "1h30m", or a number of milliseconds → ms */
export function parseDuration(v: string | number, what = 'duration'): number {
  if (typeof v === 'number') return v;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
    consumed = re.lastIndex;
  }
  if (consumed !== s.length || s.length === 0) throw err('INVALID_INPUT', `${what}: '${v}' is not a duration (e.g. 30s, 5m, 1h)`);
  return total;
}

/** a coarse human age: 45s, 12m, 5h, 90d */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s >= 86_400 ? `${Math.floor(s / 86_400)}d` : s >= 3600 ? `${Math.floor(s / 3600)}h` : s >= 60 ? `${Math.floor(s / 60)}m` : `${s}s`;
}
