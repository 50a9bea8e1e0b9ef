/** A bounded TTL cache (insertion-ordered Map; oldest entries evicted first). */
export class TtlCache<K, V> {
  private m = new Map<K, { v: V; exp: number; used: number }>();
  constructor(
    private ttlMs: number,
    private max = 10_000,
    /** KES `expiry.unused_key`: drop entries not used for this long (0 = off) */
    private unusedMs = 0,
  ) {}

  get(k: K): V | undefined {
    const e = this.m.get(k);
    if (!e) return undefined;
    const now = Date.now();
    if (now > e.exp || (this.unusedMs > 0 && now - e.used > this.unusedMs)) {
      this.m.delete(k);
      return undefined;
    }
    e.used = now;
    return e.v;
  }

  set(k: K, v: V): void {
    if (this.ttlMs <= 0) return;
    if (this.m.size >= this.max) this.m.delete(this.m.keys().next().value as K);
    const now = Date.now();
    this.m.set(k, { v, exp: now + this.ttlMs, used: now });
  }

  delete(k: K): void {
    this.m.delete(k);
  }

  clear(): void {
    this.m.clear();
  }

  get size(): number {
    return this.m.size;
  }
}
