// The official `openai` npm client against the real `v4host serve` binary on a synthetic model:
// plain and streaming chat, reasoning modes, a forced tool call round trip, json_schema output,
// usage numbers, and every error case as the SDK's typed error with the right status.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test sdk_openai.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { hasServeFlag, makeModel, modelForTest, startServer, validateSchema } from './v4host_server.mjs';

const MODEL = 'tiny-test';
const KEY = 'sk-v4host-test';
const CTX = 2048;

const { skip, model } = modelForTest('sdk_openai', () => makeModel({ layers: 4, seed: 11 }));

// A small --max-body when this build has the flag; otherwise the default 8 MiB is what we exceed.
const smallBody = !skip && hasServeFlag('--max-body');
const BODY_LIMIT = smallBody ? 64 * 1024 : 8 * 1024 * 1024;

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather forecast for a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', maxLength: 40 },
        days: { type: 'integer', minimum: 1, maximum: 7 },
        unit: { type: 'string', enum: ['c', 'f'] },
      },
      required: ['city', 'days'],
      additionalProperties: false,
    },
  },
};

function checkUsage(u, { maxCompletion } = {}) {
  assert.ok(u, 'usage present');
  assert.ok(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `prompt_tokens ${u.prompt_tokens}`);
  assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 1, `completion_tokens ${u.completion_tokens}`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, 'prompt + completion = total');
  if (maxCompletion !== undefined) assert.ok(u.completion_tokens <= maxCompletion, `completion ${u.completion_tokens} <= ${maxCompletion}`);
}

