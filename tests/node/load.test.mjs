// Bounded load test of the real `v4host serve` binary: N concurrent streaming clients (OpenAI and
// Anthropic routes) for a fixed time, with random early disconnects. Every completed stream must
// be well-formed, the server must stay up, /metrics must show the disconnects, and at the end
// nothing may be left running, KV state must be back to zero, the heap in use (/metrics
// v4host_heap_bytes) back near its post-warm-up baseline and not growing with the requests, and the
// RSS no higher than the warm-up's peak (glibc keeps freed pages pinned between long-lived blocks,
// so RSS alone moves by tens of MiB between identical rounds; the heap in use does not).
// Env: V4HOST_LOAD_SECONDS (default 50), V4HOST_LOAD_CLIENTS (default 32).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { getMetrics, makeModel, mibArg, parseSse, rssBytes, modelForTest, startServer, sumFamily } from './v4host_server.mjs';

const SECONDS = Number(process.env.V4HOST_LOAD_SECONDS || 50);
const CLIENTS = Number(process.env.V4HOST_LOAD_CLIENTS || 32);
const MODEL = 'load-model';
const MiB = 1024 * 1024;
// The heap in use may end this much above the post-warm-up baseline (beyond the prefix cache's
// growth, which is subtracted) ...
const HEAP_SLACK = 8 * MiB;
// ... and at most this much above where it stood after the first half of the run: the threads'
// allocator caches (tcache: up to ~230 KiB a thread, counted as in use) and the prefix-cache
// entries' token lists (not in its byte count) move it by about 1 MiB; a leak of 20 KiB a request
// over phase 2's ~200 requests shows above.
const PHASE2_SLACK = 4 * MiB;
// RSS may end this much above the warm-up's peak (VmHWM).
const RSS_SLACK = 32 * MiB;

const { skip, model } = modelForTest('load', () => makeModel({ layers: 4, seed: 17 }));

// A deterministic PRNG so a failure can be replayed (seed printed).
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const WORDS = ('the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches near ' +
  'ancient rivers under bright stars and compile code for tomorrow morning').split(' ');
const sentence = (rand, n) => Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One streaming request. `abortAfterMs` >= 0 aborts the stream that long after the headers arrive.
async function oneStream(base, rand, { abortAfterMs = -1 } = {}) {
  const anthropic = rand() < 0.25;
  const maxTokens = 4 + Math.floor(rand() * 48);
  const prompt = sentence(rand, 3 + Math.floor(rand() * 150));
  const includeUsage = rand() < 0.7;
  const thinking = rand() < 0.5;
  const path = anthropic ? '/v1/messages' : '/v1/chat/completions';
  const body = anthropic
    ? { model: MODEL, max_tokens: maxTokens, stream: true, messages: [{ role: 'user', content: prompt }],
      ...(thinking ? { thinking: { type: 'enabled', budget_tokens: 1024 } } : {}) }
    : { model: MODEL, max_tokens: maxTokens, stream: true, messages: [{ role: 'user', content: prompt }],
      temperature: rand() < 0.5 ? 0 : 0.8, seed: Math.floor(rand() * 1000),
      ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      ...(thinking ? { reasoning_effort: 'high' } : { thinking: { type: 'disabled' } }) };
  const ac = new AbortController();
  const res = await fetch(base + path, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: ac.signal,
  });
  if (res.status === 429) {  // queue full: a well-formed refusal is allowed
    assert.ok(res.headers.get('retry-after'), '429 carries Retry-After');
    await res.text();
    return { kind: 'refused' };
  }
  assert.equal(res.status, 200, `${path} -> ${res.status}`);
  assert.match(res.headers.get('content-type') || '', /text\/event-stream/);
  let timer;
  if (abortAfterMs >= 0) timer = setTimeout(() => ac.abort(), abortAfterMs);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
  } catch (e) {
    if (ac.signal.aborted) return { kind: 'aborted', partial: text.length };
    throw e;
  } finally {
    clearTimeout(timer);
  }
  text += dec.decode();
  if (anthropic) checkAnthropicStream(text, maxTokens);
  else checkOpenAIStream(text, maxTokens, includeUsage);
  return { kind: 'completed', anthropic };
}

