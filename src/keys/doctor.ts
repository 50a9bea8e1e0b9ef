/**
 * `keyport doctor STORE` for key stores (sqlite, fs, kes-fs, postgres, awssm, YAML): can the store be
 * opened and listed and how fast, is every record readable, how are secrets held, and — through the
 * KMS doctor — is the wrapper key (envelope) or the KMS (external) in order. One fix per problem.
 */
import { isKeyportError, oneLine } from '../errors.js';
import { existsSync } from 'node:fs';
import { redactGeneric } from '../kms/address.js';
import { type Target, targetString } from './target.js';
import { parseStoredKeyRef, parseStoredKmsRef } from '../kms/address.js';
import { doctorKms, type DoctorCheck, type DoctorReport } from '../kms/doctor.js';
import { openKeyring, type OpenOptions } from './open.js';
import { isStoreMissing } from '../store/missing.js';
import { formatAge } from '../config/duration.js';

export async function doctorStore(target: string | Target, opts: OpenOptions & { maxAgeMs?: number } = {}): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => checks.push(c);
  const t0 = process.hrtime.bigint();
  // the target as it prints: a parsed one by its type, a library caller's string with its secrets hidden
  const uri = typeof target === 'string' ? redactGeneric(target) : targetString(target);
  let kr;
  try {
    // a doctor looks and never creates or writes: a store that is not there is the problem to report, and
    // protection its configuration asks for but it lacks is reported below (pendingProtection), not applied
    kr = await openKeyring(target, { ...opts, create: false, readOnly: true });
    await kr.store.list({ limit: 1 });
    add({
      check: 'store',
      status: 'ok',
      detail: `${kr.store.capabilities.kind} store opened and listed in ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms`,
    });
  } catch (e) {
    add({
      check: 'store',
      status: 'problem',
      detail: oneLine(e),
      fix: isStoreMissing(e)
        ? 'check the address; a new store is created by keyport key create or keyport migrate --to'
        : isKeyportError(e, 'UNAVAILABLE')
          ? 'check the address (keyport help uris), that the store is running and reachable, and the credentials'
          : 'fix the store address or configuration: every attribute is in `keyport help uris` (docs/uris.md)',
    });
    return { uri, kms: '', ok: false, checks };
  }
  try {
    const p = await kr.protection();
    let keys = 0;
    let clear = 0;
    let damaged = 0;
    const due: string[] = [];
    const now = Date.now();
    let sealed = 0;
    const unopened: string[] = [];
    let firstProblem: string | undefined;
    let after: string | undefined;
    for (;;) {
      const page = await kr.store.list({ after, limit: 1000 });
      for (const n of page.names) {
        keys++;
        let r;
        try {
          r = await kr.store.get(n);
        } catch {
          damaged++;
          continue;
        }
        if (r.versions.some((v) => v.clear !== undefined)) clear++;
        const newest = r.versions[r.versions.length - 1];
        if (opts.maxAgeMs !== undefined && newest && now - Date.parse(newest.createdAt) > opts.maxAgeMs)
          due.push(`${n} (${formatAge(now - Date.parse(newest.createdAt))})`);
        // every sealed version is test-unsealed: a lost or wrong wrapper shows here, not at the next use
        for (const v of r.versions) {
          if (!v.sealed) continue;
          sealed++;
          try {
            (await kr.wrappers.unseal(v.sealed)).fill(0);
          } catch (e) {
            unopened.push(`${n} v${v.version}`);
            firstProblem ??= oneLine(e);
          }
        }
      }
      if (!page.next) break;
      after = page.next;
    }
    add({
      check: 'keys',
      status: damaged ? 'problem' : 'ok',
      detail: `${keys} key(s)${damaged ? `, ${damaged} unreadable` : ''}`,
      ...(damaged ? { fix: 'restore the unreadable records from a backup (keyport never half-writes one)' } : {}),
    });
    // an interrupted write (kill -9) can leave temp files holding whole key records
    const stale = kr.store.staleFiles?.() ?? [];
    if (stale.length)
      add({
        check: 'temp files',
        status: 'problem',
        detail:
          `${stale.length} temp file(s) left by an interrupted write, which may hold key material: ` +
          `${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', …' : ''}`,
        fix:
          'the next keyport write to this store removes them under its lock (e.g. run the interrupted migrate again); or delete them ' +
          'while no keyport process writes',
      });
    if (opts.maxAgeMs !== undefined)
      add({
        check: 'key age',
        status: due.length ? 'problem' : 'ok',
        detail: due.length
          ? `${due.length} key(s) due for rotation (newest version older than ${formatAge(opts.maxAgeMs)}): ` +
            `${due.slice(0, 20).join(', ')}${due.length > 20 ? ', …' : ''}`
          : `every key's newest version is younger than ${formatAge(opts.maxAgeMs)}`,
        ...(due.length
          ? { fix: 'keyport key rotate NAME (or --to-key-id ID for a pre-generated KMS key); keyport node rotate for node keys' }
          : {}),
      });
    if (sealed)
      add({
        check: 'sealed versions',
        status: unopened.length ? 'problem' : 'ok',
        detail: unopened.length
          ? `${unopened.length} of ${sealed} sealed version(s) do not open: ` +
            `${unopened.slice(0, 20).join(', ')}${unopened.length > 20 ? ', …' : ''} (${firstProblem})`
          : `all ${sealed} sealed version(s) open`,
        ...(unopened.length
          ? { fix: 'configure (or restore from a backup) the wrapper key that sealed them; keyport never re-creates a wrapper key' }
          : {}),
      });
    const pending = kr.pendingProtection;
    if (p.mode === 'clear' && pending?.mode === 'envelope')
      add({
        check: 'protection',
        status: pending.clearKeys ? 'problem' : 'ok',
        detail: pending.clearKeys
          ? `${pending.clearKeys} key(s) are not yet sealed under ${pending.wrapper}, the configured wrapper key`
          : `envelope under ${pending.wrapper} is configured; the store holds no clear keys yet`,
        ...(pending.clearKeys ? { fix: "the next write command or 'keyport protect enable --store … --wrapper …' seals them" } : {}),
      });
    else if (p.mode === 'clear' && pending?.mode === 'external')
      add({ check: 'protection', status: 'ok', detail: `external in ${pending.kms} is configured; the catalog is still empty` });
    else if (p.mode === 'clear')
      add({
        check: 'protection',
        status: 'warning',
        detail: 'secrets are stored in the clear (file permissions only)',
        fix: 'keyport protect enable --store … --wrapper KMS-KEY-URI',
      });
    else if (p.mode === 'envelope') {
      add({
        check: 'protection',
        status: clear ? 'problem' : 'ok',
        detail: `envelope under ${p.wrapper}${clear ? `; ${clear} key(s) still clear` : ''}`,
        ...(clear ? { fix: 'run keyport protect enable again with the same wrapper to seal the rest' } : {}),
      });
      const ref = parseStoredKeyRef(p.wrapper);
      const a = kr.connections.forKey(ref);
      if (!a)
        add({
          check: 'wrapper connection',
          status: 'problem',
          detail: `no configured connection reaches the wrapper key ${ref}`,
          fix: 'give it with --wrapper URI, KEYPORT_KMS, or envelope.wrapper in the store YAML (docs/connections.md)',
        });
      else if (a.localFile && !existsSync(a.localFile))
        // a doctor looks and never creates: the local driver would make a new wrapper file on first use
        add({
          check: 'wrapper key',
          status: 'problem',
          detail: `wrapper key file ${a.localFile} does not exist`,
          fix: 'restore it from a backup: keyport never creates a wrapper key again',
        });
      else {
        const w = await doctorKms(a.wrapperKeyId !== undefined ? a : a.withKey(ref.keyId));
        for (const c of w.checks) add({ ...c, check: `wrapper ${c.check}` });
      }
    } else {
      add({ check: 'protection', status: 'ok', detail: `external: keys live in ${p.kms}` });
      const a = kr.connections.forKms(parseStoredKmsRef(p.kms));
      if (!a)
        add({
          check: 'kms connection',
          status: 'problem',
          detail: `no configured connection reaches ${p.kms}`,
          fix: 'give it as the store (--store KMS-URI), with KEYPORT_KMS, or external.kms in the store YAML (docs/connections.md)',
        });
      else {
        const k = await doctorKms(a);
        for (const c of k.checks) add({ ...c, check: `kms ${c.check}` });
      }
    }
  } finally {
    await kr.close().catch(() => undefined);
  }
  return { uri, kms: '', ok: !checks.some((c) => c.status === 'problem'), checks };
}
