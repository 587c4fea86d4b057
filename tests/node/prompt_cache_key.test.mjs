// prompt_cache_key as a prefix-cache hint, end to end through `v4host serve`: with a prefix
// cache that holds about three conversations, one session's conversation survives a burst of
// another session's requests when both send their key (the cache's budget is shared fairly
// between keys), and is evicted by the same burst when neither does (plain LRU). Judged on
// usage.prompt_tokens_details.cached_tokens.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test prompt_cache_key.test.mjs
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { getMetrics, makeModel, modelForTest, startServer } from './v4host_server.mjs';

const { skip, model } = modelForTest('prompt_cache_key', () => makeModel({ layers: 2, seed: 11 }));

// Prompts of the same shape (and so about the same snapshot size), distinct from the first token.
const content = (tag, i) => `${tag}${String(i).padStart(3, '0')} ` + 'alpha beta gamma delta '.repeat(12);

async function ask(base, tag, i, key) {
  const body = { model: 'm', max_tokens: 1, temperature: 0, messages: [{ role: 'user', content: content(tag, i) }] };
  if (key) body.prompt_cache_key = key;
  const r = await fetch(`${base}/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const j = await r.json();
  return j.usage.prompt_tokens_details?.cached_tokens ?? 0;
}

describe('prompt_cache_key -> prefix cache eviction', { skip: skip || false }, () => {
  let entryBytes = 0;
  after(() => { if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true }); });

  before(async () => {
    // One conversation's snapshot size, measured on this model.
    const srv = await startServer(model.dir, ['--ctx', '1024', '--served-model-name', 'm', '--prefix-cache', '1G']);
    try {
      await ask(srv.url, 'm', 0, '');
      entryBytes = (await getMetrics(srv.base)).get('v4host_prefix_cache_bytes');
    } finally {
      await srv.stop();
    }
    assert.ok(entryBytes > 0, 'a request left a snapshot in the prefix cache');
  });

  for (const keyed of [true, false]) {
    test(keyed ? 'with keys: session b survives session a\'s burst' : 'without keys: the burst evicts it (LRU)', async () => {
      const budget = Math.floor(entryBytes * 3.5);
      const srv = await startServer(model.dir, ['--ctx', '1024', '--served-model-name', 'm', '--prefix-cache', String(budget)]);
      try {
        assert.equal(await ask(srv.url, 'b', 1, keyed ? 'session-b' : ''), 0, 'cold');
        for (let i = 0; i < 6; ++i) await ask(srv.url, 'a', i, keyed ? 'session-a' : '');
        const hit = await ask(srv.url, 'b', 1, keyed ? 'session-b' : '');
        const m = await getMetrics(srv.base);
        assert.ok(m.get('v4host_prefix_cache_bytes') <= budget, 'within the budget');
        if (keyed) assert.ok(hit > 0, `session b's prompt came from the cache (cached_tokens ${hit})`);
        else assert.equal(hit, 0, 'evicted by the burst');
      } finally {
        await srv.stop();
      }
    });
  }
});
