// The official `@anthropic-ai/sdk` client against the real `v4host serve` binary on a synthetic
// model: messages (plain and streaming events), thinking blocks, a forced tool_use -> tool_result
// round trip, usage numbers, and every error case as the SDK's typed error with the right status.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test sdk_anthropic.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';

import { hasServeFlag, makeModel, modelForTest, startServer, validateSchema } from './v4host_server.mjs';

const MODEL = 'tiny-claude-compatible';
const KEY = 'sk-ant-v4host-test';
const CTX = 2048;

const { skip, model } = modelForTest('sdk_anthropic', () => makeModel({ layers: 4, seed: 13 }));

const smallBody = !skip && hasServeFlag('--max-body');
const BODY_LIMIT = smallBody ? 64 * 1024 : 8 * 1024 * 1024;

const weatherTool = {
  name: 'get_weather',
  description: 'Weather forecast for a city',
  input_schema: {
    type: 'object',
    properties: {
      city: { type: 'string', maxLength: 40 },
      days: { type: 'integer', minimum: 1, maximum: 7 },
      unit: { type: 'string', enum: ['c', 'f'] },
    },
    required: ['city', 'days'],
    additionalProperties: false,
  },
};

function checkUsage(u, maxOutput) {
  assert.ok(u, 'usage present');
  assert.ok(Number.isInteger(u.input_tokens) && u.input_tokens >= 0, `input_tokens ${u.input_tokens}`);
  assert.ok(u.input_tokens + (u.cache_read_input_tokens ?? 0) > 0, 'some prompt tokens');
  assert.ok(Number.isInteger(u.output_tokens) && u.output_tokens >= 1 && u.output_tokens <= maxOutput,
    `output_tokens ${u.output_tokens} in 1..${maxOutput}`);
}

