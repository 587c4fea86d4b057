// Speculative decoding through the real `v4host serve` binary, with the MTP head (preview layout)
// and the DSpark drafter (0731 layout) of synthetic models: greedy chat output (plain and
// streamed) identical with --speculative off and on, the speculation counters in /metrics
// present and consistent, and a bad --speculative value refused with exit 2 naming the flag.
// Run: cd tests/node && V4HOST_BIN=../../build/v4host node --test speculative.test.mjs
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';

import { makeModel, parseSse, skipReason, startServer, v4hostBin } from './v4host_server.mjs';


const skip = skipReason();
const prompts = ['Tell me about rivers.', 'Why is the sky blue? Explain in detail, please.'];

async function chat(base, content, stream) {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], max_tokens: 16, temperature: 0, stream,
      thinking: { type: 'disabled' } }),
  });
  assert.equal(r.status, 200);
  if (!stream) return (await r.json()).choices[0].message.content;
  let text = '';
  for (const ev of parseSse(await r.text())) {
    if (ev.data === '[DONE]') continue;
    const d = JSON.parse(ev.data);
    if (d.choices?.[0]?.delta?.content) text += d.choices[0].delta.content;
  }
  return text;
}

function metric(text, name) {
  const m = text.match(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

for (const revision of ['preview', '0731']) {
  describe(`speculative serve (${revision})`, { skip: skip || false }, () => {
    const model = skip ? { dir: '', why: skip } : makeModel({ layers: 3, seed: 17, revision });
    after(() => { if (model.dir) fs.rmSync(model.dir, { recursive: true, force: true }); });

    test('greedy output is identical with --speculative off and on; /metrics counts the drafts', { skip: model.why || false }, async () => {
      const out = {};
      let metrics = '';
      for (const mode of ['off', 'on']) {
        const srv = await startServer(model.dir, ['--served-model-name', 'm', '--speculative', mode]);
        try {
          out[mode] = [];
          for (const p of prompts) out[mode].push(await chat(srv.base, p, false), await chat(srv.base, p, true));
          if (mode === 'on') metrics = await (await fetch(`${srv.base}/metrics`)).text();
        } finally {
          await srv.stop();
        }
      }
      assert.deepEqual(out.on, out.off);
      for (let i = 0; i < out.off.length; i += 2) assert.equal(out.off[i], out.off[i + 1]);  // streamed = plain
      const drafted = metric(metrics, 'v4host_spec_draft_tokens_total');
      const accepted = metric(metrics, 'v4host_spec_accepted_tokens_total');
      const steps = metric(metrics, 'v4host_spec_verify_steps_total');
      const emitted = metric(metrics, 'v4host_spec_emitted_tokens_total');
      assert.ok(drafted > 0, metrics);
      assert.ok(accepted <= drafted);
      assert.ok(emitted >= steps && emitted <= accepted + steps);
      assert.ok(Math.abs(metric(metrics, 'v4host_spec_acceptance_ratio') - accepted / drafted) < 1e-6);
      assert.ok(Math.abs(metric(metrics, 'v4host_spec_tokens_per_step') - emitted / steps) < 1e-6);
    });
  });
}

test('serve --speculative with a bad value exits 2 naming the flag', { skip: skip || false }, () => {
  const r = spawnSync(v4hostBin(), ['serve', '--demo', '--speculative', 'sometimes', '--quiet'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--speculative/);
});
