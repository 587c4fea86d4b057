// Replica groups end to end: two real `v4host serve` instances of one model as a group in front
// of the hosted stand-in. A conversation keeps its replica turn after turn (so its prefix is
// served from that replica's cache), conversations spread over both, and when one replica goes
// down its conversations move to the other, not to the hosted tier.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { getMetrics, makeModel, skipReason, startServer } from './v4host_server.mjs';
import { postJson, startRouter } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

let why = skipReason();
let model = { dir: '', why: '' };
if (!why) {
  model = makeModel({ layers: 2 });
  why = model.why;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('route: replica groups', { skip: why || false }, () => {
  let a, b, hosted, router;

  before(async () => {
    const args = ['--served-model-name', 'flash', '--max-seqs', '4', '--no-thinking'];
    [a, b] = await Promise.all([startServer(model.dir, args), startServer(model.dir, args)]);
    hosted = await startStandin();
    router = await startRouter(
      `upstreams:\n` +
      `  flash-a: {kind: v4host, base_url: "${a.url}", model: flash, residency: on-prem, health: {interval: 200ms}}\n` +
      `  flash-b: {kind: v4host, base_url: "${b.url}", model: flash, residency: on-prem, health: {interval: 200ms}}\n` +
      `  pro: {kind: deepseek, base_url: "${hosted.url}", model: ok, residency: cloud}\n` +
      `routes:\n  flash: {chain: [[flash-a, flash-b], pro], balance: session}\n`);
  });

  after(async () => {
    if (router) { await router.stop(); router.cleanup(); }
    for (const s of [a, b]) if (s) await s.stop();
    if (hosted) await hosted.close();
    if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true });
  });

  const chat = (session, content) => postJson(`${router.url}/chat/completions`, {
    model: 'flash', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content }],
    max_tokens: 4, prompt_cache_key: session,
  });
  const sessions = Array.from({ length: 8 }, (_, i) => `conversation-${i}`);
  const home = new Map();

  test('a conversation keeps its replica, and is served from its prefix cache there', async () => {
    for (const s of sessions) {
      const prompt = `Session ${s}: ${'explain the build system in detail. '.repeat(6)}`;
      for (let turn = 0; turn < 3; ++turn) {
        const r = await chat(s, prompt);
        assert.equal(r.status, 200, r.text);
        const up = r.headers.get('x-v4host-upstream');
        assert.ok(up === 'flash-a' || up === 'flash-b', `${s}: served by ${up}`);
        if (turn === 0) home.set(s, up);
        else {
          assert.equal(up, home.get(s), `${s} moved on turn ${turn}`);
          assert.ok(r.json.usage.prompt_tokens_details.cached_tokens > 0, `${s} turn ${turn}: ${JSON.stringify(r.json.usage)}`);
        }
      }
    }
    const used = new Set(home.values());
    assert.equal(used.size, 2, `every conversation went to ${[...used]}`);
    const m = await getMetrics(router.base);
    let picks = 0;
    for (const [k, v] of m) if (k.startsWith('v4host_route_replica_picks_total{')) { picks += v; assert.match(k, /by="prompt_cache_key"/); }
    assert.equal(picks, sessions.length * 3);
  });

  test("Anthropic clients keep theirs by metadata.user_id", async () => {
    const ask = (user) => postJson(`${router.base}/v1/messages`, {
      model: 'flash', max_tokens: 4, metadata: { user_id: user }, messages: [{ role: 'user', content: 'hello' }],
    });
    for (const user of ['user_1_session_a', 'user_2_session_b', 'user_3_session_c']) {
      const first = await ask(user);
      assert.equal(first.status, 200, first.text);
      for (let i = 0; i < 2; ++i) assert.equal((await ask(user)).headers.get('x-v4host-upstream'), first.headers.get('x-v4host-upstream'));
    }
  });

  test('a replica going down moves only its conversations, to the other replica', async () => {
    const downName = home.get(sessions[0]);
    await (downName === 'flash-a' ? a : b).stop();
    await sleep(600);  // a few health checks
    for (const s of sessions) {
      const r = await chat(s, `Session ${s}: one more question`);
      assert.equal(r.status, 200, r.text);
      const up = r.headers.get('x-v4host-upstream');
      const want = home.get(s) === downName ? (downName === 'flash-a' ? 'flash-b' : 'flash-a') : home.get(s);
      assert.equal(up, want, `${s} (home ${home.get(s)}, ${downName} down)`);
    }
  });
});
