#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/ (built by `npm ci` through the prepare script).
// Bulk file writes (migration into fs / kes-fs stores) fsync in parallel on libuv's pool; it is sized
// before anything starts it.
process.env.UV_THREADPOOL_SIZE ??= '32';
import('../dist/cli/main.js')
  .then((m) => m.main(process.argv))
  .catch((err) => {
    process.stderr.write(`keyport: ${err?.message ? err.message : String(err)}\n`);
    process.exit(1);
  });
