/**
 * `keyport migrate`: move keys between any two stores or KMSs — planned before anything is written,
 * verified after, resumable after a crash (the journal), never losing a key.
 */
import { join, dirname } from 'node:path';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { err } from '../errors.js';
import { openKeyring, targetIdentity } from '../keys/open.js';
import { Connections } from '../kms/connections.js';
import type { Driver } from '../kms/driver.js';
import { StandInStore } from '../store/missing.js';
import type { Protection } from '../store/protection.js';
import type { StoreKeyring } from '../keys/keyring.js';
import { executeBatch, type ExecContext } from './execute.js';
import {
  Journal,
  PlanWriter,
  defaultJournalPath,
  migrationId,
  readPlan,
  type PlanEntry,
  type JournalEvent,
  type Strategy,
} from './journal.js';
import { planMigration, type Mode, type PlanSummary, type Side } from './plan.js';
import { AdaptivePool } from './pool.js';
import { type Target, targetRef, targetString, toTarget } from '../keys/target.js';

export interface MigrateOptions {
  /** a store URI, KMS URI or YAML path (parsed here), or the Target the caller parsed */
  from: string | Target;
  to: string | Target;
  pattern?: string;
  mode?: Mode;
  dryRun?: boolean;
  verify?: boolean;
  rekey?: boolean;
  concurrency?: number;
  journal?: string;
  /** let keys from a protected source (envelope, external) be written in the clear at a clear target */
  allowClear?: boolean;
  /**
   * keep the journal of a run that finished with nothing failed or left in conflict (default true for the
   * library; the CLI removes it unless --keep-journal). A kept journal makes a re-run of the same
   * migration recognise the target keys as its own (nothing to do); without it a re-run reports them as
   * same-name keys (nothing written).
   */
  keepJournal?: boolean;
  batchSize?: number;
  /** KMS connections (operator configuration) for key references either store names, beside their YAML's */
  kms?: string[];
  /**
   * interrupts the run (the CLI's Ctrl-C / SIGTERM): no new batch or key starts, calls in flight stop
   * (nothing half-written), and the report says `interrupted`; the same migration run again resumes it
   */
  signal?: AbortSignal;
  /** progress: phase, done, total */
  onProgress?: (phase: 'plan' | 'migrate', done: number, total?: number) => void;
  /** what opening a side has to say (keys of the source not yet sealed as its YAML asks; the target sealed on open) */
  onNotice?: (msg: string) => void;
}

export interface MigrateReport {
  from: string;
  to: string;
  dryRun: boolean;
  /** this run continued an interrupted migration, or found it already finished */
  resumed: boolean;
  /** the signal stopped this run before it finished: run the same migration again to resume it */
  interrupted: boolean;
  /** keys in flight when the run was interrupted that did not finish (the resumed run does them) */
  cancelled: number;
  alreadyFinished: boolean;
  planned: number;
  migrated: number;
  skipped: number;
  conflicts: string[];
  failed: string[];
  refused: { name: string; reason: string }[];
  errors: { name: string; error: string }[];
  verified: number;
  strategies: Record<Strategy, number>;
  durationMs: number;
  keysPerSecond: number;
  journal?: string;
  rekeyMap?: string;
  /** with --dry-run: the first decisions of the plan */
  plan?: PlanEntry[];
  /**
   * set when the source protects its keys and the target holds them in the clear (allowed only with
   * `allowClear`): the source's protection, which the migrated keys no longer have
   */
  clearTarget?: { sourceProtection: 'envelope' | 'external'; via?: string };
}

/** `target`: the side keys are written into (the source's keys are as they are: a pending protection is not theirs yet) */
async function side(kr: StoreKeyring, uri: string, signal?: AbortSignal, target = false): Promise<Side> {
  // reachable and readable: one listing call, the protection setting, the KMS behind it
  await kr.store.list({ limit: 1, signal });
  // a target that is not there yet has its protection as configured; its wrapper is checked (or, a new
  // local one, made) only when the store is created for a run that writes into it. So has a --dry-run's
  // target opened read-only whose configured protection is not applied yet (pendingProtection): the run
  // would apply it on open, and a dry run makes no wrapper key
  const pending = target ? kr.pendingProtection : undefined;
  const protection: Protection =
    kr.store instanceof StandInStore
      ? await kr.protection()
      : pending
        ? pending.mode === 'envelope'
          ? { mode: 'envelope', wrapper: pending.wrapper }
          : { mode: 'external', kms: pending.kms }
        : await kr.checkProtection();
  let kms: Driver | undefined;
  if (protection.mode === 'external') {
    const d = await kr.kmsDriver(protection.kms);
    const h = await d.health();
    if (h.state !== 'ok') throw err('UNAVAILABLE', `KMS ${protection.kms} is not healthy: ${h.reason}`);
    kms = d;
  }
  return { kr, uri, protection, kind: kr.store.capabilities.kind, kesOnly: !!kr.store.capabilities.kesOnly, kms };
}

