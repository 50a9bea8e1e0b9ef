/**
 * Creates and imports whose client never saw the answer. A create (or import) that runs out of time is
 * answered 503 and cancelled, but a store write already under way when the deadline passes may still
 * finish: the key then exists although its client was told the request timed out, and its retry would
 * meet "key already exists" — with no way to tell its own key from somebody else's.
 *
 * The defined behaviour: such a key is remembered (name, the identity that asked, the key's fingerprint,
 * for an import a keyed digest of the material) for ten minutes, and a retry of the same request by the
 * same identity — for an import with the same material — is answered 200 once, as if the first attempt had
 * been answered. Any other identity, any other material, a key deleted or replaced meanwhile, or a second
 * retry, still gets "key already exists". The memory is bounded (LRU) and holds no key material.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';

interface Entry {
  identity: string;
  fingerprint: string;
  digest?: Buffer;
}

export const UNANSWERED_TTL_MS = 10 * 60_000;

export class UnansweredWrites {
  private readonly macKey = randomBytes(32);
  private readonly entries = new LRUCache<string, Entry>({ max: 10_000, ttl: UNANSWERED_TTL_MS });
  /** creates and imports in flight, by name: a retry that meets "exists" first waits for them to settle */
  private readonly inflight = new Map<string, Set<Promise<unknown>>>();

  /**
   * Run one create/import of `name` (`work`, which remembers itself if it finishes unanswered) so that a
   * retry racing it waits for its outcome instead of reading "exists" a moment before it is remembered.
   */
  async track<T>(name: string, work: Promise<T>): Promise<T> {
    let set = this.inflight.get(name);
    if (!set) this.inflight.set(name, (set = new Set()));
    set.add(work);
    try {
      return await work;
    } finally {
      set.delete(work);
      if (set.size === 0 && this.inflight.get(name) === set) this.inflight.delete(name);
    }
  }

  /** every create/import of `name` in flight now has settled */
  async settled(name: string): Promise<void> {
    const set = this.inflight.get(name);
    if (set) await Promise.allSettled([...set]);
  }

  private digest(material: Buffer): Buffer {
    return createHmac('sha256', this.macKey).update(material).digest();
  }

  /** `identity`'s create (no material) or import of `name` finished after its client was answered 503 */
  remember(name: string, identity: string, fingerprint: string, material?: Buffer): void {
    this.entries.set(name, { identity, fingerprint, ...(material ? { digest: this.digest(material) } : {}) });
  }

  /** whether some unanswered write of `name` is remembered (a retry then asks `claim`) */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /**
   * true, once, when this create/import by `identity` retries the unanswered one that made `name`, whose
   * current fingerprint is `fingerprint` (the key was not replaced meanwhile)
   */
  claim(name: string, identity: string, fingerprint: string, material?: Buffer): boolean {
    const e = this.entries.get(name);
    if (!e || e.identity !== identity || e.fingerprint !== fingerprint) return false;
    if (!!e.digest !== !!material) return false;
    if (e.digest && material && !timingSafeEqual(e.digest, this.digest(material))) return false;
    this.entries.delete(name);
    return true;
  }
}
