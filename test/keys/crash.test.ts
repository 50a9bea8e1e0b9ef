/**
 * kill -9 at random moments during create / rotate / protect enable|rotate|disable: afterwards every
 * record is whole, every key that was reported created exists with at least the versions reported,
 * and every key's secret opens (never torn, never sealed under a missing wrapper).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { openKeyring } from '../../src/keys/open.js';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
const TRIALS = Number(process.env.KEYPORT_CRASH_TRIALS ?? 12);

function runAndKill(args: string[], afterMs: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/crash-worker.ts'), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let started = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!started) {
        started = true;
        setTimeout(() => child.kill('SIGKILL'), afterMs);
      }
    });
    child.on('exit', () => resolve(out));
  });
}

for (const scheme of ['sqlite', 'fs'] as const) {
  test(`kill -9 during writes leaves a whole ${scheme} store`, async () => {
    const uri = scheme === 'sqlite' ? `sqlite:${join(dir, 'crash.db')}` : `fs:${join(dir, 'crashfs')}`;
    const w1 = `local:${join(dir, `${scheme}-w1.key`)}`;
    const w2 = `local:${join(dir, `${scheme}-w2.key`)}`;
    const created = new Set<string>();
    const minVersion = new Map<string, number>();
    let next = 0;
    for (let t = 0; t < TRIALS; t++) {
      const out = await runAndKill([uri, w1, w2, String(next)], 20 + Math.floor(Math.random() * 400));
      for (const line of out.split('\n')) {
        const [op, name, v] = line.split(' ');
        if (op === 'created') created.add(name!);
        if (op === 'rotated') minVersion.set(name!, Math.max(minVersion.get(name!) ?? 1, Number(v)));
      }
      next += 1000; // fresh names per trial: an interrupted create may or may not have landed
      const kr = await openKeyring(uri, { kms: [w1, w2] });
      try {
        for (const name of created) {
          const info = await kr.describe(name);
          assert.ok(info.versions >= (minVersion.get(name) ?? 1), `${name} lost a version`);
        }
        const { names } = await kr.list('*');
        for (const name of names) {
          const info = await kr.describe(name);
          if (info.type === 'aes256') {
            const ct = await kr.encrypt(name, Buffer.from('x'));
            assert.deepEqual(await kr.decrypt(name, ct), Buffer.from('x'));
          } else {
            const s = await kr.sign(name, Buffer.from('x'));
            assert.ok(await kr.verify(name, Buffer.from('x'), s));
          }
          await kr.export(name); // every version opens
        }
      } finally {
        await kr.close();
      }
    }
    assert.ok(created.size > 0, 'the worker made progress');
  });
}
