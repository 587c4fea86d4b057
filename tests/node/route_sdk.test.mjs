// The official `openai` and `@anthropic-ai/sdk` clients, unchanged, through `v4host route` in
// front of a real `v4host serve` (a tiny synthetic V4 checkpoint) as the local tier and the
// scripted hosted stand-in; then the local tier goes down and traffic falls back.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { makeModel, skipReason, startServer } from './v4host_server.mjs';
import { hasSqliteCli, ledgerRows, startRouter } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

let why = skipReason();
let model = { dir: '', why: '' };
if (!why) {
  model = makeModel({ layers: 2 });
  why = model.why;
}

describe('route: official SDKs through the router', { skip: why || false }, () => {
  let local, hosted, router;

  before(async () => {
    local = await startServer(model.dir, ['--served-model-name', 'flash', '--max-seqs', '4', '--no-thinking']);
    hosted = await startStandin({ key: 'sk-h' });
    router = await startRouter(
      `upstreams:\n` +
      `  flash: {kind: v4host, base_url: "${local.url}", model: flash, residency: on-prem, cost: {amortised_per_hour: 2.0}, health: {interval: 300ms}}\n` +
      `  pro: {kind: deepseek, base_url: "${hosted.url}", api_key_env: HOSTED_KEY, model: ok, residency: cloud,\n` +
      `        cost: {tariff: [{from: 2026-01-01, input: 0.435, cached_input: 0.036, output: 0.87}]}}\n` +
      `  claude: {kind: anthropic, base_url: "${hosted.url}", api_key_env: HOSTED_KEY, model: claude-standin, residency: cloud}\n` +
      `routes:\n  auto: {chain: [flash, pro], verify: [non_empty]}\n  pro: {chain: [pro], stream: first_byte}\n  claude: {chain: [claude]}\n` +
      `rules:\n  - {match: {reasoning_effort: [high, max]}, route: pro}\n` +
      `keys:\n  dev: {key_env: DEV_KEY, team: eng}\nteams:\n  eng: {budget: {month: 100}}\nrequire_key: true\n`,
      { env: { HOSTED_KEY: 'sk-h', DEV_KEY: 'sk-dev' } });
  });

  after(async () => {
    if (router) { await router.stop(); router.cleanup(); }
    if (local) await local.stop();
    if (hosted) await hosted.close();
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('openai: models, chat, streaming chat, responses', async () => {
    const client = new OpenAI({ baseURL: router.url, apiKey: 'sk-dev', maxRetries: 0 });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id).sort(), ['auto', 'claude', 'pro']);
    const c = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 });
    assert.equal(c.model, 'auto');
    assert.equal(typeof c.choices[0].message.content, 'string');
    assert.ok(c.usage.completion_tokens > 0);
    const { data, response } = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 }).withResponse();
    assert.equal(response.headers.get('x-v4host-upstream'), 'flash');
    assert.ok(data.id.startsWith('chatcmpl-'));
    const stream = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, stream: true,
      stream_options: { include_usage: true } });
    let text = '';
    let usage = null;
    for await (const ch of stream) {
      text += ch.choices[0]?.delta?.content || '';
      if (ch.usage) usage = ch.usage;
    }
    assert.ok(text.length > 0);
    assert.ok(usage && usage.completion_tokens > 0);
    const hard = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Prove it' }], reasoning_effort: 'high', max_tokens: 8 });
    assert.equal(hard.choices[0].message.content, 'Hello from the hosted stand-in.');
    // A first_byte route in the client's own dialect streams the upstream's chunks through as they are.
    const pt = await client.chat.completions.create({ model: 'pro', messages: [{ role: 'user', content: 'Hi' }], stream: true,
      stream_options: { include_usage: true } });
    let ptText = '';
    let ptUsage = null;
    for await (const ch of pt) {
      ptText += ch.choices[0]?.delta?.content || '';
      if (ch.usage) ptUsage = ch.usage;
    }
    assert.equal(ptText, 'Hello from the hosted stand-in.');
    assert.ok(ptUsage && ptUsage.prompt_tokens > 0);
    const r = await client.responses.create({ model: 'auto', input: 'Hi', max_output_tokens: 8 });
    assert.equal(r.object, 'response');
    assert.equal(typeof r.output_text, 'string');
    await assert.rejects(new OpenAI({ baseURL: router.url, apiKey: 'wrong', maxRetries: 0 }).models.list(), (e) => e.status === 401);
  });

  test('anthropic: messages, streaming messages', async () => {
    const client = new Anthropic({ baseURL: router.base, apiKey: 'sk-dev', maxRetries: 0 });
    const m = await client.messages.create({ model: 'auto', max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(m.type, 'message');
    assert.equal(m.content[0].type, 'text');
    assert.ok(m.usage.output_tokens > 0);
    const s = client.messages.stream({ model: 'pro', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] });
    let text = '';
    for await (const ev of s) if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    const final = await s.finalMessage();
    assert.equal(text, 'Hello from the hosted stand-in.');
    assert.equal(final.stop_reason, 'end_turn');
  });

  test('an Anthropic upstream behind an OpenAI client: translated both ways, streaming and not', async () => {
    const client = new OpenAI({ baseURL: router.url, apiKey: 'sk-dev', maxRetries: 0 });
    const c = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] });
    assert.equal(c.choices[0].message.content, 'Hello from the Anthropic stand-in.');
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.equal(c.usage.prompt_tokens, 11);
    const sent = hosted.requests.at(-1);
    assert.equal(sent.api, 'messages');
    assert.equal(sent.headers['x-api-key'], 'sk-h');
    assert.equal(sent.body.model, 'claude-standin');
    const s = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    let text = '';
    for await (const ch of s) text += ch.choices[0]?.delta?.content || '';
    assert.equal(text, 'Hello from the Anthropic stand-in.');
    // Reasoning asked for in OpenAI's form reaches Anthropic as a thinking budget it accepts, or,
    // where max_tokens leaves no room for the 1024-token minimum, as a request without thinking.
    for (const [maxTokens, budget] of [[8, undefined], [4096, 2048]]) {
      const t = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'Think' }], reasoning_effort: 'medium', max_tokens: maxTokens });
      assert.equal(t.choices[0].message.content, 'Hello from the Anthropic stand-in.');
      assert.equal(hosted.requests.at(-1).body.thinking?.budget_tokens, budget);
    }
  });

  test('the local tier goes down: requests fall back to the hosted tier; the ledger shows both', async () => {
    await local.stop();
    const client = new OpenAI({ baseURL: router.url, apiKey: 'sk-dev', maxRetries: 0 });
    for (let i = 0; i < 3; ++i) {
      const { data, response } = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: `Hi ${i}` }], max_tokens: 8 }).withResponse();
      assert.equal(response.headers.get('x-v4host-upstream'), 'pro');
      assert.equal(data.choices[0].message.content, 'Hello from the hosted stand-in.');
    }
    // The active health check notices and opens the breaker: no more attempts at the dead tier.
    await new Promise((r) => setTimeout(r, 800));
    const h = await (await fetch(`${router.base}/health`)).json();
    assert.equal(h.upstreams.flash.healthy, false);
    assert.equal(h.upstreams.flash.breaker, 'open');
    const { response } = await client.chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 }).withResponse();
    assert.equal(response.headers.get('x-v4host-hops'), '2');
    if (hasSqliteCli()) {
      const last = ledgerRows(router.ledger, `SELECT h.upstream, h.outcome FROM hops h WHERE request_id = '${response.headers.get('x-v4host-request-id')}' ORDER BY n`);
      assert.deepEqual(last.map((x) => [x.upstream, x.outcome]), [['flash', 'circuit_open'], ['pro', 'ok']]);
      const teams = ledgerRows(router.ledger, `SELECT team, COUNT(*) AS n, SUM(amortised_usd) > 0 AS am, SUM(cost_usd) > 0 AS tariff FROM requests GROUP BY team`);
      assert.deepEqual(teams, [{ team: 'eng', n: teams[0].n, am: 1, tariff: 1 }]);
    }
    const log = router.accessLog();
    assert.ok(!log.includes('Hi 1'), 'no prompt text in the access log');
    assert.match(log, /"outcome":"fallback_ok"/);
  });
});
