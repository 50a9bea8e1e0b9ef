/**
 * Paged list() for stores that are a directory of key files (fs, kes-fs). A directory has no order
 * and no cursor, so each page would need a whole readdir and sort: quadratic over a listing (100k keys
 * in pages of 1000 = 100 full scans). Instead a listing reads and sorts the directory once, at its
 * first page, and continues from that snapshot (binary search for the cursor). A listing is thus
 * complete as of its start — never truncated — and a store's own writes end the snapshot; so does age,
 * so a cursor handed out long ago continues over a fresh read.
 */
import type { ListOptions, ListPage } from './types.js';

const SNAPSHOT_MS = 5_000;
const SURROGATE = /[\uD800-\uDFFF]/;

/** byte (UTF-8) order, the order every store lists in */
export function byteCompare(a: string, b: string): number {
  // UTF-16 code-unit order equals UTF-8 byte order unless a surrogate pair meets U+E000–U+FFFF
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function sortBytes(names: string[]): string[] {
  if (!names.some((n) => SURROGATE.test(n))) return names.sort();
  return names
    .map((n) => ({ n, b: Buffer.from(n) }))
    .sort((x, y) => Buffer.compare(x.b, y.b))
    .map((x) => x.n);
}

/** first index whose name sorts after `after` */
function upperBound(names: string[], after: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byteCompare(names[mid]!, after) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class DirListing {
  private snap?: { prefix: string; names: string[]; at: number };

  /** `read` returns every key name in the directory, unsorted */
  constructor(private readonly read: () => string[]) {}

  /** the store wrote or deleted something: the next page reads the directory again */
  invalidate(): void {
    this.snap = undefined;
  }

  page(opts: ListOptions = {}): ListPage {
    const limit = Math.max(1, opts.limit ?? 1000);
    const prefix = opts.prefix ?? '';
    const s = this.snap;
    let names: string[];
    if (opts.after !== undefined && s && s.prefix === prefix && Date.now() - s.at < SNAPSHOT_MS) names = s.names;
    else {
      names = sortBytes(this.read().filter((n) => n.startsWith(prefix)));
      this.snap = { prefix, names, at: Date.now() };
    }
    const from = opts.after === undefined ? 0 : upperBound(names, opts.after);
    const out = names.slice(from, from + limit);
    if (from + limit < names.length) return { names: out, next: out[out.length - 1] };
    return { names: out };
  }
}
