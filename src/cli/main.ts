/**
 * The `keyport` CLI. One file per command group (key, protect, migrate, driver-test, doctor, server),
 * each exporting `register(program)`. Heavy modules are imported inside the action handlers so that
 * `keyport --help` loads nothing but commander.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { quietOnClosedPipe, reportError, usageLine } from './output.js';

const VERSION = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

type Registrar = (program: Command) => void;

/** command groups, one module each (src/cli/<group>.ts exporting `register`) */
const GROUPS = ['key', 'protect', 'migrate', 'driver-test', 'doctor', 'server', 'node', 'help'];

async function loadGroups(): Promise<Registrar[]> {
  const mods = await Promise.all(
    GROUPS.map((g) =>
      (import(`./${g}.js`) as Promise<{ register: Registrar }>).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(`/cli/${g}.js`)) return undefined;
        throw e;
      }),
    ),
  );
  return mods.filter((m): m is { register: Registrar } => m !== undefined).map((m) => m.register);
}

/**
 * The whole command tree. Global options (-V/--version, -h/--help) are recognised only before the
 * command (positional options): `key verify … --version 1` is then an unknown option (exit 2), never
 * the version and exit 0. No subcommand declares a global option's flag (test/cli/options.test.ts).
 */
export async function buildProgram(): Promise<Command> {
  const program = new Command('keyport')
    .description('Protect private keys with a KMS, move keys between stores and KMSs, serve keys like MinIO KES')
    .version(VERSION, '-V, --version')
    .enablePositionalOptions()
    .exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const shared = program.configureOutput();
  for (const g of await loadGroups()) g(program);
  // a usage error is one line naming the command's --help; a command that formats its own errors
  // (server --json) has its own output configuration and is left alone
  const walk = (c: Command, path: string) => {
    if (c.configureOutput() === shared) c.configureOutput({ outputError: (str, write) => write(usageLine(str, path)) });
    for (const sub of c.commands) walk(sub, path ? `${path} ${sub.name()}` : sub.name());
  };
  walk(program, '');
  return program;
}

export async function main(argv: string[]): Promise<void> {
  quietOnClosedPipe(process.stdout);
  quietOnClosedPipe(process.stderr);
  // the AWS SDK prints a multi-line notice on Node 20 at its first client; keyport supports Node 20 and
  // pins the SDK in its lockfile, so the notice is noise on every CLI run (library users still get it)
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const program = await buildProgram();
  try {
    await program.parseAsync(argv);
    process.exitCode = process.exitCode ?? 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help / version are not errors
      process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(e);
  }
}
