/**
 * The newcomer's path, from the README alone: the install block, the dev server, the client block and
 * the five-minute tour, each run exactly as the README writes it (extracted from the code blocks marked
 * `<!-- newcomer-test: NAME -->`, so the README cannot drift), in a fresh directory outside the clone,
 * with a fresh HOME and a private npm prefix (a global install lands there, never on the machine). The
 * package comes from `npm pack` of this clone, as the README's "from a clone" block makes it; its
 * dependencies come from the npm registry (through npm's cache), its native modules are built as a
 * user's would be.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, join, sep } from 'node:path';
import { ROOT } from '../support/testbed.js';
import { tempDir } from '../support/tmp.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

/** the ```sh (or, for the library, ```ts) block after each `<!-- newcomer-test: NAME … -->` marker */
function markedBlocks(md: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /<!--\s*newcomer-test:\s*([a-z-]+)[^>]*-->\s*\n```(?:sh|bash|ts)\n([\s\S]*?)\n```/g;
  for (const m of md.matchAll(re)) {
    assert.ok(!out.has(m[1]!), `README: two blocks marked newcomer-test: ${m[1]}`);
    out.set(m[1]!, m[2]!);
  }
  return out;
}

const blocks = markedBlocks(README);
const root = realpathSync(ROOT);
const base = realpathSync(tempDir('keyport-newcomer-'));
const home = join(base, 'home');
const work = join(base, 'work');
const prefix = join(base, 'prefix');
for (const d of [home, work, prefix]) mkdirSync(d, { recursive: true });

// a newcomer's environment: nothing of keyport's, no PATH entry into the clone, HOME fresh with no
// ~/.npmrc of its own; the machine's npm configuration (its global npmrc: registry, CA file) and npm's
// cache stay, as a newcomer's machine has its own; a global install goes to the private prefix. Nothing
// is read from the user's ~/.npmrc: what the native builds need is set here (npm_config_nodedir below)
const machineNpm = (key: string) => {
  const e = { ...process.env };
  for (const k of Object.keys(e)) if (/^npm_config_(prefix|userconfig|globalconfig)$/i.test(k)) delete e[k];
  return spawnSync('npm', ['config', 'get', key], { encoding: 'utf8', env: e }).stdout.trim();
};
/**
 * node-gyp builds pkcs11js (and better-sqlite3 where no prebuilt binary downloads) against node's
 * headers. Where they are installed beside this node (distribution packages, the official tarball:
 * PREFIX/include/node), point node-gyp at them, so the build needs no download of headers and works
 * offline; elsewhere node-gyp fetches them for the running version, as it would for the user.
 */
const nodeHeaders = (() => {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'common.gypi')) ? prefix : undefined;
})();
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) {
  if (v === undefined || /^(KEYPORT_|KES_|npm_)/i.test(k)) continue;
  env[k] = v;
}
Object.assign(env, {
  HOME: home,
  PATH: [join(prefix, 'bin'), ...(process.env.PATH ?? '').split(delimiter).filter((p) => p && !p.startsWith(root))].join(delimiter),
  npm_config_prefix: prefix,
  npm_config_cache: process.env.npm_config_cache ?? join(homedir(), '.npm'),
  npm_config_userconfig: join(home, '.npmrc'),
  npm_config_globalconfig: machineNpm('globalconfig'),
  ...(nodeHeaders ? { npm_config_nodedir: nodeHeaders } : {}),
  npm_config_prefer_offline: 'true',
  npm_config_update_notifier: 'false',
  npm_config_fund: 'false',
  npm_config_audit: 'false',
});

function sh(script: string, cwd: string, timeoutMs: number) {
  const r = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
}

