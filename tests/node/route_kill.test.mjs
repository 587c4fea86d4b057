// `kill -9` of the router under load, then the ledger: every response a client received in full
// is recorded exactly once, with all its hops; nothing is recorded that was not started; the
// database passes its integrity check and a restarted router opens it and reports from it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { skipReason } from './v4host_server.mjs';
import { hasSqliteCli, ledgerRows, runV4host, startRouter, tempDir } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

const why = skipReason() || (hasSqliteCli() ? '' : 'sqlite3 command not installed (scripts/setup.sh installs it)');

describe('route: kill -9 under load leaves a consistent ledger', { skip: why || false }, () => {
  let hosted;
  const dir = tempDir();
  const yaml = (url) => `upstreams:\n` +
    `  bad: {kind: deepseek, base_url: "${url}", model: http500, cost: {tariff: [{from: 2026-01-01, input: 1, output: 2}]}}\n` +
    `  good: {kind: deepseek, base_url: "${url}", model: ok, cost: {tariff: [{from: 2026-01-01, input: 1, output: 2}]}}\n` +
    `routes:\n  auto: {chain: [bad, good]}\n`;

  before(async () => { hosted = await startStandin(); });
  after(async () => {
    if (hosted) await hosted.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('no request counted twice or lost once its response was sent', async () => {
    const router = await startRouter(yaml(hosted.url), { dir });
    const done = new Set();
    let started = 0;
    let stop = false;
    const worker = async (w) => {
      for (let i = 0; !stop; ++i) {
        started++;
        const stream = (i + w) % 2 === 0;
        try {
          const r = await fetch(`${router.url}/chat/completions`, {
            method: 'POST', headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'auto', stream, messages: [{ role: 'user', content: `w${w} i${i}` }] }),
          });
          const id = r.headers.get('x-v4host-request-id');
          const body = await r.text();  // throws if the connection dies mid-body
          if (r.status === 200 && (!stream || body.includes('data: [DONE]'))) done.add(id);
        } catch { /* cut off by the kill */ }
      }
    };
    const workers = Array.from({ length: 24 }, (_, w) => worker(w));
    // Kill once the load has really run (a count, not a time: a starved machine is only slower);
    // the cap keeps a broken router from hanging the test.
    for (const t0 = Date.now(); done.size <= 50 && Date.now() - t0 < 60000;) await new Promise((r) => setTimeout(r, 50));
    await router.kill('SIGKILL');
    stop = true;
    await Promise.all(workers);
    assert.ok(done.size > 50, `load ran (${done.size} complete responses)`);
    const rows = ledgerRows(router.ledger, 'SELECT id, hops, (SELECT COUNT(*) FROM hops h WHERE h.request_id = r.id) AS hop_rows FROM requests r');
    const ids = new Map(rows.map((x) => [x.id, x]));
    assert.equal(ids.size, rows.length, 'no id twice');
    for (const id of done) assert.ok(ids.has(id), `a response the client received is in the ledger (${id})`);
    assert.ok(rows.length <= started, 'nothing recorded that was not started');
    for (const x of rows) {
      assert.equal(x.hop_rows, x.hops, 'every hop of a request was committed with it');
      assert.equal(x.hops, 2);  // the 500 hop and the answer
    }
    assert.deepEqual(ledgerRows(router.ledger, 'PRAGMA integrity_check'), [{ integrity_check: 'ok' }]);
    // A restarted router opens the same ledger; the report adds up to the same rows.
    const again = await startRouter(yaml(hosted.url), { dir });
    await again.stop();
    const spend = runV4host(['spend', '--ledger', router.ledger, '--by', 'upstream', '--json']);
    assert.equal(spend.status, 0, spend.stderr);
    const byUp = Object.fromEntries(JSON.parse(spend.stdout).map((x) => [x.upstream, x]));
    assert.equal(byUp.bad.hops, rows.length);
    assert.equal(byUp.good.ok, rows.length);
  });
});
