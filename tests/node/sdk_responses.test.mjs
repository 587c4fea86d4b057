// The Responses API (POST /v1/responses) through real clients against the real `v4host serve`
// binary on a synthetic model whose answers end (makeEndingModel): the `openai` SDK's
// responses.create streamed and not, a forced function tool and a function_call_output round
// trip, sealed reasoning sent back (store: false), store + previous_response_id + GET/DELETE,
// the OpenAI Agents SDK in its default (Responses) mode and the AI SDK's default @ai-sdk/openai
// provider. Judged on protocol, not text (the model's text is random).
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test sdk_responses.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { makeEndingModel, modelForTest, startServer, validateSchema } from './v4host_server.mjs';

const MODEL = 'v4host-test';
const KEY = 'sk-v4host-test';

const { skip, model } = modelForTest('sdk_responses', () => makeEndingModel({ layers: 2, seed: 5 }));

const weather = {
  type: 'function',
  name: 'get_weather',
  description: 'Weather forecast for a city',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 30 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
    required: ['city', 'days'],
    additionalProperties: false,
  },
  strict: true,
};

function checkUsage(u) {
  assert.ok(u && Number.isInteger(u.input_tokens) && u.input_tokens > 0, `usage ${JSON.stringify(u)}`);
  assert.ok(Number.isInteger(u.output_tokens) && u.output_tokens >= 1);
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
  assert.ok(Number.isInteger(u.input_tokens_details?.cached_tokens), 'cached_tokens present');
  assert.ok(Number.isInteger(u.output_tokens_details?.reasoning_tokens), 'reasoning_tokens present');
}