function show(r: { code: number | null; stdout: string; stderr: string }) {
  return `exit ${r.code}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

test('the README marks its install, server, client and tour blocks, with no path outside the package', () => {
  for (const b of ['install', 'server', 'client', 'tour', 'library'])
    assert.ok(blocks.has(b), `README has a block marked newcomer-test: ${b}`);
  assert.doesNotMatch(README, /\.\.\/shared|CONTRACT\.md/, 'the README never points outside the package');
  assert.match(README, new RegExp(`npm install -g ${PKG.name}\\b`), 'the README names the published package');
  assert.ok(!base.startsWith(root + sep), 'the newcomer directory is outside the clone');
});

test('README: install from the package, the dev server, a client, and the five-minute tour, from any directory', async (t) => {
  // the package, made the way the README's "from a clone" block makes it
  // --ignore-scripts: dist/ is built already (scripts/test.mjs); npm pack's prepare would rebuild it under the
  // other test files running the CLI from it at the same time ("does not provide an export named …")
  const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
  assert.equal(pack.status, 0, `npm pack:\n${pack.stderr}`);
  assert.ok(
    readdirSync(work).some((f) => f === `${PKG.name}-${PKG.version}.tgz`),
    'npm pack wrote the tarball the README installs',
  );

  const install = sh(blocks.get('install')!, work, 15 * 60_000);
  assert.equal(install.code, 0, `README install block failed:\n${show(install)}`);
  assert.ok(install.stdout.includes(PKG.version), `keyport --version printed ${PKG.version}:\n${show(install)}`);
  const which = sh('command -v keyport', base, 10_000);
  assert.equal(which.stdout.trim(), join(prefix, 'bin', 'keyport'), 'the keyport on PATH is the one just installed');

  await t.test('dev server, then the client block in another terminal', async () => {
    assert.ok(await portFree(7373), 'port 7373 (the dev server default in the README) is free: stop whatever holds it');
    const server = spawn('bash', ['-e', '-c', blocks.get('server')!], {
      cwd: work,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errOut = '';
    server.stdout.on('data', (d: Buffer) => (out += d.toString()));
    server.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
    const exited = new Promise<number | null>((resolve) => server.once('exit', (c) => resolve(c)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/listening on/.test(out)) {
        const early = await Promise.race([exited, new Promise((r) => setTimeout(() => r('wait'), 200))]);
        assert.equal(early, 'wait', `the dev server exited early:\n${out}\n${errOut}`);
        assert.ok(Date.now() < deadline, `the dev server did not start in 60 s:\n${out}\n${errOut}`);
      }
      assert.ok(existsSync(join(home, '.keyport', 'dev', 'admin.key')), 'the dev server keeps its admin key in ~/.keyport/dev');
      const client = sh(blocks.get('client')!, work, 120_000);
      assert.equal(client.code, 0, `README client block failed:\n${show(client)}`);
      assert.match(client.stdout, /my-key/);
      assert.match(client.stdout, /"ciphertext"/, 'key generate printed a data key');
    } finally {
      try {
        process.kill(-server.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      await exited;
    }
  });

  await t.test("keyport --help, keyport help uris and every command's --help, from the installed package", () => {
    const run = (args: string) => sh(`keyport ${args}`, base, 30_000);
    const top = run('--help');
    assert.equal(top.code, 0, show(top));
    assert.match(top.stdout, /keyport help uris/);
    const uris = run('help uris');
    assert.equal(uris.code, 0, show(uris));
    assert.equal(uris.stdout, readFileSync(join(ROOT, 'docs', 'uris.md'), 'utf8'), 'help uris prints the docs shipped in the package');
    // every command, found from the help itself: its --help exits 0 and shows its usage
    const commandsOf = (help: string) => {
      const section = help.split(/\nCommands:\n/)[1]?.split(/\n\n/)[0] ?? '';
      return section
        .split('\n')
        .map((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1])
        .filter((n): n is string => !!n && n !== 'help');
    };
    const seen: string[] = [];
    const walk = (path: string, help: string) => {
      for (const c of commandsOf(help)) {
        const p = path ? `${path} ${c}` : c;
        const r = run(`${p} --help`);
        assert.equal(r.code, 0, `keyport ${p} --help:\n${show(r)}`);
        assert.ok(r.stdout.startsWith(`Usage: keyport ${p} `), `keyport ${p} --help shows its usage:\n${r.stdout.slice(0, 200)}`);
        seen.push(p);
        walk(p, r.stdout);
      }
    };
    walk('', top.stdout);
    for (const c of ['key create', 'key sign', 'protect enable', 'migrate', 'doctor', 'server', 'node init'])
      assert.ok(seen.includes(c), `found ${c} in the help (${seen.length} commands)`);
    // a usage error: one line naming the command's --help
    const bad = run('key create');
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, "keyport: missing required argument 'name' (see keyport key create --help)\n");
  });

  await t.test('the library block, in a project that links the installed package', () => {
    const dir = join(base, 'library');
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), '{"private": true, "type": "module"}\n');
    // `npm install keyport-kms` would build the native modules a second time: the global install is
    // linked instead (its scripts already ran; a linked package's prepare needs the clone's tooling)
    const link = sh('npm link --ignore-scripts keyport-kms', dir, 120_000);
    assert.equal(link.code, 0, `npm link:\n${show(link)}`);
    writeFileSync(
      join(dir, 'example.mjs'),
      `${blocks.get('library')!}\nconsole.log(JSON.stringify({ sig: sig.length, migrated: report.migrated }));\n`,
    );
    const r = sh('node example.mjs', dir, 60_000);
    assert.equal(r.code, 0, `README library block failed:\n${show(r)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { sig: number; migrated: number };
    assert.ok(out.sig > 0, 'a signature');
    assert.equal(out.migrated, 1, 'the migration copied the key');
    assert.ok(existsSync(join(dir, 'backup')), 'the migration wrote fs:backup');
  });

  await t.test('the five-minute tour, in an empty directory', () => {
    const dir = join(base, 'tour');
    mkdirSync(dir);
    const tour = sh(blocks.get('tour')!, dir, 5 * 60_000);
    assert.equal(tour.code, 0, `README tour failed:\n${show(tour)}`);
    assert.match(tour.stdout, /Verified OK/, 'openssl verified the signature');
    assert.match(tour.stdout, /^hello$/m, 'decrypt gave the message back');
    assert.match(tour.stdout, /Protection\s+sealed/);
    assert.match(tour.stdout, /node-key/);
    assert.ok(existsSync(join(dir, 'keys-copy')), 'the migration wrote its copy');
  });
});
