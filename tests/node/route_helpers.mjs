// Helpers for the router tests: write a config, start `v4host route --config`, wait for /health.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePort, v4hostBin } from './v4host_server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'v4host-route-'));
}

// Starts the router on a free port with `yaml` (a function of the port, or a string without a
// listen section). Returns { port, base, url, proc, dir, ledger, log(), kill(sig), stop() }.
export async function startRouter(yaml, { env = {}, dir = tempDir(), extra = [] } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 3; ++attempt) {
    const port = await freePort();
    const ledger = path.join(dir, 'ledger.db');
    const cfgPath = path.join(dir, 'route.yaml');
    fs.writeFileSync(cfgPath, `listen: {host: 127.0.0.1, port: ${port}}\nledger: ${ledger}\naccess_log: ${path.join(dir, 'access.log')}\n${yaml}`);
    const proc = spawn(v4hostBin(), ['route', '--config', cfgPath, ...extra], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => { log += d; });
    let exited = null;
    proc.on('exit', (code, sig) => { exited = { code, sig }; });
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline && !exited) {
      try {
        const r = await fetch(`${base}/health`);
        if (r.status === 200) {
          await r.text();
          const waitExit = async () => { while (!exited) await sleep(20); return exited; };
          return {
            port, base, url: `${base}/v1`, proc, dir, ledger, cfgPath, log: () => log,
            accessLog: () => (fs.existsSync(path.join(dir, 'access.log')) ? fs.readFileSync(path.join(dir, 'access.log'), 'utf8') : ''),
            kill: async (sig) => { if (!exited) proc.kill(sig); return waitExit(); },
            cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
            stop: async () => {
              if (!exited) proc.kill('SIGTERM');
              const t0 = Date.now();
              while (!exited && Date.now() - t0 < 10000) await sleep(20);
              if (!exited) proc.kill('SIGKILL');
              return waitExit();
            },
          };
        }
      } catch { /* not yet */ }
      await sleep(50);
    }
    if (!exited) proc.kill('SIGKILL');
    lastErr = new Error(`v4host route did not become healthy (${exited ? JSON.stringify(exited) : 'timeout'}):\n${log}`);
    if (!/bind|in use/i.test(log)) break;
  }
  throw lastErr;
}

// Rows of a query on the ledger (sqlite3 CLI, -json).
export function ledgerRows(ledger, sql) {
  const r = spawnSync('sqlite3', ['-json', ledger, sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3 failed: ${r.stderr}`);
  return r.stdout.trim() ? JSON.parse(r.stdout) : [];
}

export function hasSqliteCli() {
  return spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;
}

export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

// `v4host <args>` synchronously.
export function runV4host(args, opts = {}) {
  return spawnSync(v4hostBin(), args, { encoding: 'utf8', ...opts });
}