export async function migrate(o: MigrateOptions): Promise<MigrateReport> {
  const t0 = Date.now();
  const mode = o.mode ?? 'default';
  const pattern = o.pattern ?? '*';
  // parsed once (the CLI hands over what it parsed): the journal names the two sides by reference (no
  // endpoint, no credential) and lives beside a file target
  const fromT = toTarget(o.from, { what: '--from' });
  const toT = toTarget(o.to, { what: '--to' });
  if (targetIdentity(fromT) === targetIdentity(toT)) throw err('USAGE', 'source and target are the same store');
  const [fromS, toS] = [targetString(fromT), targetString(toT)];
  // one pool of configured connections for both sides: a wrapper the target's YAML names also opens the
  // source's keys sealed under the same key (connections come from configuration, never from a store)
  const connections = new Connections();
  const notice = o.onNotice ? { onNotice: o.onNotice } : {};
  // a migration touches each key a few times: no point keeping unsealed secrets around. The source must
  // exist (a typo is an error, never an empty store); the target is created only once the plan has
  // something to write into it (not by --dry-run, a refused pattern or an empty plan). The source is only
  // read: opening it writes nothing (a clear source its YAML wants sealed is migrated as it is, not sealed)
  const srcKr = await openKeyring(fromT, { cacheTtlMs: 0, kms: o.kms ?? [], connections, create: false, readOnly: true, ...notice });
  let dstKr: StoreKeyring | undefined;
  const report: MigrateReport = {
    from: fromS,
    to: toS,
    dryRun: !!o.dryRun,
    resumed: false,
    interrupted: false,
    cancelled: 0,
    alreadyFinished: false,
    planned: 0,
    migrated: 0,
    skipped: 0,
    conflicts: [],
    failed: [],
    refused: [],
    errors: [],
    verified: 0,
    strategies: { copy: 0, import: 0, rekey: 0 },
    durationMs: 0,
    keysPerSecond: 0,
  };
  try {
    // a dry run writes nothing into an existing target either (no sealing on open, no marker, no wrapper key)
    dstKr = await openKeyring(toT, { cacheTtlMs: 0, connections, create: 'stand-in', ...(o.dryRun ? { readOnly: true } : {}), ...notice });
    const src = await side(srcKr, fromS, o.signal);
    let dst = await side(dstKr, toS, o.signal, true);
    // protection is never dropped silently: a protected source into a clear target needs allowClear
    if (src.protection.mode !== 'clear' && dst.protection.mode === 'clear') {
      const via = src.protection.mode === 'envelope' ? src.protection.wrapper : src.protection.kms;
      if (!o.allowClear)
        throw err(
          'USAGE',
          `${fromS} protects its keys (${src.protection.mode} under ${via}) but ${toS} would hold them in the clear: migrate into a ` +
            `protected target (a store YAML with envelope: wrapper: …, or a KMS) or pass --allow-clear`,
        );
      report.clearTarget = { sourceProtection: src.protection.mode, via };
    }
    const opts = { pattern: o.pattern, mode, rekey: !!o.rekey, signal: o.signal };
    const apply = (s: PlanSummary) => {
      report.planned = s.migrate;
      report.skipped = s.skipped;
      report.conflicts = s.conflicts;
      report.refused = s.refused;
      report.strategies = s.strategies;
    };

    if (o.dryRun) {
      const plan: PlanEntry[] = [];
      apply(
        await planMigration(
          src,
          dst,
          opts,
          (e) => void (plan.length < 10_000 && plan.push(e)),
          (n) => o.onProgress?.('plan', n),
        ),
      );
      report.plan = plan;
      return report;
    }

    if (dstKr.store instanceof StandInStore) {
      // a new target: plan against its empty stand-in first, and create it only if that plan writes something
      const first = await planMigration(
        src,
        dst,
        opts,
        () => undefined,
        (n) => o.onProgress?.('plan', n),
      );
      if (first.migrate === 0) {
        apply(first);
        return report;
      }
      await dstKr.close();
      dstKr = await openKeyring(toT, { cacheTtlMs: 0, connections, create: true, ...notice });
      dst = await side(dstKr, toS, o.signal, true);
    }

    const id = migrationId(fromT, toT, pattern, `${mode}${o.rekey ? '+rekey' : ''}`);
    const journal = new Journal(o.journal ?? defaultJournalPath(toT, id));
    report.journal = journal.path;
    const rekeyMap = join(dirname(journal.path), `keyport-rekey-${id}.jsonl`);
    const events = journal.read();
    const mine = events[0]?.t === 'start' && events[0].id === id;
    const planned = mine
      ? (events.find((e) => e.t === 'planned') as ((JournalEvent & { t: 'planned' }) & { summary?: PlanSummary }) | undefined)
      : undefined;
    const finished = mine && events.some((e) => e.t === 'finished');
    const doneBatches = new Set(events.filter((e): e is JournalEvent & { t: 'batch' } => e.t === 'batch').map((e) => e.i));

    let summary: PlanSummary;
    // batches are numbered in plan order; a resumed run must cut them exactly as the first run did
    let batchSize = Math.max(1, o.batchSize ?? 1024);
    const prevPlan = `${journal.planPath}.prev`;
    if (planned?.summary && !finished) {
      report.resumed = true;
      summary = planned.summary;
      batchSize = (planned as { batchSize?: number }).batchSize ?? batchSize;
    } else {
      // a finished run's plan tells which target keys are ours: re-running then only adds what is new
      if (finished) renameSync(journal.planPath, prevPlan);
      const previous = existsSync(prevPlan) ? readPlan(prevPlan) : undefined;
      journal.reset({ t: 'start', id, from: targetRef(fromT), to: targetRef(toT), pattern, mode, at: new Date().toISOString() });
      const w = new PlanWriter(journal.planPath);
      try {
        summary = await planMigration(src, dst, opts, w, (n) => o.onProgress?.('plan', n), previous);
      } catch (e) {
        w.abort();
        journal.remove();
        throw e;
      }
      w.finish();
      if (mode === 'default' && summary.conflicts.length) {
        // nothing is written when names collide: list them and stop
        journal.remove();
        rmSync(prevPlan, { force: true });
        apply(summary);
        report.planned = 0;
        return report;
      }
      journal.append({
        t: 'planned',
        entries: summary.total,
        migrate: summary.migrate,
        batchSize,
        batches: Math.ceil(summary.migrate / batchSize),
        summary,
      } as JournalEvent);
      rmSync(prevPlan, { force: true });
      if (finished) {
        report.alreadyFinished = summary.migrate === 0;
        events.length = 0;
        doneBatches.clear();
      }
    }
    apply(summary);
    // earlier batches' outcomes (resume / finished)
    for (const e of events) {
      if (e.t !== 'batch') continue;
      report.migrated += e.migrated;
      report.verified += e.verified;
      report.failed.push(...e.failed);
      report.conflicts.push(...e.conflicts);
    }

    const ctx: ExecContext = {
      src,
      dst,
      pool: new AdaptivePool(Math.max(1, o.concurrency ?? 16)),
      verify: o.verify !== false,
      rekeyMap,
      rekey: !!o.rekey,
      signal: o.signal,
    };
    const size = batchSize;
    let batch: PlanEntry[] = [];
    let i = 0;
    let processed = 0;
    /** the first batch not done when the signal fired */
    let stoppedAt: number | undefined;
    let redone = false;
    const run = async () => {
      const idx = i++;
      if (!doneBatches.has(idx)) {
        if (o.signal?.aborted) {
          stoppedAt = idx;
          return;
        }
        // batches run one after another: only the first one not done can have been partly written
        const r = await executeBatch(ctx, batch, report.resumed && !redone);
        redone = true;
        // a batch with keys the interrupt cancelled is not marked done: the resumed run does it again (its
        // keys already at the target with the intended material count as migrated there)
        if (r.cancelled.length) stoppedAt = idx;
        else journal.append({ t: 'batch', i: idx, migrated: r.migrated, verified: r.verified, failed: r.failed, conflicts: r.conflicts });
        report.cancelled += r.cancelled.length;
        report.migrated += r.migrated;
        report.verified += r.verified;
        report.failed.push(...r.failed);
        report.conflicts.push(...r.conflicts);
        report.errors.push(...r.errors);
        if (r.rekeyedInstead) {
          report.strategies.import -= r.rekeyedInstead;
          report.strategies.rekey += r.rekeyedInstead;
        }
      }
      processed += batch.length;
      o.onProgress?.('migrate', processed, summary.migrate);
      batch = [];
    };
    for await (const e of readPlan(journal.planPath)) {
      if (e.a !== 'migrate') continue;
      batch.push(e);
      if (batch.length >= size) await run();
      if (stoppedAt !== undefined) break;
    }
    if (batch.length && stoppedAt === undefined) await run();
    if (stoppedAt !== undefined) {
      // interrupted: the journal has every batch done so far and no 'finished': the same command resumes
      journal.append({ t: 'interrupted', batch: stoppedAt, at: new Date().toISOString() });
      journal.close();
      report.interrupted = true;
      return report;
    }
    journal.append({ t: 'finished', at: new Date().toISOString() });
    journal.close();
    if (o.keepJournal === false && report.failed.length === 0 && report.conflicts.length === 0) {
      journal.remove();
      report.journal = undefined;
    }
    if (report.strategies.rekey) report.rekeyMap = rekeyMap;
    return report;
  } catch (e) {
    // interrupted before the batches (opening, planning): nothing was written to resume; the report says so
    if (!o.signal?.aborted) throw e;
    report.interrupted = true;
    return report;
  } finally {
    report.durationMs = Date.now() - t0;
    report.keysPerSecond = report.migrated / Math.max(0.001, report.durationMs / 1000);
    await srcKr.close().catch(() => undefined);
    await dstKr?.close().catch(() => undefined);
  }
}
