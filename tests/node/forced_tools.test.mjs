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

import { makeModel, modelForTest, startServer, validateSchema } from './v4host_server.mjs';

const MODEL = 'tiny-test';
const { skip, model } = modelForTest('forced_tools', () => makeModel({ layers: 2, seed: 3 }));

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

// Custom (freeform) tools with grammars. APPLY_PATCH is the Lark grammar @openai/codex 0.171.0
// sends as its apply_patch tool's format (captured from the /v1/responses request `codex exec`
// makes with model "gpt-5.5"; upstream openai/codex, tool_apply_patch.lark). The C++ grammar
// tests read the same file.
const APPLY_PATCH = fs.readFileSync(new URL('../common/apply_patch.lark', import.meta.url), 'utf8');
const TICKET = '[A-Z]{2,4}-[1-9][0-9]{0,3}( \\((low|high)\\))?';

// The apply_patch format checked line by line, independently of the server's grammar code.
export function patchProblem(text) {
  const lines = text.split('\n');
  const endsWithNl = text.endsWith('\n');
  if (endsWithNl) lines.pop();
  let i = 0;
  if (lines[i++] !== '*** Begin Patch') return 'no begin line';
  let hunks = 0;
  for (;;) {
    if (i >= lines.length) return 'no end line';
    const l = lines[i];
    if (l === '*** End Patch') return i === lines.length - 1 ? (hunks ? '' : 'no hunk') : 'text after the end line';
    if (!endsWithNl && i === lines.length - 1) return 'a line without its newline';
    const named = (p) => l.startsWith(p) && l.length > p.length;
    if (named('*** Add File: ')) {
      i++;
      let n = 0;
      while (i < lines.length && lines[i].startsWith('+')) i++, n++;
      if (!n) return 'add file without lines';
    } else if (named('*** Delete File: ')) {
      i++;
    } else if (named('*** Update File: ')) {
      i++;
      if (i < lines.length && lines[i].startsWith('*** Move to: ') && lines[i].length > 13) i++;
      let n = 0;
      while (i < lines.length && (lines[i] === '@@' || (lines[i].startsWith('@@ ') && lines[i].length > 3) || /^[+\- ]/.test(lines[i]))) i++, n++;
      if (n && lines[i] === '*** End of File') i++;
    } else {
      return `unexpected line ${JSON.stringify(l)}`;
    }
    hunks++;
  }
}

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

  test('Responses, a forced custom tool with a grammar: every input is in its language', async () => {
    const tools = [
      { type: 'custom', name: 'apply_patch', description: 'Edit files', format: { type: 'grammar', syntax: 'lark', definition: APPLY_PATCH } },
      { type: 'custom', name: 'ticket', description: 'File a ticket', format: { type: 'grammar', syntax: 'regex', definition: TICKET } },
    ];
    const ticketRe = new RegExp(`^(?:${TICKET})$`);
    const inputs = { apply_patch: [], ticket: [] };
    const grammarCases = [];
    for (const seed of [1, 2, 3, 4]) for (const budget of [90, 160]) for (const name of ['apply_patch', 'ticket']) grammarCases.push({ seed, budget, name });
    await Promise.all(grammarCases.map(async ({ seed, budget, name }) => {
      const think = (seed + budget) % 2 === 0;
      const how = `${name} seed ${seed} budget ${budget}${think ? ' thinking' : ''}`;
      const { data: s, response } = await oai.responses.create({
        model: MODEL, input: 'Fix the bug', stream: true, seed, max_output_tokens: budget, tools,
        tool_choice: { type: 'custom', name }, parallel_tool_calls: seed % 2 === 1, reasoning: { effort: think ? 'high' : 'none' },
      }).withResponse();
      assert.equal(response.headers.get('x-v4host-grammar-tools'), 'apply_patch, ticket', how);
      let status;
      let n = 0;
      for await (const ev of s) {
        if (ev.type === 'response.output_item.done' && ev.item.type === 'custom_tool_call') {
          assert.equal(ev.item.name, name, how);
          inputs[name].push(ev.item.input);
          n++;
        }
        if (ev.type === 'response.completed' || ev.type === 'response.incomplete' || ev.type === 'response.failed') {
          status = ev.type;
          assert.deepEqual(ev.response.warnings ?? [], [], how);
        }
      }
      assert.ok(n >= 1, how);
      assert.equal(status, 'response.completed', how);
    }));
    for (const p of inputs.apply_patch) assert.equal(patchProblem(p), '', JSON.stringify(p));
    for (const t of inputs.ticket) assert.match(t, ticketRe);
    console.log(`# custom: ${inputs.apply_patch.length} patches, ${inputs.ticket.length} tickets; e.g. ${JSON.stringify(inputs.apply_patch[0])}`);
  });

  test('a grammar that cannot be enforced is shown only, with a warning', async () => {
    const r = await oai.responses.create({
      model: MODEL, input: 'x', max_output_tokens: 60, reasoning: { effort: 'none' },
      tools: [{ type: 'custom', name: 'look', format: { type: 'grammar', syntax: 'regex', definition: 'a(?=b)b' } }],
      tool_choice: { type: 'custom', name: 'look' },
    });
    assert.equal(r.status, 'completed');
    assert.ok(r.warnings.some((w) => /look.*not enforced.*lookaround/.test(w)), JSON.stringify(r.warnings));
    assert.ok(r.output.some((o) => o.type === 'custom_tool_call'), JSON.stringify(r.output));
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