describe('openai SDK -> v4host serve', { skip: skip || false }, () => {
  let srv;
  let client;

  before(async () => {
    const extra = ['--ctx', String(CTX), '--api-key', KEY, '--served-model-name', MODEL, '--max-seqs', '8'];
    if (smallBody) extra.push('--max-body', '64K');
    srv = await startServer(model.dir, extra);
    client = new OpenAI({ baseURL: srv.url, apiKey: KEY, maxRetries: 0, timeout: 120000 });
  });

  after(async () => {
    if (srv) {
      const ex = await srv.stop();
      assert.ok(!ex.sig || ex.sig === 'SIGTERM', `server exited cleanly (${JSON.stringify(ex)})\n${srv.log().slice(-4000)}`);
    }
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('models.list shows the served model', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.deepEqual(ids, [MODEL]);
    const m = await client.models.retrieve(MODEL);
    assert.equal(m.id, MODEL);
  });

  test('plain chat: content, finish_reason, usage adds up', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello.' }],
      max_tokens: 8,
      temperature: 0,
      thinking: { type: 'disabled' },
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, MODEL);
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
    assert.ok(!('reasoning_content' in c.message), 'no reasoning_content with thinking disabled');
    checkUsage(r.usage, { maxCompletion: 8 });
    if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, 8);
    // max_completion_tokens is the newer spelling of the same limit.
    const r2 = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 3, temperature: 0,
      thinking: { type: 'disabled' },
    });
    checkUsage(r2.usage, { maxCompletion: 3 });
  });

  test('greedy chat is deterministic and seed makes sampling reproducible', async () => {
    const body = { model: MODEL, messages: [{ role: 'user', content: 'Count to three.' }], max_tokens: 6, thinking: { type: 'disabled' } };
    const a = await client.chat.completions.create({ ...body, temperature: 0 });
    const b = await client.chat.completions.create({ ...body, temperature: 0 });
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    const s1 = await client.chat.completions.create({ ...body, temperature: 0.9, top_p: 0.95, seed: 42 });
    const s2 = await client.chat.completions.create({ ...body, temperature: 0.9, top_p: 0.95, seed: 42 });
    assert.equal(s1.choices[0].message.content, s2.choices[0].message.content);
  });

  test('streaming chat with stream_options.include_usage', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      thinking: { type: 'disabled' },
    });
    const chunks = [];
    for await (const ch of stream) chunks.push(ch);
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    for (const ch of chunks) {
      assert.equal(ch.object, 'chat.completion.chunk');
      assert.equal(ch.model, MODEL);
    }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, [], 'usage chunk has no choices');
    const finishes = chunks.flatMap((ch) => ch.choices).filter((c) => c.finish_reason);
    assert.equal(finishes.length, 1, 'exactly one finish_reason');
    assert.ok(['stop', 'length'].includes(finishes[0].finish_reason));
    const text = chunks.flatMap((ch) => ch.choices).map((c) => c.delta?.content ?? '').join('');
    checkUsage(last.usage, { maxCompletion: 10 });
    // Same greedy request without streaming gives the same text and usage.
    const r = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 10, temperature: 0,
      thinking: { type: 'disabled' },
    });
    assert.equal(r.choices[0].message.content, text);
    assert.equal(r.usage.completion_tokens, last.usage.completion_tokens);
    assert.equal(r.usage.prompt_tokens, last.usage.prompt_tokens);
  });

  test('reasoning: reasoning_effort high returns reasoning_content, thinking disabled does not', async () => {
    const msgs = [{ role: 'user', content: 'What is 17 * 23?' }];
    const on = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8, reasoning_effort: 'high' });
    const m = on.choices[0].message;
    assert.equal(typeof m.reasoning_content, 'string', JSON.stringify(m));
    assert.ok(m.reasoning_content.length > 0, 'reasoning text generated');
    assert.ok(on.usage.completion_tokens_details.reasoning_tokens > 0);
    assert.ok(on.usage.completion_tokens_details.reasoning_tokens <= on.usage.completion_tokens);
    checkUsage(on.usage, { maxCompletion: 8 });

    // Extra body fields passed through the SDK's request options.
    const off = await client.chat.completions.create(
      { model: MODEL, messages: msgs, max_tokens: 8 },
      { body: { model: MODEL, messages: msgs, max_tokens: 8, thinking: { type: 'disabled' } } },
    );
    assert.ok(!('reasoning_content' in off.choices[0].message), JSON.stringify(off.choices[0].message));
    assert.equal(off.usage.completion_tokens_details.reasoning_tokens, 0);
    // Other spellings clients use.
    const none = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 4, reasoning_effort: 'none' });
    assert.ok(!('reasoning_content' in none.choices[0].message));
    const kw = await client.chat.completions.create({
      model: MODEL, messages: msgs, max_tokens: 4, chat_template_kwargs: { thinking: true },
    });
    assert.equal(typeof kw.choices[0].message.reasoning_content, 'string');

    // Streaming: reasoning arrives as reasoning_content deltas.
    const stream = await client.chat.completions.create({
      model: MODEL, messages: msgs, max_tokens: 6, reasoning_effort: 'high', stream: true, stream_options: { include_usage: true },
    });
    let reasoning = '';
    let usage;
    for await (const ch of stream) {
      for (const c of ch.choices) reasoning += c.delta?.reasoning_content ?? '';
      if (ch.usage) usage = ch.usage;
    }
    assert.ok(reasoning.length > 0, 'reasoning_content deltas streamed');
    assert.ok(usage.completion_tokens_details.reasoning_tokens > 0);
  });

  test('tool call round trip: forced call validates against the schema -> tool result -> answer', async () => {
    const messages = [{ role: 'user', content: 'What will the weather be in Paris for the next 3 days?' }];
    const r1 = await client.chat.completions.create({
      model: MODEL,
      messages,
      tools: [weatherTool],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      max_tokens: 200,
      seed: 3,
    });
    const c1 = r1.choices[0];
    assert.equal(c1.finish_reason, 'tool_calls', JSON.stringify(r1));
    assert.equal(c1.message.tool_calls.length, 1, 'parallel_tool_calls false -> one call');
    const call = c1.message.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.ok(call.id && typeof call.id === 'string');
    const args = JSON.parse(call.function.arguments);
    assert.deepEqual(validateSchema(args, weatherTool.function.parameters), [], call.function.arguments);
    checkUsage(r1.usage, { maxCompletion: 200 });

    // Send the call and its result back; the model answers.
    messages.push(c1.message);
    messages.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ forecast: ['sun', 'rain', 'sun'], unit: 'c' }) });
    // tool_choice auto (the default with tools), greedy: a random-weight model never opens a
    // DSML block here, so the reply is text.
    const r2 = await client.chat.completions.create({
      model: MODEL, messages, tools: [weatherTool], tool_choice: 'auto', max_tokens: 8, temperature: 0,
    });
    const c2 = r2.choices[0];
    assert.ok(['stop', 'length'].includes(c2.finish_reason), c2.finish_reason);
    assert.equal(typeof c2.message.content, 'string');
    assert.ok(!c2.message.tool_calls, JSON.stringify(c2.message));
    // The history with the call and its result is part of the prompt.
    assert.ok(r2.usage.prompt_tokens > r1.usage.prompt_tokens);
    checkUsage(r2.usage, { maxCompletion: 8 });
  });

  test('streamed tool_choice required: accumulated argument deltas validate', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Oslo tomorrow?' }],
      tools: [weatherTool],
      tool_choice: 'required',
      max_tokens: 200,
      seed: 5,
      stream: true,
      thinking: { type: 'disabled' },
    });
    const calls = new Map();
    let finish = null;
    for await (const ch of stream) {
      for (const c of ch.choices) {
        for (const tc of c.delta?.tool_calls ?? []) {
          if (!calls.has(tc.index)) calls.set(tc.index, { id: tc.id, name: tc.function?.name, args: '' });
          calls.get(tc.index).args += tc.function?.arguments ?? '';
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.ok(calls.size >= 1);
    for (const c of calls.values()) {
      assert.equal(c.name, 'get_weather');
      assert.ok(c.id);
      assert.deepEqual(validateSchema(JSON.parse(c.args), weatherTool.function.parameters), [], c.args);
    }
  });

  test('response_format json_schema output parses and validates', async () => {
    const schema = {
      type: 'object',
      properties: {
        name: { type: 'string', maxLength: 20 },
        age: { type: 'integer', minimum: 0, maximum: 150 },
        tags: { type: 'array', items: { type: 'string', maxLength: 10 }, maxItems: 3 },
        role: { type: 'string', enum: ['admin', 'user'] },
      },
      required: ['name', 'age', 'tags', 'role'],
      additionalProperties: false,
    };
    for (const seed of [1, 2]) {
      const r = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
        max_tokens: 120,
        seed,
        thinking: { type: 'disabled' },
      });
      const content = r.choices[0].message.content;
      let v;
      assert.doesNotThrow(() => { v = JSON.parse(content); }, content);
      assert.deepEqual(validateSchema(v, schema), [], content);
    }
    const o = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Any JSON object.' }], response_format: { type: 'json_object' },
      max_tokens: 60, seed: 4, thinking: { type: 'disabled' },
    });
    const obj = JSON.parse(o.choices[0].message.content);
    assert.equal(typeof obj, 'object');
    assert.ok(obj !== null && !Array.isArray(obj));
  });

  test('legacy completions endpoint', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(typeof r.choices[0].text, 'string');
    checkUsage(r.usage, { maxCompletion: 5 });
  });

  // ---- errors: each a typed SDK error with the right status and an OpenAI-shaped body ----

  async function expectError(promise, Cls, status, needle) {
    await assert.rejects(promise, (e) => {
      assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, status);
      assert.ok(e.error && typeof e.error.message === 'string', `OpenAI error shape: ${JSON.stringify(e.error)}`);
      assert.ok(typeof e.type === 'string' && e.type.length > 0, 'error.type present');
      if (needle) assert.match(e.error.message, needle);
      return true;
    });
  }
  const chatBody = (extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, ...extra });

  test('400 BadRequestError: malformed JSON body', async () => {
    await expectError(
      client.post('/chat/completions', { body: '{"model": ', headers: { 'content-type': 'application/json' } }),
      OpenAI.BadRequestError, 400, /JSON/);
  });

  test('400 BadRequestError: bad parameter values', async () => {
    const cases = [
      [{ temperature: 7 }, /temperature/],
      [{ top_p: 'high' }, /top_p/],
      [{ max_tokens: 0 }, /max_tokens/],
      [{ top_logprobs: 3 }, /logprobs/],
      [{ stop: 5 }, /stop/],
      [{ messages: [{ role: 'wizard', content: 'x' }] }, /role/],
      [{ messages: [] }, /messages/],
      [{ reasoning_effort: 'extreme' }, /reasoning_effort/],
    ];
    for (const [extra, needle] of cases) await expectError(client.chat.completions.create(chatBody(extra)), OpenAI.BadRequestError, 400, needle);
  });

  test('400 BadRequestError: invalid tools and schemas', async () => {
    await expectError(client.chat.completions.create(chatBody({ tools: [{ type: 'function', function: { name: 'bad name!' } }] })),
      OpenAI.BadRequestError, 400, /tool name/);
    await expectError(client.chat.completions.create(chatBody({
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'string' } } }],
    })), OpenAI.BadRequestError, 400, /object/);
    await expectError(client.chat.completions.create(chatBody({
      tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'nope' } },
    })), OpenAI.BadRequestError, 400, /not in 'tools'/);
    await expectError(client.chat.completions.create(chatBody({
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } },
    })), OpenAI.BadRequestError, 400, /pattern/);
  });

  test('400 BadRequestError: context overflow', async () => {
    const long = Array.from({ length: 3000 }, (_, i) => `word${i % 97}`).join(' ');
    await expectError(client.chat.completions.create(chatBody({ messages: [{ role: 'user', content: long }] })),
      OpenAI.BadRequestError, 400, /context/);
    const e = await client.chat.completions.create(chatBody({ messages: [{ role: 'user', content: long }] })).catch((x) => x);
    assert.equal(e.code, 'context_length_exceeded');
  });

  test('404 NotFoundError: unknown model', async () => {
    await expectError(client.chat.completions.create(chatBody({ model: 'gpt-9' })), OpenAI.NotFoundError, 404, /does not exist/);
    await expectError(client.models.retrieve('gpt-9'), OpenAI.NotFoundError, 404);
  });

  test(`413 APIError: body over the limit (${BODY_LIMIT} bytes)`, async () => {
    const huge = 'a'.repeat(BODY_LIMIT + 4096);
    await assert.rejects(client.chat.completions.create(chatBody({ messages: [{ role: 'user', content: huge }] })), (e) => {
      assert.ok(e instanceof OpenAI.APIError, `${e?.constructor?.name}: ${e?.message}`);
      assert.ok(!(e instanceof OpenAI.APIConnectionError), `connection error instead of 413: ${e.message}`);
      assert.equal(e.status, 413);
      assert.match(e.error?.message ?? '', /exceeds/);
      return true;
    });
  });

  test('401 AuthenticationError: missing or wrong API key', async () => {
    const bad = new OpenAI({ baseURL: srv.url, apiKey: 'wrong-key', maxRetries: 0 });
    await expectError(bad.chat.completions.create(chatBody()), OpenAI.AuthenticationError, 401, /API key/);
    await expectError(bad.models.list(), OpenAI.AuthenticationError, 401);
    const none = new OpenAI({ baseURL: srv.url, apiKey: 'x', maxRetries: 0, defaultHeaders: { Authorization: null } });
    await expectError(none.models.list(), OpenAI.AuthenticationError, 401, /missing/);
  });

  test('still healthy after every error', async () => {
    const h = await fetch(`${srv.base}/health`);
    assert.equal(h.status, 200);
    const r = await client.chat.completions.create(chatBody({ thinking: { type: 'disabled' } }));
    checkUsage(r.usage, { maxCompletion: 4 });
  });
});