describe('@anthropic-ai/sdk -> v4host serve', { skip: skip || false }, () => {
  let srv;
  let client;

  before(async () => {
    const extra = ['--ctx', String(CTX), '--api-key', KEY, '--served-model-name', MODEL, '--max-seqs', '8'];
    if (smallBody) extra.push('--max-body', '64K');
    srv = await startServer(model.dir, extra);
    client = new Anthropic({ baseURL: srv.base, apiKey: KEY, maxRetries: 0, timeout: 120000 });
  });

  after(async () => {
    if (srv) {
      const ex = await srv.stop();
      assert.ok(!ex.sig || ex.sig === 'SIGTERM', `server exited cleanly (${JSON.stringify(ex)})\n${srv.log().slice(-4000)}`);
    }
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('plain message: text block, stop_reason, usage', async () => {
    const r = await client.messages.create({
      model: MODEL,
      max_tokens: 8,
      system: 'You are terse.',
      messages: [{ role: 'user', content: 'Say hello.' }],
      temperature: 0,
    });
    assert.equal(r.type, 'message');
    assert.equal(r.role, 'assistant');
    assert.equal(r.model, MODEL);
    assert.ok(r.id.startsWith('msg_'));
    assert.ok(['end_turn', 'max_tokens'].includes(r.stop_reason), r.stop_reason);
    assert.ok(r.content.every((b) => b.type === 'text'), 'no thinking unless asked for');
    for (const b of r.content) assert.equal(typeof b.text, 'string');
    checkUsage(r.usage, 8);
    if (r.stop_reason === 'max_tokens') assert.equal(r.usage.output_tokens, 8);

    // The same conversation through the OpenAI route (non-thinking) counts the same prompt tokens.
    const o = await fetch(`${srv.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        model: MODEL, max_tokens: 8, temperature: 0, thinking: { type: 'disabled' },
        messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello.' }],
      }),
    }).then((x) => x.json());
    assert.equal(r.usage.input_tokens + (r.usage.cache_read_input_tokens ?? 0), o.usage.prompt_tokens);
    assert.equal(r.usage.output_tokens, o.usage.completion_tokens);
    assert.equal(r.content.map((b) => b.text).join(''), o.choices[0].message.content);
  });

  test('streaming: well-formed event sequence, deltas match the final message', async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 10,
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      temperature: 0,
    });
    const events = [];
    let text = '';
    stream.on('streamEvent', (e) => events.push(e));
    stream.on('text', (d) => { text += d; });
    const final = await stream.finalMessage();
    assert.equal(events[0].type, 'message_start');
    assert.equal(events[events.length - 1].type, 'message_stop');
    assert.equal(events[events.length - 2].type, 'message_delta');
    const open = new Set();
    for (const e of events) {
      if (e.type === 'content_block_start') { assert.ok(!open.has(e.index)); open.add(e.index); }
      if (e.type === 'content_block_delta') assert.ok(open.has(e.index), 'delta inside an open block');
      if (e.type === 'content_block_stop') { assert.ok(open.has(e.index)); open.delete(e.index); }
    }
    assert.equal(open.size, 0, 'every block closed');
    assert.equal(final.content.filter((b) => b.type === 'text').map((b) => b.text).join(''), text);
    assert.ok(['end_turn', 'max_tokens'].includes(final.stop_reason));
    assert.ok(final.usage.output_tokens >= 1 && final.usage.output_tokens <= 10);
    // Same greedy request without streaming: same text and token counts.
    const r = await client.messages.create({
      model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'Tell me a story.' }], temperature: 0,
    });
    assert.equal(r.content.map((b) => b.text).join(''), text);
    assert.equal(r.usage.output_tokens, final.usage.output_tokens);

    // Raw iteration with stream: true works too.
    const raw = await client.messages.create({
      model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }], stream: true,
    });
    const types = [];
    for await (const e of raw) types.push(e.type);
    assert.equal(types[0], 'message_start');
    assert.equal(types[types.length - 1], 'message_stop');
  });

  test('thinking enabled -> thinking blocks (plain and streamed); disabled -> none', async () => {
    const msgs = [{ role: 'user', content: 'What is 17 * 23?' }];
    // budget_tokens is accepted (the tiny test limits below keep the run short).
    const r = await client.messages.create({
      model: MODEL, max_tokens: 12, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: msgs,
    });
    assert.equal(r.content[0].type, 'thinking', JSON.stringify(r.content));
    assert.equal(typeof r.content[0].thinking, 'string');
    assert.ok(r.content[0].thinking.length > 0);
    assert.equal(typeof r.content[0].signature, 'string');
    checkUsage(r.usage, 12);

    const stream = client.messages.stream({
      model: MODEL, max_tokens: 8, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: msgs,
    });
    let thinking = '';
    stream.on('thinking', (d) => { thinking += d; });
    const final = await stream.finalMessage();
    assert.ok(thinking.length > 0, 'thinking_delta events streamed');
    assert.equal(final.content[0].type, 'thinking');
    assert.equal(final.content[0].thinking, thinking);

    const off = await client.messages.create({ model: MODEL, max_tokens: 6, thinking: { type: 'disabled' }, messages: msgs });
    assert.ok(off.content.every((b) => b.type !== 'thinking'), JSON.stringify(off.content));

    // A thinking block sent back in history is accepted.
    const next = await client.messages.create({
      model: MODEL, max_tokens: 4, thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [...msgs, { role: 'assistant', content: r.content.filter((b) => b.type !== 'text').concat([{ type: 'text', text: '391' }]) },
        { role: 'user', content: 'And 391 / 17?' }],
    });
    assert.equal(next.type, 'message');
  });

  test('tool round trip: forced tool_use validates -> tool_result -> answer', async () => {
    const messages = [{ role: 'user', content: 'What will the weather be in Paris for the next 3 days?' }];
    const r1 = await client.messages.create({
      model: MODEL,
      max_tokens: 200,
      tools: [weatherTool],
      tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true },
      messages,
    });
    assert.equal(r1.stop_reason, 'tool_use', JSON.stringify(r1));
    const uses = r1.content.filter((b) => b.type === 'tool_use');
    assert.equal(uses.length, 1, JSON.stringify(r1.content));
    const use = uses[0];
    assert.equal(use.name, 'get_weather');
    assert.ok(use.id && typeof use.id === 'string');
    assert.deepEqual(validateSchema(use.input, weatherTool.input_schema), [], JSON.stringify(use.input));
    checkUsage(r1.usage, 200);

    messages.push({ role: 'assistant', content: r1.content });
    messages.push({
      role: 'user',
      content: [{ type: 'tool_result', tool_use_id: use.id, content: JSON.stringify({ forecast: ['sun', 'rain', 'sun'] }) }],
    });
    const r2 = await client.messages.create({ model: MODEL, max_tokens: 8, tools: [weatherTool], messages, temperature: 0 });
    assert.ok(['end_turn', 'max_tokens'].includes(r2.stop_reason), r2.stop_reason);
    assert.ok(r2.content.some((b) => b.type === 'text'), JSON.stringify(r2.content));
    assert.ok(r2.usage.input_tokens + (r2.usage.cache_read_input_tokens ?? 0) > r1.usage.input_tokens + (r1.usage.cache_read_input_tokens ?? 0));
  });

  test('streamed tool_choice any: input_json_delta accumulates to a valid input', async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 200,
      tools: [weatherTool],
      tool_choice: { type: 'any' },
      messages: [{ role: 'user', content: 'Weather in Oslo tomorrow?' }],
    });
    let partial = '';
    stream.on('inputJson', (d) => { partial += d; });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const uses = final.content.filter((b) => b.type === 'tool_use');
    assert.ok(uses.length >= 1);
    for (const u of uses) {
      assert.equal(u.name, 'get_weather');
      assert.deepEqual(validateSchema(u.input, weatherTool.input_schema), [], JSON.stringify(u.input));
    }
    assert.ok(partial.length > 0, 'input_json_delta events streamed');
  });

  // ---- errors ----

  async function expectError(promise, Cls, status, needle) {
    await assert.rejects(promise, (e) => {
      assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, status);
      if (needle) assert.match(e.message, needle);
      return true;
    });
  }
  // Anthropic error shape: {"type": "error", "error": {"type": ..., "message": ...}}.
  async function expectAnthropicShape(promise, Cls, status, errType, needle) {
    await assert.rejects(promise, (e) => {
      assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, status);
      assert.equal(e.error?.type, 'error', JSON.stringify(e.error));
      assert.equal(e.error?.error?.type, errType, JSON.stringify(e.error));
      if (needle) assert.match(e.error.error.message, needle);
      return true;
    });
  }
  // What Claude Code sends: a system turn mid-conversation, the billing-header block, schemas
  // with keywords the grammar cannot express, server tools, anthropic-beta headers.
  const agentBody = () => ({
    model: MODEL, max_tokens: 6,
    system: [{ type: 'text', text: 'x-anthropic-billing-header: cc_version=2.1.197; cch=0a1b2c;' },
      { type: 'text', text: 'You are a coding agent.', cache_control: { type: 'ephemeral' } }],
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'List the files.' }] },
      { role: 'system', content: 'The user switched to plan mode.' },
      { role: 'assistant', content: [{ type: 'text', text: 'Sure.' }] },
      { role: 'user', content: 'Go on.' },
    ],
    tools: [
      { name: 'Glob', description: 'Find files', input_schema: { type: 'object', $schema: 'http://json-schema.org/draft-07/schema#',
        properties: { pattern: { type: 'string', pattern: '^[^\\0]+$' }, env: { type: 'object', propertyNames: { pattern: '^[A-Z_]+$' },
          additionalProperties: { type: 'string' } } }, required: ['pattern'], additionalProperties: false } },
      { type: 'web_search_20250305', name: 'web_search', max_uses: 5 },
    ],
  });
  const betaHeaders = { 'anthropic-beta': 'claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14' };

  test('agent-shaped request: mid-conversation system, every schema keyword, server tools, beta headers', async () => {
    const m = await client.messages.create(agentBody(), { headers: betaHeaders });
    assert.equal(m.type, 'message');
    assert.ok(m.usage.input_tokens + m.usage.cache_read_input_tokens > 0);
  });

  test('count_tokens is exactly what the same request is charged', async () => {
    const b = agentBody();
    const { max_tokens: _, ...countBody } = b;
    const counted = await client.messages.countTokens(countBody, { headers: betaHeaders });
    const m = await client.messages.create(b);
    assert.equal(counted.input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens + m.usage.cache_creation_input_tokens);
    // The billing-header nonce changes per request and is not part of the prompt.
    const other = agentBody();
    other.system[0].text = 'x-anthropic-billing-header: cc_version=2.1.197; cch=ffffff;';
    const { max_tokens: __, ...otherCount } = other;
    assert.equal((await client.messages.countTokens(otherCount)).input_tokens, counted.input_tokens);
  });

  test('streamed message_start usage has the prefix-cache split', async () => {
    const b = { ...agentBody(), stream: true };
    await client.messages.create({ ...agentBody() });  // warms the prefix cache
    const s = await client.messages.create(b);
    let start;
    for await (const ev of s) if (ev.type === 'message_start') start = ev.message.usage;
    assert.ok(start, 'message_start seen');
    assert.ok(start.cache_read_input_tokens > 0, JSON.stringify(start));
    assert.ok(Number.isInteger(start.input_tokens) && Number.isInteger(start.cache_creation_input_tokens));
  });

  const body = (extra = {}) => ({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'Hello' }], ...extra });

  test('400 BadRequestError: malformed JSON and bad parameters', async () => {
    await expectAnthropicShape(client.post('/v1/messages', { body: '{"model": ', headers: { 'content-type': 'application/json' } }),
      Anthropic.BadRequestError, 400, 'invalid_request_error', /JSON/);
    const cases = [
      [{ max_tokens: 0 }, /max_tokens/],
      [{ temperature: 7 }, /temperature/],
      [{ messages: [] }, /messages/],
      [{ messages: [{ role: 'robot', content: 'x' }] }, /role/],  // (role "system" is accepted: Claude Code sends it)
      [{ thinking: { type: 'sometimes' } }, /thinking\.type/],
      [{ tool_choice: { type: 'whatever' } }, /tool_choice/],
    ];
    for (const [extra, needle] of cases)
      await expectAnthropicShape(client.messages.create(body(extra)), Anthropic.BadRequestError, 400, 'invalid_request_error', needle);
  });

  test('400 BadRequestError: invalid tools schema', async () => {
    await expectAnthropicShape(client.messages.create(body({ tools: [{ name: 'bad name!', input_schema: { type: 'object' } }] })),
      Anthropic.BadRequestError, 400, 'invalid_request_error', /tool name/);
    await expectAnthropicShape(client.messages.create(body({ tools: [{ name: 'f', input_schema: { type: 'string' } }] })),
      Anthropic.BadRequestError, 400, 'invalid_request_error', /object/);
    await expectAnthropicShape(client.messages.create(body({ tools: [weatherTool], tool_choice: { type: 'tool', name: 'nope' } })),
      Anthropic.BadRequestError, 400, 'invalid_request_error', /not in 'tools'/);
  });

  test('400 BadRequestError: context overflow', async () => {
    const long = Array.from({ length: 3000 }, (_, i) => `word${i % 97}`).join(' ');
    await expectAnthropicShape(client.messages.create(body({ messages: [{ role: 'user', content: long }] })),
      Anthropic.BadRequestError, 400, 'invalid_request_error', /context/);
  });

  test('404 NotFoundError: unknown model', async () => {
    await expectAnthropicShape(client.messages.create(body({ model: 'claude-9' })), Anthropic.NotFoundError, 404, 'not_found_error',
      /does not exist/);
  });

  test(`413 APIError: body over the limit (${BODY_LIMIT} bytes)`, async () => {
    const huge = 'a'.repeat(BODY_LIMIT + 4096);
    await assert.rejects(client.messages.create(body({ messages: [{ role: 'user', content: huge }] })), (e) => {
      assert.ok(e instanceof Anthropic.APIError, `${e?.constructor?.name}: ${e?.message}`);
      assert.ok(!(e instanceof Anthropic.APIConnectionError), `connection error instead of 413: ${e.message}`);
      assert.equal(e.status, 413);
      assert.match(e.message, /exceeds/);
      return true;
    });
  });

  test('401 AuthenticationError: wrong API key (x-api-key)', async () => {
    const bad = new Anthropic({ baseURL: srv.base, apiKey: 'wrong-key', maxRetries: 0 });
    await expectError(bad.messages.create(body()), Anthropic.AuthenticationError, 401, /API key/);
  });

  test('still healthy after every error', async () => {
    const h = await fetch(`${srv.base}/health`);
    assert.equal(h.status, 200);
    const r = await client.messages.create(body());
    checkUsage(r.usage, 4);
  });
});