describe('Responses API clients -> v4host serve', { skip: skip || false }, () => {
  let srv;
  let client;

  before(async () => {
    srv = await startServer(model.dir, ['--api-key', KEY, '--served-model-name', MODEL, '--max-output-tokens', '160',
      '--ctx', '8192']);
    client = new OpenAI({ baseURL: srv.url, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => {
    if (srv) await srv.stop();
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('responses.create: text, usage, status', async () => {
    const r = await client.responses.create({ model: MODEL, input: 'Say hi', instructions: 'Be brief.', max_output_tokens: 40 });
    assert.equal(r.object, 'response');
    assert.ok(['completed', 'incomplete'].includes(r.status), r.status);
    assert.equal(r.instructions, 'Be brief.');
    assert.equal(typeof r.output_text, 'string');
    checkUsage(r.usage);
    if (r.status === 'incomplete') assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  });

  test('streamed: the full event sequence, one terminal event, deltas add up', async () => {
    const stream = await client.responses.create({ model: MODEL, input: 'Tell me a story', stream: true,
      reasoning: { effort: 'low' } });
    const types = [];
    let seq = -1;
    let text = '';
    let reasoning = '';
    let final;
    for await (const ev of stream) {
      types.push(ev.type);
      assert.equal(ev.sequence_number, seq + 1, 'sequence numbers count up');
      seq = ev.sequence_number;
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.reasoning_text.delta') reasoning += ev.delta;
      if (['response.completed', 'response.incomplete', 'response.failed'].includes(ev.type)) final = ev.response;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types[1], 'response.in_progress');
    const terminal = types.filter((t) => ['response.completed', 'response.incomplete', 'response.failed'].includes(t));
    assert.equal(terminal.length, 1, types.join(' '));
    assert.equal(types.at(-1), terminal[0]);
    assert.notEqual(terminal[0], 'response.failed');
    assert.ok(types.includes('response.output_item.added') && types.includes('response.output_item.done'));
    const msg = final.output.find((o) => o.type === 'message');
    if (msg) assert.equal(msg.content[0].text, text);
    const rs = final.output.find((o) => o.type === 'reasoning');
    if (rs) assert.equal(rs.content[0].text, reasoning);
    checkUsage(final.usage);
  });

  test('forced function tool, streamed and not: a valid call, then a function_call_output round trip', async () => {
    for (const stream of [false, true]) {
      for (const seed of [1, 2, 3]) {
        const req = { model: MODEL, input: [{ role: 'user', content: 'Weather in Paris for 3 days?' }], tools: [weather],
          tool_choice: 'required', parallel_tool_calls: false, reasoning: { effort: 'none' }, max_output_tokens: 120, seed };
        let r;
        if (stream) {
          const s = await client.responses.create({ ...req, stream: true });
          const done = [];
          for await (const ev of s) {
            if (ev.type === 'response.output_item.done' && ev.item.type === 'function_call') done.push(ev.item);
            if (ev.type === 'response.completed') r = ev.response;
          }
          assert.ok(r, 'response.completed');
          assert.deepEqual(done.map((d) => d.call_id), r.output.filter((o) => o.type === 'function_call').map((o) => o.call_id));
        } else {
          r = await client.responses.create(req);
        }
        assert.equal(r.status, 'completed');
        const calls = r.output.filter((o) => o.type === 'function_call');
        assert.equal(calls.length, 1, JSON.stringify(r.output));
        const args = JSON.parse(calls[0].arguments);
        assert.deepEqual(validateSchema(args, weather.parameters), [], calls[0].arguments);
        // Round trip: the call and its output go back as input items (store: false, stateless).
        const next = await client.responses.create({ model: MODEL, store: false, reasoning: { effort: 'none' },
          input: [...req.input, ...r.output, { type: 'function_call_output', call_id: calls[0].call_id, output: '{"temp_c": 21}' }],
          tools: [weather], max_output_tokens: 30 });
        assert.ok(['completed', 'incomplete'].includes(next.status));
        assert.ok(next.usage.input_tokens > r.usage.input_tokens, 'the history grew');
      }
    }
  });

  test('sealed reasoning (store: false) comes back verified; an altered blob is a 400', async () => {
    const r = await client.responses.create({ model: MODEL, input: 'Think about it', store: false, reasoning: { effort: 'high' },
      include: ['reasoning.encrypted_content'], max_output_tokens: 30 });
    const rs = r.output.find((o) => o.type === 'reasoning');
    assert.ok(rs && typeof rs.encrypted_content === 'string' && rs.encrypted_content.length > 0, JSON.stringify(r.output));
    const followUp = (item) => client.responses.create({ model: MODEL, store: false, reasoning: { effort: 'high' },
      input: [{ role: 'user', content: 'Think about it' }, item, { role: 'user', content: 'and?' }], max_output_tokens: 5 });
    const ok = await followUp({ ...rs, content: undefined });  // only the blob carries the reasoning
    assert.ok(ok.usage.input_tokens > 0);
    const tampered = { ...rs, encrypted_content: rs.encrypted_content.slice(0, -4) + 'AAA=' };
    await assert.rejects(followUp(tampered), (e) => e instanceof OpenAI.BadRequestError && /integrity/.test(e.message));
  });

  test('store + previous_response_id, GET and DELETE /v1/responses/{id}', async () => {
    const a = await client.responses.create({ model: MODEL, input: 'Remember the word apple.', max_output_tokens: 20 });
    const got = await client.responses.retrieve(a.id);
    assert.equal(got.id, a.id);
    assert.deepEqual(got.output, a.output);
    const b = await client.responses.create({ model: MODEL, input: 'Which word?', previous_response_id: a.id, max_output_tokens: 20 });
    assert.equal(b.previous_response_id, a.id);
    assert.ok(b.usage.input_tokens > a.usage.input_tokens, 'the stored conversation was continued');
    assert.ok(b.usage.input_tokens_details.cached_tokens > 0, 'its prefix came from the prefix cache');
    await client.responses.delete(a.id);
    await assert.rejects(client.responses.retrieve(a.id), (e) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(client.responses.create({ model: MODEL, input: 'x', previous_response_id: a.id }),
      (e) => e instanceof OpenAI.NotFoundError && /previous response/.test(e.message));
  });

  test('unsupported tool types are accepted and noted; custom tools come back as custom_tool_call', async () => {
    const r = await client.responses.create({
      model: MODEL, input: 'Patch the file', reasoning: { effort: 'none' }, max_output_tokens: 80,
      tools: [{ type: 'web_search' }, { type: 'image_generation' },
        { type: 'custom', name: 'apply_patch', description: 'Apply a patch', format: { type: 'grammar', syntax: 'lark', definition: 'start: /.+/' } }],
      tool_choice: { type: 'custom', name: 'apply_patch' },
    });
    assert.equal(r.status, 'completed');
    assert.ok(Array.isArray(r.warnings) && r.warnings.some((w) => /web_search/.test(w)), JSON.stringify(r.warnings));
    const c = r.output.find((o) => o.type === 'custom_tool_call');
    assert.ok(c, JSON.stringify(r.output));
    assert.equal(c.name, 'apply_patch');
    assert.equal(typeof c.input, 'string');
  });

  test('text.format json_schema output conforms', async () => {
    const schema = { type: 'object', properties: { n: { type: 'integer' }, tag: { type: 'string', enum: ['a', 'b'] } },
      required: ['n', 'tag'], additionalProperties: false };
    const r = await client.responses.create({ model: MODEL, input: 'JSON please', reasoning: { effort: 'none' }, max_output_tokens: 60,
      text: { format: { type: 'json_schema', name: 'out', schema, strict: true } } });
    assert.deepEqual(validateSchema(JSON.parse(r.output_text), schema), [], r.output_text);
  });

  test('errors name the field', async () => {
    await assert.rejects(client.responses.create({ model: MODEL, input: 5 }), (e) => e instanceof OpenAI.BadRequestError && /input/.test(e.message));
    await assert.rejects(client.responses.create({ model: MODEL, input: 'x', reasoning: { effort: 'huge' } }),
      (e) => e instanceof OpenAI.BadRequestError && e.param === 'reasoning.effort');
    await assert.rejects(client.responses.create({ model: 'gpt-9', input: 'x' }), (e) => e instanceof OpenAI.NotFoundError);
  });

  test('OpenAI Agents SDK (default: Responses API) runs an agent with a tool', async () => {
    const { Agent, run, setDefaultOpenAIClient, setTracingDisabled, tool } = await import('@openai/agents');
    const { z } = await import('zod');
    setTracingDisabled(true);
    setDefaultOpenAIClient(new OpenAI({ baseURL: srv.url, apiKey: KEY, maxRetries: 0 }));
    const calls = [];
    const getWeather = tool({
      name: 'get_weather', description: 'Weather for a city',
      parameters: z.object({ city: z.string() }),
      execute: async ({ city }) => { calls.push(city); return `sunny in ${city}`; },
    });
    const agent = new Agent({ name: 'w', instructions: 'Use the tool.', model: MODEL, tools: [getWeather],
      modelSettings: { toolChoice: 'required', maxTokens: 100, temperature: 0, reasoning: { effort: 'none' } }, resetToolChoice: true });
    const res = await run(agent, 'Weather in Rome?', { maxTurns: 3 });
    assert.equal(calls.length >= 1, true, 'the tool ran');
    assert.equal(typeof res.finalOutput, 'string');
  });

  test('AI SDK default @ai-sdk/openai provider (Responses API)', async () => {
    const { createOpenAI } = await import('@ai-sdk/openai');
    const { generateText, streamText } = await import('ai');
    const openai = createOpenAI({ baseURL: srv.url, apiKey: KEY });
    const g = await generateText({ model: openai(MODEL), prompt: 'Say hi', maxOutputTokens: 40,
      providerOptions: { openai: { reasoningEffort: 'none' } } });
    assert.equal(typeof g.text, 'string');
    assert.ok(g.usage.inputTokens > 0);
    const s = streamText({ model: openai(MODEL), prompt: 'Say hi', maxOutputTokens: 40 });
    let text = '';
    for await (const t of s.textStream) text += t;
    assert.equal(text, await s.text);
    assert.ok(['stop', 'length'].includes(await s.finishReason));
  });
});