function checkOpenAIStream(text, maxTokens, includeUsage) {
  const ev = parseSse(text);
  assert.ok(ev.length >= 3, `too few events: ${text.slice(0, 500)}`);
  assert.equal(ev[ev.length - 1].data, '[DONE]', 'stream ends with [DONE]');
  const chunks = ev.slice(0, -1).map((e) => {
    assert.notEqual(e.data, '[DONE]', '[DONE] only at the end');
    return JSON.parse(e.data);
  });
  for (const c of chunks) {
    assert.ok(!c.error, `error in stream: ${JSON.stringify(c)}`);
    assert.equal(c.object, 'chat.completion.chunk');
  }
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const finishes = chunks.flatMap((c) => c.choices).filter((c) => c.finish_reason);
  assert.equal(finishes.length, 1, 'exactly one finish_reason');
  assert.ok(['stop', 'length'].includes(finishes[0].finish_reason), finishes[0].finish_reason);
  const last = chunks[chunks.length - 1];
  if (includeUsage) {
    assert.deepEqual(last.choices, []);
    const u = last.usage;
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= maxTokens, `completion_tokens ${u.completion_tokens}`);
    if (finishes[0].finish_reason === 'length') assert.equal(u.completion_tokens, maxTokens);
  } else {
    assert.ok(!chunks.some((c) => c.usage), 'no usage chunk unless asked for');
  }
}

function checkAnthropicStream(text, maxTokens) {
  const ev = parseSse(text);
  assert.ok(ev.length >= 3, `too few events: ${text.slice(0, 500)}`);
  const data = ev.map((e) => {
    const d = JSON.parse(e.data);
    assert.equal(d.type, e.event, 'event name matches data.type');
    return d;
  });
  assert.equal(data[0].type, 'message_start');
  assert.equal(data[data.length - 1].type, 'message_stop');
  const delta = data[data.length - 2];
  assert.equal(delta.type, 'message_delta');
  assert.ok(['end_turn', 'max_tokens'].includes(delta.delta.stop_reason), delta.delta.stop_reason);
  assert.ok(delta.usage.output_tokens >= 1 && delta.usage.output_tokens <= maxTokens);
  let open = -1;
  for (const d of data.slice(1, -2)) {
    if (d.type === 'content_block_start') { assert.equal(open, -1); open = d.index; }
    else if (d.type === 'content_block_delta') assert.equal(d.index, open);
    else if (d.type === 'content_block_stop') { assert.equal(d.index, open); open = -1; }
    else assert.fail(`unexpected event ${d.type}`);
  }
  assert.equal(open, -1, 'every block closed');
}

async function waitIdle(base, timeoutMs = 30000) {
  const t0 = Date.now();
  let m;
  while (Date.now() - t0 < timeoutMs) {
    m = await getMetrics(base);
    if (m.get('v4host_running_sequences') === 0 && m.get('v4host_queue_depth_requests') === 0 && sumFamily(m, 'v4host_kv_bytes') === 0) return m;
    await sleep(200);
  }
  return m;
}

