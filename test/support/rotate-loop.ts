/** A child process for the multi-process tests: rotate KEY N times on STORE, print the count done. */
import { openKeyring } from '../../src/keys/open.js';

const [uri, name, n] = process.argv.slice(2) as [string, string, string];
const kr = await openKeyring(uri);
let done = 0;
for (let i = 0; i < Number(n); i++) {
  await kr.rotate(name);
  done++;
}
await kr.close();
process.stdout.write(`${done}\n`);
