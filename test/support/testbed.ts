/**
 * Test access to the real emulators (moto, local-kms, SoftHSM2, PyKMIP, lowkey-vault, KES, PostgreSQL).
 *
 * Convention: `scripts/testbed/<service>.sh start` installs (idempotently, cached) and starts the
 * service on 127.0.0.1 if it is not running yet, then prints KEY=VALUE lines (endpoints, paths) on
 * stdout. Exit code 3 means "cannot be had on this machine" (the reason on stderr). Services stay up
 * until scripts/test.mjs calls `stop` on each at the end of the run.
 *
 * In CI (CI=true) an unavailable service is a test failure, never a skip. Locally the test is skipped
 * and the service is listed loudly at the end of the run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TESTBED_STATE = process.env.KEYPORT_TESTBED_STATE ?? join(ROOT, '.testbed');

const cache = new Map<string, Record<string, string> | { unavailable: string }>();

function run(service: string): Record<string, string> | { unavailable: string } {
  const script = join(ROOT, 'scripts', 'testbed', `${service}.sh`);
  const r = spawnSync('bash', [script, 'start'], { encoding: 'utf8', timeout: 20 * 60_000, env: process.env });
  if (r.status === 0) {
    const env: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!;
    }
    return env;
  }
  const reason = (r.stderr || r.stdout || String(r.error ?? 'failed')).trim().split('\n').slice(-3).join(' | ');
  return { unavailable: `${service}: ${reason}` };
}

/**
 * Start (or reuse) a service. Returns its env, or null when the test must be skipped (locally only).
 * Usage: `const env = service(t, 'moto'); if (!env) return;` inside a test, or at describe level with
 * `{ skip }` from `serviceOrSkip`.
 */
export function startService(service: string): Record<string, string> | { unavailable: string } {
  let r = cache.get(service);
  if (!r) {
    r = run(service);
    cache.set(service, r);
  }
  return r;
}

/** For `describe(name, { skip: skipUnless('moto') }, …)`: false when available, else the reason. */
export function skipUnless(service: string): false | string {
  const r = startService(service);
  if (!('unavailable' in r)) return false;
  if (process.env.CI === 'true') {
    // in CI a missing emulator fails the run: throw at load so the file fails loudly
    throw new Error(`testbed service unavailable in CI: ${r.unavailable}`);
  }
  mkdirSync(TESTBED_STATE, { recursive: true });
  appendFileSync(join(TESTBED_STATE, 'skipped.txt'), `${r.unavailable}\n`);
  return `SKIPPED (service unavailable): ${r.unavailable}`;
}

/** The env of a service already known to be available. */
export function serviceEnv(service: string): Record<string, string> {
  const r = startService(service);
  if ('unavailable' in r) throw new Error(r.unavailable);
  return r;
}

/** Where and as whom the AWS CLI talks to an emulator. */
export interface AwsCliTarget {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** the target of a test-bed service whose env names it with PREFIX_ENDPOINT, PREFIX_REGION, … (MOTO, LOCALKMS) */
export function awsCliTarget(env: Record<string, string>, prefix: string): AwsCliTarget {
  return {
    endpoint: env[`${prefix}_ENDPOINT`]!,
    region: env[`${prefix}_REGION`]!,
    accessKeyId: env[`${prefix}_ACCESS_KEY_ID`]!,
    secretAccessKey: env[`${prefix}_SECRET_ACCESS_KEY`]!,
  };
}

/** `aws kms ARGS --output text` with the test bed's own AWS CLI (scripts/testbed/awscli.sh), as an operator runs it */
export function awsKms(t: AwsCliTarget, args: string[]): string {
  return execFileSync(serviceEnv('awscli')['AWS_CLI']!, ['--endpoint-url', t.endpoint, 'kms', ...args, '--output', 'text'], {
    encoding: 'utf8',
    env: { ...process.env, AWS_ACCESS_KEY_ID: t.accessKeyId, AWS_SECRET_ACCESS_KEY: t.secretAccessKey, AWS_DEFAULT_REGION: t.region },
  }).trim();
}

/** a KMS key pre-generated with the AWS CLI: its key id (or, with query 'KeyMetadata.Arn', its ARN) */
export function awsCreateKey(t: AwsCliTarget, spec: string, usage: string, query = 'KeyMetadata.KeyId'): string {
  return awsKms(t, ['create-key', '--key-spec', spec, '--key-usage', usage, '--query', query]);
}
