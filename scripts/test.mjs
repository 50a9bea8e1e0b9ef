#!/usr/bin/env node
// The whole test suite: build, run every test file under node's test runner (TypeScript through tsx),
// stop the testbed services the tests started, and list loudly any backend that was skipped.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, existsSync, readFileSync, rmSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const state = process.env.KEYPORT_TESTBED_STATE ?? join(root, '.testbed');
mkdirSync(state, { recursive: true });
rmSync(join(state, 'skipped.txt'), { force: true });

// The MinIO suite's peers (MinIO + mc, built from the Go module proxy: the longest cold install) start
// building now, in the background, so the build overlaps lint, tsc and every other test file; the MinIO
// suite runs last and waits for this build (scripts/testbed/minio.sh holds an install lock) instead of
// holding one of the two test slots while it compiles. A failed build is retried and reported by the suite.
const only = process.argv.slice(2);
const minioSuite = 'test/compat/minio.test.ts';
// filters match the path relative to the checkout (a checkout's own directory name must not match everything)
if (!only.length || only.some((o) => minioSuite.includes(o))) {
  const fd = openSync(join(state, 'minio-install.log'), 'w');
  spawn('bash', [join(root, 'scripts', 'testbed', 'minio.sh'), 'install'], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, KEYPORT_TESTBED_STATE: state },
  }).unref();
}

// lint and formatting first: one line-length and style for the whole tree (biome.json)
const biomeBin = join(root, 'node_modules', '@biomejs', 'biome', 'bin', 'biome');
const lint = spawnSync(process.execPath, [biomeBin, 'ci', '--max-diagnostics=50', root], { stdio: 'inherit' });
if (lint.status !== 0) {
  console.error('lint/format check failed: run `npm run fix` to apply the formatter and safe fixes');
  process.exit(lint.status ?? 1);
}

// build dist/ (the CLI runs from it) and type-check everything, tests and benches included
const tscBin = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
for (const args of [
  ['-p', join(root, 'tsconfig.build.json')],
  ['-p', join(root, 'tsconfig.json'), '--noEmit'],
]) {
  const tsc = spawnSync(process.execPath, [tscBin, ...args], { stdio: 'inherit' });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
}

function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
let files = walk(join(root, 'test')).sort();
if (only.length) files = files.filter((f) => only.some((o) => relative(root, f).includes(o)));
// the MinIO suite last: its peers may still be building (above)
files = [...files.filter((f) => !f.endsWith(minioSuite)), ...files.filter((f) => f.endsWith(minioSuite))];

const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, KEYPORT_TESTBED_STATE: state },
});

// stop every testbed service this run may have started
const tb = join(root, 'scripts', 'testbed');
if (existsSync(tb)) {
  for (const f of readdirSync(tb)) {
    if (f.endsWith('.sh') && !f.startsWith('_')) spawnSync('bash', [join(tb, f), 'stop'], { stdio: 'ignore', timeout: 60_000 });
  }
}

const skippedFile = join(state, 'skipped.txt');
if (existsSync(skippedFile)) {
  const lines = [...new Set(readFileSync(skippedFile, 'utf8').split('\n').filter(Boolean))];
  if (lines.length) {
    const bar = '!'.repeat(78);
    console.error(
      `\n${bar}\n!! SKIPPED BACKENDS (${lines.length}): these tests did not run against their real emulator\n${lines.map((l) => `!!   - ${l}`).join('\n')}\n${bar}`,
    );
  }
}
process.exit(r.status ?? 1);
