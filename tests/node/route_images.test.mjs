// Requests with images, through the router: an `images: true` rule sends them to an upstream
// that takes images (here the hosted stand-in), and the image parts reach it — from an OpenAI
// client as image_url parts, from an Anthropic client (base64 source) as a data: URL — while
// text-only requests stay on the local route.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { skipReason } from './v4host_server.mjs';
import { postJson, startRouter } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

const why = skipReason();

describe('route: images', { skip: why || false }, () => {
  let local, vision, router;

  before(async () => {
    local = await startStandin();
    vision = await startStandin();
    router = await startRouter(
      `upstreams:\n` +
      `  local: {kind: vllm, base_url: "${local.url}/v1", model: ok, residency: on-prem}\n` +
      `  vision: {kind: openai, base_url: "${vision.url}", model: ok, residency: cloud}\n` +
      `routes:\n  text: {chain: [local]}\n  see: {chain: [vision]}\n` +
      `rules:\n  - {match: {images: true}, route: see}\ndefault_route: text\n`);
  });

  after(async () => {
    if (router) { await router.stop(); router.cleanup(); }
    for (const s of [local, vision]) if (s) await s.close();
  });

  const lastParts = () => vision.requests[vision.requests.length - 1].body.messages[0].content;

  test('an OpenAI request with an image goes to the image route with its image parts', async () => {
    const r = await postJson(`${router.url}/chat/completions`, {
      model: 'x', max_tokens: 8,
      messages: [{ role: 'user', content: [
        { type: 'text', text: 'what is in this picture?' },
        { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'low' } }] }],
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-route'), 'see');
    assert.equal(r.headers.get('x-v4host-upstream'), 'vision');
    assert.deepEqual(lastParts(), [
      { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'low' } },
      { type: 'text', text: 'what is in this picture?' }]);
    const plain = await postJson(`${router.url}/chat/completions`, { model: 'x', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.headers.get('x-v4host-route'), 'text');
  });

  test('an Anthropic base64 image reaches an OpenAI-style upstream as a data URL', async () => {
    const r = await postJson(`${router.base}/v1/messages`, {
      model: 'x', max_tokens: 8,
      messages: [{ role: 'user', content: [
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
        { type: 'text', text: 'describe it' }] }],
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.type, 'message');
    assert.equal(r.headers.get('x-v4host-upstream'), 'vision');
    assert.deepEqual(lastParts(), [
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
      { type: 'text', text: 'describe it' }]);
  });

  test('a malformed image part is a 400 naming it', async () => {
    const r = await postJson(`${router.url}/chat/completions`, {
      model: 'x', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }],
    });
    assert.equal(r.status, 400, r.text);
    assert.match(r.text, /messages\[0\]\.content\[0\]\.image_url\.url/);
  });
});
