// Codex CLI (`codex exec`, the real binary from @openai/codex) against the real `v4host serve`
// through a custom model provider with wire_api "responses" (the only wire API recent Codex
// accepts), in an isolated CODEX_HOME with update checks, analytics and feedback off and no
// network beyond the loopback server. A synthetic model whose answers end (makeEndingModel):
// the turn must complete — Codex treats a stream without response.completed, or a
// response.incomplete, as a failed turn — and its usage must be what the server charged.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test agent_codex.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { codexConfigToml, makeEndingModel, runProcess as run, skipReason, startServer } from './v4host_server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CODEX = path.join(here, 'node_modules', '.bin', 'codex');
const MODEL = 'v4host-test';

let skip = skipReason() || (fs.existsSync(CODEX) ? '' : 'codex CLI not installed (npm install in tests/node)');
let model = { dir: '' };
if (!skip) {
  model = makeEndingModel({ layers: 2, seed: 9 });
  skip = model.why;
}
if (skip) console.log(`# SKIP agent_codex: ${skip}`);
after(() => {
  if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
});

// An isolated CODEX_HOME (config + empty home and work directories) for `model` served at `url`.
function writeConfig(home, model, url) {
  fs.mkdirSync(path.join(home, 'home'));
  fs.mkdirSync(path.join(home, 'work'));
  fs.writeFileSync(path.join(home, 'config.toml'), codexConfigToml(model, url));
}

describe('Codex CLI -> v4host serve (/v1/responses)', { skip: skip || false }, () => {
  let srv;
  let home;

  before(async () => {
    // A cap on generated tokens keeps a turn short whatever the random model does.
    srv = await startServer(model.dir, ['--served-model-name', MODEL, '--max-output-tokens', '200']);
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'v4host-codex-'));
    writeConfig(home, MODEL, srv.url);
  });
  after(async () => {
    if (srv) await srv.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('codex exec completes a turn; its usage is what the server charged', async () => {
    const t0 = Date.now();
    const env = { PATH: process.env.PATH, HOME: path.join(home, 'home'), CODEX_HOME: home, NO_COLOR: '1', RUST_LOG: 'error' };
    const r = await run(CODEX, ['exec', '--json', '--skip-git-repo-check', 'Say hi'], { env, cwd: path.join(home, 'work'), timeoutMs: 180000 });
    const secs = (Date.now() - t0) / 1000;
    console.log(`# codex exec: ${secs.toFixed(1)} s`);
    const events = r.out.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l));
    const ctx = `exit ${r.code}\nstdout:\n${r.out.slice(-3000)}\nstderr:\n${r.err.slice(-3000)}\nserver:\n${srv.log().slice(-2000)}`;
    assert.equal(r.code, 0, ctx);
    const done = events.find((e) => e.type === 'turn.completed');
    assert.ok(done, `no turn.completed\n${ctx}`);
    assert.ok(!events.some((e) => e.type === 'turn.failed' || e.type === 'error'), ctx);
    // The only error item allowed is Codex's note that it has no metadata for this model name.
    for (const e of events.filter((x) => x.type === 'item.completed' && x.item.type === 'error'))
      assert.match(e.item.message, /metadata/, ctx);
    // Every request Codex made was a streamed /v1/responses answered 200; the last one's prompt
    // is the usage Codex reports (it sums its requests: one here).
    const lines = srv.log().split('\n').filter((l) => l.startsWith('POST /v1/responses'));
    assert.ok(lines.length >= 1, ctx);
    for (const l of lines) assert.match(l, / 200 .*stream/, l);
    const prompts = lines.map((l) => Number(/prompt=(\d+)/.exec(l)[1]));
    assert.equal(done.usage.input_tokens, prompts.reduce((a, b) => a + b, 0), ctx);
    assert.ok(done.usage.input_tokens > 1000, 'Codex sends its long agent prompt');
    assert.ok(done.usage.output_tokens >= 1);
  });
});

// With a model name Codex has metadata for ("gpt-5.5" here: its catalog gives that family the
// freeform apply_patch tool), Codex sends apply_patch as a custom tool whose format is a Lark
// grammar; the server must compile and enforce it (its log says so) and the turn still completes.
describe('Codex CLI apply_patch (custom tool, Lark grammar) -> enforced', { skip: skip || false }, () => {
  let srv;
  let home;
  const NAME = 'gpt-5.5';
  before(async () => {
    srv = await startServer(model.dir, ['--served-model-name', NAME, '--max-output-tokens', '200']);
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'v4host-codex-'));
    writeConfig(home, NAME, srv.url);
  });
  after(async () => {
    if (srv) await srv.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  test('codex exec sends apply_patch with its grammar; the server enforces it', async () => {
    const env = { PATH: process.env.PATH, HOME: path.join(home, 'home'), CODEX_HOME: home, NO_COLOR: '1', RUST_LOG: 'error' };
    const r = await run(CODEX, ['exec', '--json', '--skip-git-repo-check', 'Say hi'], { env, cwd: path.join(home, 'work'), timeoutMs: 180000 });
    const ctx = `exit ${r.code}\nstdout:\n${r.out.slice(-3000)}\nstderr:\n${r.err.slice(-3000)}\nserver:\n${srv.log().slice(-2000)}`;
    assert.equal(r.code, 0, ctx);
    const events = r.out.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l));
    assert.ok(events.find((e) => e.type === 'turn.completed'), `no turn.completed\n${ctx}`);
    assert.match(srv.log(), /grammar: custom tool 'apply_patch' input constrained by its lark grammar/, ctx);
    assert.doesNotMatch(srv.log(), /apply_patch.*not enforced/, ctx);
    for (const l of srv.log().split('\n').filter((x) => x.startsWith('POST /v1/responses'))) assert.match(l, / 200 /, l);
  });
});
