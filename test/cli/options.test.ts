/**
 * No subcommand option may collide with a global one (issue 9 item 1): `key verify … --version 1` once
 * printed the version and exited 0, "valid" by verify's own contract. Walks the whole command tree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { tempDir } from '../support/tmp.js';
import { kpIn } from '../support/kp.js';

const dir = tempDir();

function flagsOf(c: Command): string[] {
  const help = (c as unknown as { _getHelpOption(): { short?: string; long?: string } | null })._getHelpOption();
  return [...c.options, ...(help ? [help] : [])].flatMap((o) => [o.short, o.long]).filter((f): f is string => !!f);
}

function walk(c: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  return c.commands.flatMap((s) => [{ path: [...path, s.name()], cmd: s }, ...walk(s, [...path, s.name()])]);
}

test('every subcommand: no option takes a flag of a global option (help aside, which each command has)', async () => {
  const program = await buildProgram();
  const globals = program.options.flatMap((o) => [o.short, o.long]).filter((f): f is string => !!f);
  assert.ok(globals.includes('--version') && globals.includes('-V'), 'the global version option is seen');
  const all = walk(program);
  assert.ok(all.length > 20, `the whole tree is walked (${all.length} commands)`);
  const clashes: string[] = [];
  for (const { path, cmd } of all) {
    const own = cmd.options.flatMap((o) => [o.short, o.long]).filter((f): f is string => !!f);
    for (const f of own) if (globals.includes(f)) clashes.push(`keyport ${path.join(' ')} ${f}`);
    // nor may a subcommand re-declare a flag of a command above it (other than help)
    for (let i = 1; i < path.length; i++) {
      const parent = all.find((x) => x.path.join(' ') === path.slice(0, i).join(' '))!;
      for (const f of parent.cmd.options.flatMap((o) => [o.short, o.long]))
        if (f && own.includes(f)) clashes.push(`keyport ${path.join(' ')} ${f}`);
    }
    assert.deepEqual(
      flagsOf(cmd)
        .filter((f) => f === '-h' || f === '--help')
        .sort(),
      ['--help', '-h'],
      `${path.join(' ')} has its own help`,
    );
  }
  assert.deepEqual(clashes, []);
});

test('a global flag after a subcommand is refused (exit 2), never answered with the version and exit 0', () => {
  const S = ['--store', `sqlite:${join(dir, 'o.db')}`];
  assert.equal(kpIn(dir, ['key', 'create', 'ec', '--type', 'ec-p256', ...S]).code, 0);
  writeFileSync(join(dir, 'msg'), 'hello');
  writeFileSync(join(dir, 'bogus.sig'), 'not a signature');
  for (const args of [
    ['key', 'verify', 'ec', '--in', 'msg', '--sig', 'bogus.sig', '--version', '1'],
    ['key', 'sign', 'ec', '--in', 'msg', '--out', 'x.sig', '--version', '1'],
    ['key', 'public', 'ec', '--version', '1'],
    ['key', 'export', 'ec', '--version', '1'],
    ['key', 'ls', '-V'],
  ]) {
    const r = kpIn(dir, [...args, ...S]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout, /^\d+\.\d+\.\d+/, 'no version printed');
    assert.match(r.stderr, /unknown option/);
  }
  // the version of a key is --key-version
  assert.equal(kpIn(dir, ['key', 'sign', 'ec', '--in', 'msg', '--out', 'm.sig', '--key-version', '1', ...S]).code, 0);
  assert.equal(kpIn(dir, ['key', 'verify', 'ec', '--in', 'msg', '--sig', 'm.sig', '--key-version', '1', ...S]).code, 0);
  const bad = kpIn(dir, ['key', 'verify', 'ec', '--in', 'msg', '--sig', 'bogus.sig', '--key-version', '1', ...S]);
  assert.equal(bad.code, 1);
  assert.equal(kpIn(dir, ['key', 'public', 'ec', '--pem', '--key-version', '1', ...S]).code, 0);
  assert.equal(kpIn(dir, ['key', 'public', 'ec', '--pem', '--key-version', '2', ...S]).code, 1);
  assert.equal(kpIn(dir, ['--version']).code, 0);
});