describe(`load: ${CLIENTS} streaming clients for ${SECONDS} s`, { skip: skip || false }, () => {
  let srv;

  before(async () => {
    srv = await startServer(model.dir, ['--served-model-name', MODEL, '--max-seqs', '16', '--queue', '64', '--ctx', '4096',
      '--prefix-cache', mibArg('--prefix-cache', 16)]);
  });

  after(async () => {
    if (srv) {
      const ex = await srv.stop();
      assert.ok(!ex.sig || ex.sig === 'SIGTERM', `server exited cleanly (${JSON.stringify(ex)})`);
    }
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  test('every stream well-formed, disconnects freed, memory back to baseline', { timeout: (SECONDS + 240) * 1000 }, async () => {
    const seed = Number(process.env.V4HOST_LOAD_SEED || Date.now() % 100000);
    console.log(`# load seed ${seed} (V4HOST_LOAD_SEED to replay)`);
    // Warm-up: two full rounds without disconnects fill the allocator, buffers and prefix cache.
    for (let round = 0; round < 2; ++round) {
      const r = rng(seed + 1000 + round);
      const out = await Promise.all(Array.from({ length: CLIENTS }, () => oneStream(srv.base, r)));
      assert.ok(out.every((o) => o.kind === 'completed'));
    }
    const m0 = await waitIdle(srv.base);
    const rss0 = rssBytes(srv.proc.pid);
    const hwm0 = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'))[1]) * 1024;
    const heap = (m) => m.get('v4host_heap_bytes');
    const heap0 = heap(m0);
    assert.ok(heap0 > 0, '/metrics reports the heap in use (glibc)');
    const cache0 = m0.get('v4host_prefix_cache_bytes') || 0;
    const disc0 = m0.get('v4host_client_disconnects_total') || 0;

    // Two phases of SECONDS/2 each, idle in between: memory may settle after the first (allocator
    // caches, arenas of new HTTP threads) but a leak keeps growing with the requests of the second.
    const stats = { completed: 0, aborted: 0, refused: 0, anthropic: 0 };
    let peakRss = rss0;
    const sampler = setInterval(() => { try { peakRss = Math.max(peakRss, rssBytes(srv.proc.pid)); } catch { /* exited */ } }, 1000);
    const phase = async (p) => {
      const deadline = Date.now() + (SECONDS * 1000) / 2;
      const client = async (id) => {
        const rand = rng(seed * 100 + id + 50 * p);
        while (Date.now() < deadline) {
          const abort = rand() < 0.3;
          const o = await oneStream(srv.base, rand, { abortAfterMs: abort ? Math.floor(rand() * 1500) : -1 });
          stats[o.kind] += 1;
          if (o.anthropic) stats.anthropic += 1;
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
      assert.equal(srv.exited(), null, `server died:\n${srv.log().slice(-4000)}`);
      const m = await waitIdle(srv.base);
      await sleep(500);
      return { m, rss: rssBytes(srv.proc.pid), requests: stats.completed + stats.aborted + stats.refused };
    };
    let p1;
    let p2;
    try {
      p1 = await phase(1);
      p2 = await phase(2);
    } finally {
      clearInterval(sampler);
    }
    console.log(`# ${JSON.stringify(stats)}`);
    assert.ok(stats.completed >= CLIENTS, `completed ${stats.completed}`);
    assert.ok(stats.aborted >= 1, 'some streams were aborted');

    // The server is healthy, idle, and has freed every sequence.
    const h = await fetch(`${srv.base}/health`);
    assert.equal(h.status, 200);
    const m1 = p2.m;
    assert.equal(m1.get('v4host_running_sequences'), 0, 'no running sequences');
    assert.equal(m1.get('v4host_queue_depth_requests'), 0, 'empty queue');
    for (const fam of ['window', 'compressed_c4', 'indexer', 'compressed_c128', 'compressor_frontier'])
      assert.equal(m1.get(`v4host_kv_bytes{family="${fam}"}`), 0, `kv_bytes ${fam} back to 0`);
    const disconnects = (m1.get('v4host_client_disconnects_total') || 0) - disc0;
    console.log(`# server saw ${disconnects} disconnects of ${stats.aborted} aborted streams`);
    assert.ok(disconnects >= 1, '/metrics counts the disconnects');
    assert.ok(disconnects <= stats.aborted, 'no disconnects beyond those the clients caused');
    // No request failed server-side.
    for (const [k, v] of m1) if (k.startsWith('v4host_requests_total{') && /status="5/.test(k)) assert.fail(`${k} = ${v}`);

    const cache = (m) => m.get('v4host_prefix_cache_bytes') || 0;
    const growth = heap(p2.m) - heap0 - Math.max(0, cache(p2.m) - cache0);
    const growth2 = heap(p2.m) - heap(p1.m) - Math.max(0, cache(p2.m) - cache(p1.m));
    const n2 = p2.requests - p1.requests;
    const f = (b) => (b / MiB).toFixed(1);
    console.log(`# heap in use: baseline ${f(heap0)} MiB, after phase 1 ${f(heap(p1.m))} MiB, end ${f(heap(p2.m))} MiB; ` +
      `prefix cache ${f(cache0)} -> ${f(cache(p2.m))} MiB; ${p2.requests} requests; net growth ${f(growth)} MiB overall, ` +
      `${f(growth2)} MiB over the ${n2} requests of phase 2 (${(growth2 / Math.max(1, n2) / 1024).toFixed(2)} KiB/request); ` +
      `RSS baseline ${f(rss0)} MiB (warm-up peak ${f(hwm0)}), after phase 1 ${f(p1.rss)} MiB, end ${f(p2.rss)} MiB, peak ${f(peakRss)} MiB`);
    assert.ok(growth <= HEAP_SLACK, `heap in use grew ${f(growth)} MiB over ${p2.requests} requests (slack ${HEAP_SLACK / MiB} MiB)`);
    assert.ok(growth2 <= PHASE2_SLACK, `heap in use grew ${f(growth2)} MiB over the ${n2} requests of phase 2 (slack ${PHASE2_SLACK / MiB} MiB)`);
    const rssLimit = Math.max(rss0, hwm0) + RSS_SLACK;
    assert.ok(p2.rss <= rssLimit, `RSS ${f(p2.rss)} MiB above the warm-up's peak ${f(hwm0)} MiB + ${RSS_SLACK / MiB} MiB`);
  });
});
