// Claude Code (`claude -p`, the real CLI from @anthropic-ai/claude-code, default tools) against
// the real `v4host serve` through ANTHROPIC_BASE_URL, with an isolated HOME and telemetry,
// error reporting, auto-update and other non-essential traffic off. Claude Code sends a ~20K
// token prompt with mid-conversation system turns, its full tool list (JSON schemas with
// propertyNames, pattern, ...), anthropic-beta headers and max_tokens 32000; the server caps
// generation (--max-output-tokens) and runs a synthetic model whose answers end, so the run
// must end in a successful result whose usage is what the server charged.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test agent_claude.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { makeEndingModel, runProcess as run, skipReason, startServer } from './v4host_server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLAUDE = path.join(here, 'node_modules', '.bin', 'claude');
const MODEL = 'v4host-test';

let skip = skipReason() || (fs.existsSync(CLAUDE) ? '' : 'claude CLI not installed (npm install in tests/node)');
let model = { dir: '' };
if (!skip) {
  model = makeEndingModel({ layers: 2, seed: 13 });
  skip = model.why;
}
if (skip) console.log(`# SKIP agent_claude: ${skip}`);

describe('Claude Code -> v4host serve (/v1/messages)', { skip: skip || false }, () => {
  let srv;
  let home;

  before(async () => {
    srv = await startServer(model.dir, ['--served-model-name', MODEL, '--max-output-tokens', '64', '--prefill-chunk', '1024']);
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'v4host-claude-'));
    fs.mkdirSync(path.join(home, 'work'));
  });
  after(async () => {
    if (srv) await srv.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('claude -p ends in a successful result; its usage is what the server charged', async () => {
    const env = {
      PATH: process.env.PATH, HOME: home, ANTHROPIC_BASE_URL: srv.base, ANTHROPIC_API_KEY: 'sk-test',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1',
      DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_MAX_RETRIES: '0', NO_COLOR: '1',
    };
    const t0 = Date.now();
    const r = await run(CLAUDE, ['-p', 'Say hi', '--model', MODEL, '--output-format', 'json'],
      { env, cwd: path.join(home, 'work'), timeoutMs: 240000 });
    const secs = (Date.now() - t0) / 1000;
    console.log(`# claude -p: ${secs.toFixed(1)} s`);
    const ctx = `exit ${r.code}\nstdout:\n${r.out.slice(-3000)}\nstderr:\n${r.err.slice(-3000)}\nserver:\n${srv.log().slice(-3000)}`;
    assert.equal(r.code, 0, ctx);
    const res = JSON.parse(r.out.trim().split('\n').at(-1));
    assert.equal(res.type, 'result', ctx);
    assert.equal(res.subtype, 'success', ctx);
    assert.equal(res.is_error, false, ctx);
    const lines = srv.log().split('\n').filter((l) => l.startsWith('POST /v1/messages '));
    assert.ok(lines.length >= 1, ctx);
    for (const l of lines) assert.match(l, / 200 .*stream/, l);
    const prompts = lines.map((l) => Number(/prompt=(\d+)/.exec(l)[1]));
    // Claude Code reports input (not cached) + cache_read summed over its requests.
    assert.equal(res.usage.input_tokens + res.usage.cache_read_input_tokens + res.usage.cache_creation_input_tokens,
      prompts.reduce((a, b) => a + b, 0), ctx);
    assert.ok(Math.max(...prompts) > 10000, 'Claude Code sends its long agent prompt with every tool');
  });
});
