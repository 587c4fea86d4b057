// The two coding agents a team moves onto self-hosted V4, unchanged, through `v4host route`:
// Claude Code (`claude -p`, Anthropic Messages) and Codex CLI (`codex exec`, Responses), each
// with its own model name that no route is called (`claude-sonnet-4-5`, `gpt-5.5`), so the
// router's default route sends them to the local tier, a real `v4host serve` (a synthetic model
// whose answers end), with the scripted hosted stand-in behind it in the chain. Keys are
// required: each agent's key (x-api-key for Claude Code, Bearer for Codex) names its team.
// What must hold: each agent's run succeeds; every request it made was answered by the local
// tier and recorded once in the ledger, under the agent's key and team, with the tokens the
// server charged, no hosted spend and the local tier's amortised cost; the usage each agent
// reports is the ledger's.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test agent_route.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { codexConfigToml, makeEndingModel, runProcess as run, skipReason, startServer } from './v4host_server.mjs';
import { hasSqliteCli, ledgerRows, startRouter } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CLAUDE = path.join(here, 'node_modules', '.bin', 'claude');
const CODEX = path.join(here, 'node_modules', '.bin', 'codex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let skip = skipReason()
  || (fs.existsSync(CLAUDE) ? '' : 'claude CLI not installed (npm install in tests/node)')
  || (fs.existsSync(CODEX) ? '' : 'codex CLI not installed (npm install in tests/node)')
  || (hasSqliteCli() ? '' : 'sqlite3 CLI not installed (scripts/setup.sh)');
let model = { dir: '' };
if (!skip) {
  model = makeEndingModel({ layers: 2, seed: 13 });
  skip = model.why;
}
if (skip) console.log(`# SKIP agent_route: ${skip}`);

// The ledger's rows for one key, once `want` requests are committed (the ledger commits in groups
// off the request path, so a row can land a moment after its response).
async function rowsFor(ledger, key, want) {
  const sql = `SELECT id, api, route, upstream, outcome, status, team, prompt_tokens, completion_tokens, cost_usd,
    amortised_usd, hops, (SELECT COUNT(*) FROM hops h WHERE h.request_id = r.id) AS hop_rows FROM requests r
    WHERE api_key = '${key}' ORDER BY ts`;
  let rows = [];
  for (let t0 = Date.now(); Date.now() - t0 < 10000; await sleep(100)) {
    rows = ledgerRows(ledger, sql);
    if (rows.length >= want) break;
  }
  return rows;
}

// The local server's access lines for the requests it served, with their prompt token counts
// (the router speaks Chat Completions to a v4host upstream whatever the client's API).
function served(srv) {
  return srv.log().split('\n').filter((l) => l.startsWith('POST /v1/'))
    .map((l) => ({ line: l, prompt: Number(/prompt=(\d+)/.exec(l)?.[1] ?? NaN) }));
}

// The ledger rows of one agent's key for the `lines` the local tier served: one row each, every
// one answered by the local tier on the default route in one hop, under the agents' team, with no
// hosted spend and the local tier's amortised cost.
async function agentRows(ledger, key, api, lines, ctx) {
  const rows = await rowsFor(ledger, key, lines.length);
  assert.equal(rows.length, lines.length, `one ledger row per request the local tier served\n${JSON.stringify(rows)}\n${ctx()}`);
  for (const row of rows) {
    const at = JSON.stringify(row);
    assert.equal(row.api, api, at);
    assert.equal(row.route, 'coding', at);
    assert.equal(row.upstream, 'flash', at);
    assert.equal(row.outcome, 'ok', at);
    assert.equal(row.status, 200, at);
    assert.equal(row.team, 'agents', at);
    assert.equal(row.hops, 1, at);
    assert.equal(row.hop_rows, 1, at);
    assert.equal(row.cost_usd, 0, at);
    assert.ok(row.amortised_usd > 0, at);
  }
  return rows;
}

describe('coding agents -> v4host route -> v4host serve', { skip: skip || false }, () => {
  let local, hosted, router, home;

  before(async () => {
    // A cap on generated tokens keeps a turn short; Codex fails a turn whose answer hits it
    // (response.incomplete), so it is agent_codex's 200, not 64.
    local = await startServer(model.dir, ['--served-model-name', 'flash', '--max-output-tokens', '200', '--prefill-chunk', '1024']);
    hosted = await startStandin({ key: 'sk-h' });
    router = await startRouter(
      `upstreams:\n` +
      `  flash: {kind: v4host, base_url: "${local.url}", model: flash, residency: on-prem, cost: {amortised_per_hour: 2.0}}\n` +
      `  pro: {kind: deepseek, base_url: "${hosted.url}", api_key_env: HOSTED_KEY, model: ok, residency: cloud,\n` +
      `        cost: {tariff: [{from: 2026-01-01, input: 0.435, cached_input: 0.036, output: 0.87}]}}\n` +
      `routes:\n  coding: {chain: [flash, pro]}\n  pro: {chain: [pro]}\n` +
      `default_route: coding\n` +
      `keys:\n  claude: {key_env: CLAUDE_KEY, team: agents}\n  codex: {key_env: CODEX_KEY, team: agents}\n` +
      `teams:\n  agents: {budget: {month: 50}}\nrequire_key: true\n`,
      { env: { HOSTED_KEY: 'sk-h', CLAUDE_KEY: 'sk-claude', CODEX_KEY: 'sk-codex' } });
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'v4host-agent-route-'));
  });
  after(async () => {
    if (router) { await router.stop(); router.cleanup(); }
    if (local) await local.stop();
    if (hosted) await hosted.close();
    if (home) fs.rmSync(home, { recursive: true, force: true });
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('Claude Code: a successful run, every request on the local tier, its usage the ledger\'s', async () => {
    const h = path.join(home, 'claude');
    fs.mkdirSync(path.join(h, 'work'), { recursive: true });
    const env = {
      PATH: process.env.PATH, HOME: h, ANTHROPIC_BASE_URL: router.base, ANTHROPIC_API_KEY: 'sk-claude',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1', DISABLE_ERROR_REPORTING: '1',
      DISABLE_AUTOUPDATER: '1', CLAUDE_CODE_MAX_RETRIES: '0', NO_COLOR: '1',
    };
    const before = served(local).length;
    const r = await run(CLAUDE, ['-p', 'Say hi', '--model', 'claude-sonnet-4-5', '--output-format', 'json'],
      { env, cwd: path.join(h, 'work'), timeoutMs: 240000 });
    const ctx = () => `exit ${r.code}\nstdout:\n${r.out.slice(-2000)}\nstderr:\n${r.err.slice(-2000)}\nrouter:\n${router.log().slice(-2000)}\nserver:\n${local.log().slice(-2000)}`;
    assert.equal(r.code, 0, ctx());
    const res = JSON.parse(r.out.trim().split('\n').at(-1));
    assert.equal(res.subtype, 'success', ctx());
    assert.equal(res.is_error, false, ctx());

    const lines = served(local).slice(before);
    assert.ok(lines.length >= 1, ctx());
    const rows = await agentRows(router.ledger, 'claude', 'anthropic_messages', lines, ctx);
    const ledgerPrompt = rows.reduce((a, x) => a + x.prompt_tokens, 0);
    assert.equal(ledgerPrompt, lines.reduce((a, x) => a + x.prompt, 0), ctx());
    assert.ok(Math.max(...rows.map((x) => x.prompt_tokens)) > 10000, 'Claude Code sends its long agent prompt with every tool');
    // Claude Code sums input (not cached) + cache reads + cache writes over its requests.
    assert.equal(res.usage.input_tokens + res.usage.cache_read_input_tokens + res.usage.cache_creation_input_tokens, ledgerPrompt, ctx());
    assert.equal(res.usage.output_tokens, rows.reduce((a, x) => a + x.completion_tokens, 0), ctx());
    assert.equal(hosted.requests.length, 0, 'nothing reached the hosted tier');
  });

  test('Codex CLI: a completed turn, every request on the local tier, its usage the ledger\'s', async () => {
    const h = path.join(home, 'codex');
    fs.mkdirSync(path.join(h, 'home'), { recursive: true });
    fs.mkdirSync(path.join(h, 'work'));
    fs.writeFileSync(path.join(h, 'config.toml'), codexConfigToml('gpt-5.5', router.url, { envKey: 'TEAM_GATEWAY_KEY', providerName: 'team gateway' }));
    const env = { PATH: process.env.PATH, HOME: path.join(h, 'home'), CODEX_HOME: h, TEAM_GATEWAY_KEY: 'sk-codex', NO_COLOR: '1', RUST_LOG: 'error' };
    const before = served(local).length;
    const r = await run(CODEX, ['exec', '--json', '--skip-git-repo-check', 'Say hi'], { env, cwd: path.join(h, 'work'), timeoutMs: 180000 });
    const ctx = () => `exit ${r.code}\nstdout:\n${r.out.slice(-2000)}\nstderr:\n${r.err.slice(-2000)}\nrouter:\n${router.log().slice(-2000)}\nserver:\n${local.log().slice(-2000)}`;
    assert.equal(r.code, 0, ctx());
    const events = r.out.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l));
    const done = events.find((e) => e.type === 'turn.completed');
    assert.ok(done, `no turn.completed\n${ctx()}`);
    assert.ok(!events.some((e) => e.type === 'turn.failed' || e.type === 'error'), ctx());

    const lines = served(local).slice(before);
    assert.ok(lines.length >= 1, ctx());
    const rows = await agentRows(router.ledger, 'codex', 'responses', lines, ctx);
    const ledgerPrompt = rows.reduce((a, x) => a + x.prompt_tokens, 0);
    assert.equal(ledgerPrompt, lines.reduce((a, x) => a + x.prompt, 0), ctx());
    assert.equal(done.usage.input_tokens, ledgerPrompt, ctx());
    assert.ok(done.usage.input_tokens > 1000, 'Codex sends its long agent prompt');
    assert.equal(hosted.requests.length, 0, 'nothing reached the hosted tier');
  });
});
