// Streamed forced tool calls on all three chat-style APIs (chat completions with
// tool_choice "required", Anthropic messages with {"type": "any"}, Responses with "required"),
// parallel calls allowed, over many seeds, budgets and both reasoning modes: every call a client
// sees parses and validates against its schema — when the budget cannot fit another complete
// call the list ends instead of streaming a cut or degenerate one — and a budget below one
// complete call is a 400 naming max_tokens. The official `openai` and `@anthropic-ai/sdk`
// clients against the real binary.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test forced_tools.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { makeModel, skipReason, startServer, validateSchema } from './v4host_server.mjs';

const MODEL = 'tiny-test';
let skip = skipReason();
let model = { dir: '' };
if (!skip) {
  model = makeModel({ layers: 2, seed: 3 });
  skip = model.why;
}
if (skip) console.log(`# SKIP forced_tools: ${skip}`);

const schema = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 24 },
    days: { type: 'integer', minimum: 1, maximum: 7 },
    unit: { type: 'string', enum: ['c', 'f'] },
  },
  required: ['city', 'days'],
  additionalProperties: false,
};
const SEEDS = [1, 2, 3, 4, 5];
const BUDGETS = [70, 90, 130, 200];

describe('streamed forced tool calls: every emitted call is complete and valid', { skip: skip || false }, () => {
  let srv;
  let oai;
  let ant;
  before(async () => {
    srv = await startServer(model.dir, ['--served-model-name', MODEL, '--max-seqs', '8', '--ctx', '4096']);
    oai = new OpenAI({ baseURL: srv.url, apiKey: 'x', maxRetries: 0 });
    ant = new Anthropic({ baseURL: srv.base, apiKey: 'x', maxRetries: 0 });
  });
  after(async () => {
    if (srv) await srv.stop();
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  const cases = [];
  for (const seed of SEEDS) for (const budget of BUDGETS) cases.push({ seed, budget, think: seed % 2 === 0 });
  const check = (args, how) => {
    let v;
    assert.doesNotThrow(() => { v = JSON.parse(args); }, `${how}: ${args}`);
    assert.deepEqual(validateSchema(v, schema), [], `${how}: ${args}`);
  };

  test('chat completions, tool_choice required', async () => {
    let calls = 0;
    await Promise.all(cases.map(async ({ seed, budget, think }) => {
      const how = `chat seed ${seed} budget ${budget}${think ? ' thinking' : ''}`;
      const s = await oai.chat.completions.create({
        model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris, Rome and Oslo?' }], stream: true, seed, max_tokens: budget,
        tools: [{ type: 'function', function: { name: 'get_weather', parameters: schema } }], tool_choice: 'required',
        parallel_tool_calls: true, thinking: { type: think ? 'enabled' : 'disabled' },
      });
      const args = new Map();
      let finish;
      for await (const c of s) {
        const d = c.choices[0]?.delta ?? {};
        assert.equal(d.tool_call_errors, undefined, `${how}: ${JSON.stringify(d.tool_call_errors)}`);
        for (const tc of d.tool_calls ?? []) args.set(tc.index, (args.get(tc.index) ?? '') + (tc.function?.arguments ?? ''));
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      assert.ok(args.size >= 1, how);
      for (const a of args.values()) check(a, how);
      assert.equal(finish, 'tool_calls', how);
      calls += args.size;
    }));
    console.log(`# chat: ${calls} calls over ${cases.length} streams`);
  });

  test('Anthropic messages, tool_choice any', async () => {
    let calls = 0;
    await Promise.all(cases.map(async ({ seed, budget, think }) => {
      const how = `messages seed ${seed} budget ${budget}${think ? ' thinking' : ''}`;
      const s = ant.messages.stream({
        model: MODEL, max_tokens: budget, messages: [{ role: 'user', content: 'Weather in Paris, Rome and Oslo?' }],
        tools: [{ name: 'get_weather', input_schema: schema }], tool_choice: { type: 'any' },
        ...(think ? { thinking: { type: 'enabled', budget_tokens: 1024 } } : {}),
      });
      const final = await s.finalMessage();
      const uses = final.content.filter((b) => b.type === 'tool_use');
      assert.ok(uses.length >= 1, how);
      for (const u of uses) assert.deepEqual(validateSchema(u.input, schema), [], `${how}: ${JSON.stringify(u.input)}`);
      assert.equal(final.stop_reason, 'tool_use', how);
      calls += uses.length;
    }));
    console.log(`# messages: ${calls} calls over ${cases.length} streams`);
  });

  test('Responses, tool_choice required', async () => {
    let calls = 0;
    await Promise.all(cases.map(async ({ seed, budget, think }) => {
      const how = `responses seed ${seed} budget ${budget}${think ? ' thinking' : ''}`;
      const s = await oai.responses.create({
        model: MODEL, input: 'Weather in Paris, Rome and Oslo?', stream: true, seed, max_output_tokens: budget,
        tools: [{ type: 'function', name: 'get_weather', parameters: schema, strict: true }], tool_choice: 'required',
        parallel_tool_calls: true, reasoning: { effort: think ? 'high' : 'none' },
      });
      const done = [];
      let status;
      for await (const ev of s) {
        if (ev.type === 'response.output_item.done' && ev.item.type === 'function_call') done.push(ev.item.arguments);
        if (ev.type === 'response.completed' || ev.type === 'response.incomplete' || ev.type === 'response.failed') status = ev.type;
      }
      assert.ok(done.length >= 1, how);
      for (const a of done) check(a, how);
      assert.equal(status, 'response.completed', how);
      calls += done.length;
    }));
    console.log(`# responses: ${calls} calls over ${cases.length} streams`);
  });

  test('a budget below one complete call is a 400 naming max_tokens', async () => {
    await assert.rejects(oai.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 8, thinking: { type: 'disabled' },
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: schema } }], tool_choice: 'required',
    }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens' && /complete forced tool call/.test(e.message));
    await assert.rejects(ant.messages.create({
      model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'x' }],
      tools: [{ name: 'get_weather', input_schema: schema }], tool_choice: { type: 'any' },
    }), (e) => e instanceof Anthropic.BadRequestError && /max_tokens/.test(e.message));
  });
});
