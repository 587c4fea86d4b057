// Overflow on local pressure and an external classifier endpoint, end to end: the router polls the
// local engine's /health and /metrics (v4host and vLLM formats, here served by the stand-in) and
// spills to the hosted route while the queue is over the threshold; a classifier endpoint picks
// the route for requests that no earlier rule decided.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { getMetrics, skipReason } from './v4host_server.mjs';
import { postJson, startRouter } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

const why = skipReason();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('route: overflow and classifier', { skip: why || false }, () => {
  let engine, router;

  before(async () => {
    engine = await startStandin();
    router = await startRouter(
      `upstreams:\n` +
      `  local: {kind: vllm, base_url: "${engine.url}/v1", model: ok, residency: on-prem, health: {interval: 200ms}}\n` +
      `  hosted: {kind: deepseek, base_url: "${engine.url}", model: json, residency: cloud}\n` +
      `routes:\n  easy: {chain: [local]}\n  hard: {chain: [hosted]}\n` +
      `rules:\n` +
      `  - {overflow: {upstream: local, queue_depth_over: 4}, route: hard}\n` +
      `  - {match: {header: {x-classify: "yes"}}, classifier: {url: "${engine.url}/classify", timeout: 2s}, route: easy}\n` +
      `default_route: easy\n`);
  });

  after(async () => {
    if (router) { await router.stop(); router.cleanup(); }
    if (engine) await engine.close();
  });

  const ask = (content, headers = {}) =>
    postJson(`${router.url}/chat/completions`, { model: 'x', messages: [{ role: 'user', content }], max_tokens: 16 }, headers);

  test('spills to the hosted route while the local queue is over the threshold, and comes back', async () => {
    let r = await ask('hi');
    assert.equal(r.headers.get('x-v4host-route'), 'easy');
    engine.pressure.queued = 9;
    await sleep(700);  // a few polls
    r = await ask('hi');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-route'), 'hard');
    assert.equal(r.headers.get('x-v4host-upstream'), 'hosted');
    const m = await getMetrics(router.base);
    assert.equal(m.get('v4host_route_upstream_queue_depth{upstream="local"}'), 9);
    engine.pressure.queued = 0;
    await sleep(700);
    r = await ask('hi');
    assert.equal(r.headers.get('x-v4host-route'), 'easy');
    const log = router.accessLog();
    assert.match(log, /"why":"rule 1 \(overflow of local: queue 9 > 4\)"/);
  });

  test('a classifier endpoint picks the route', async () => {
    let r = await ask('please prove the theorem', { 'x-classify': 'yes' });
    assert.equal(r.headers.get('x-v4host-route'), 'hard');
    r = await ask('say hi', { 'x-classify': 'yes' });
    assert.equal(r.headers.get('x-v4host-route'), 'easy');
    assert.match(router.accessLog(), /"why":"rule 2 \(classifier\)"/);
  });
});
