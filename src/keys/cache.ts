/**
 * The key ring's caching layer, on lru-cache: a bounded LRU with an absolute TTL (KES `expiry.any`) and
 * an optional idle limit (KES `expiry.unused_key`). Whatever leaves the cache — evicted, expired,
 * replaced, cleared — goes through `dispose`, where the key ring zeroes secret buffers.
 */
import { LRUCache } from 'lru-cache';

interface Entry<V> {
  v: V;
  used: number;
}

export class TtlCache<K extends {}, V extends {}> {
  private lru: LRUCache<K, Entry<V>> | undefined;

  constructor(
    ttlMs: number,
    max = 10_000,
    /** KES `expiry.unused_key`: drop entries not used for this long (0 = off) */
    private unusedMs = 0,
    /** called once for every value that leaves the cache (zero secret bytes here) */
    dispose?: (v: V) => void,
  ) {
    // ttl 0 means "do not cache": nothing is kept at all
    if (ttlMs > 0)
      this.lru = new LRUCache<K, Entry<V>>({
        max,
        ttl: ttlMs,
        ...(dispose ? { dispose: (e: Entry<V>) => dispose(e.v) } : {}),
      });
  }

  get(k: K): V | undefined {
    const e = this.lru?.get(k);
    if (!e) return undefined;
    const now = Date.now();
    if (this.unusedMs > 0 && now - e.used > this.unusedMs) {
      this.lru!.delete(k);
      return undefined;
    }
    e.used = now;
    return e.v;
  }

  set(k: K, v: V): void {
    this.lru?.set(k, { v, used: Date.now() });
  }

  delete(k: K): void {
    this.lru?.delete(k);
  }

  clear(): void {
    this.lru?.clear();
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}
