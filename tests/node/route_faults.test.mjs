// `v4host route` against the scripted hosted stand-in: fallback on every fault (down, slow, 500,
// garbage, a stream cut mid-way, a hang, 429 with Retry-After), the DeepSeek reasoning switch and
// reasoning_content on tool turns, verification-gated fallback (schema verifiers and an external
// command), cost caps and budgets, config errors and residency violations refused at load.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { freePort, parseSse, skipReason, getMetrics } from './v4host_server.mjs';
import { hasSqliteCli, ledgerRows, postJson, runV4host, startRouter, tempDir } from './route_helpers.mjs';
import { startStandin } from './route_standin.mjs';

const why = skipReason();

describe('route: faults, fallback, verification, money, config', { skip: why || false }, () => {
  let hosted, router, dead;
  const KEY = 'sk-standin';

  before(async () => {
    hosted = await startStandin({ key: KEY, slowMs: 2500 });
    dead = await freePort();
    const up = (name, model, extra = '') =>
      `  ${name}: {kind: deepseek, base_url: "${hosted.url}", api_key_env: STANDIN_KEY, model: ${model}, residency: cloud, ` +
      `timeouts: {connect: 1s, first_token: 800ms, total: 10s}${extra}, cost: {tariff: [{from: 2026-01-01, input: 0.5, cached_input: 0.05, output: 2.0}]}}\n`;
    const yaml = `upstreams:\n` +
      up('ok', 'ok') + up('ok2', 'ok') + up('e500', 'http500') + up('garbage', 'garbage') + up('cut', 'cut') + up('slow', 'slow') +
      up('hang', 'hang') + up('limited', 'ratelimit') + up('tools', 'tools') + up('json', 'json') + up('badjson', 'badjson') +
      `  down: {kind: v4host, base_url: "http://127.0.0.1:${dead}/v1", residency: cloud, timeouts: {connect: 500ms}, health: {interval: 0s}}\n` +
      `  slowpriced: {kind: deepseek, base_url: "${hosted.url}", api_key_env: STANDIN_KEY, model: slow, residency: cloud, ` +
      `timeouts: {connect: 1s, first_token: 8s, total: 20s}, cost: {tariff: [{from: 2026-01-01, input: 0.5, cached_input: 0.05, output: 2.0}]}}\n` +
      `  local: {kind: deepseek, base_url: "${hosted.url}", api_key_env: STANDIN_KEY, model: ok, residency: on-prem, cost: {amortised_per_hour: 1.0}}\n` +
      `routes:\n` +
      `  r500: {chain: [e500, ok]}\n` +
      `  rdown: {chain: [down, ok]}\n` +
      `  rgarbage: {chain: [garbage]}\n` +
      `  rcut: {chain: [cut, ok]}\n` +
      `  rcutfb: {chain: [cut, ok], stream: first_byte}\n` +
      `  rslow: {chain: [slow, ok]}\n` +
      `  rhang: {chain: [hang]}\n` +
      `  r429: {chain: [limited], retry: {attempts: 2, backoff: 50ms, max_backoff: 2s}}\n` +
      `  rtools: {chain: [tools]}\n` +
      `  rschema: {chain: [badjson, json], verify: [json_schema]}\n` +
      `  rcmd: {chain: [ok, ok2], verify: [non_empty, {command: [sh, -c, "grep -q '\\"upstream\\":\\"ok2\\"' || { echo 'only ok2 may answer' >&2; exit 1; }"], timeout: 5s}]}\n` +
      `  rcap: {chain: [ok], cost_cap: {usd: 0.0001, over: rlocal}}\n` +
      `  rcapref: {chain: [ok], cost_cap: {usd: 0.0001}}\n` +
      `  rlocal: {chain: [local]}\n` +
      `  rbudget: {chain: [ok, local]}\n` +
      `  rbudgetonly: {chain: [ok]}\n` +
      `  rreserve: {chain: [slowpriced]}\n` +
      `keys:\n  thrifty: {key_env: THRIFTY_KEY, budget: {month: 0.000001}}\n` +
      `  pair: {key_env: PAIR_KEY, budget: {day: 0.00045}}\n`;
    router = await startRouter(yaml, { env: { STANDIN_KEY: KEY, THRIFTY_KEY: 'sk-thrifty', PAIR_KEY: 'sk-pair' } });
  });

  after(async () => {
    if (router) { await router.stop(); router.cleanup(); }
    if (hosted) await hosted.close();
  });

  const chat = (model, extra = {}, headers = {}) =>
    postJson(`${router.url}/chat/completions`, { model, messages: [{ role: 'user', content: `hello ${Math.random()}` }], max_tokens: 32, ...extra }, headers);

  const hops = (id) => ledgerRows(router.ledger, `SELECT upstream, outcome, detail FROM hops WHERE request_id = '${id}' ORDER BY n`);

  test('500 and a dead upstream fall back to the next hop; the ledger keeps each hop', async () => {
    let r = await chat('r500');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'ok');
    assert.equal(r.headers.get('x-v4host-hops'), '2');
    assert.match(r.json.choices[0].message.content, /Hello from the hosted stand-in/);
    r = await chat('rdown');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'ok');
    if (hasSqliteCli()) {
      const h = hops(r.headers.get('x-v4host-request-id'));
      assert.deepEqual(h.map((x) => [x.upstream, x.outcome]), [['down', 'connect_error'], ['ok', 'ok']]);
    }
    const m = await getMetrics(router.base);
    assert.ok(m.get('v4host_route_fallbacks_total{route="r500",from="e500",reason="http_5xx"}') >= 1);
  });

  test('garbage from the only upstream is a 502 with a clear error, not a crash', async () => {
    const r = await chat('rgarbage');
    assert.equal(r.status, 502);
    assert.match(r.json.error.message, /upstream garbage failed \((garbage|truncated)\)/);
    const h = await fetch(`${router.base}/health`);
    assert.equal(h.status, 200);
  });

  test('slow (no first token in time) and hanging upstreams time out; slow falls back', async () => {
    let t0 = Date.now();
    let r = await chat('rslow');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'ok');
    assert.ok(Date.now() - t0 < 2400, `fell back after the first-token limit, not the stand-in's delay (${Date.now() - t0} ms)`);
    t0 = Date.now();
    r = await chat('rhang', { stream: true });
    assert.equal(r.status, 504, r.text);
    assert.match(r.json.error.message, /timed out/);
    assert.ok(Date.now() - t0 < 5000);
  });

  test('a stream cut mid-way: buffer mode falls back cleanly; first_byte mode ends with an error, never splices a second answer', async () => {
    let r = await chat('rcut', { stream: true });
    assert.equal(r.status, 200);
    let ev = parseSse(r.text);
    let text = ev.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data)).map((c) => c.choices?.[0]?.delta?.content || '').join('');
    assert.equal(text, 'Hello from the hosted stand-in.');
    assert.equal(r.headers.get('x-v4host-upstream'), 'ok');
    const before = hosted.requests.length;
    r = await chat('rcutfb', { stream: true });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-v4host-upstream'), 'cut');
    ev = parseSse(r.text);
    const chunks = ev.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
    text = chunks.map((c) => c.choices?.[0]?.delta?.content || '').join('');
    assert.ok('Hello from the hosted stand-in.'.startsWith(text) && text.length < 31, `only the cut upstream's prefix: ${JSON.stringify(text)}`);
    assert.ok(chunks.some((c) => c.error), 'the stream ends with an error chunk');
    assert.equal(hosted.requests.length - before, 1, 'no second upstream was asked once bytes were sent');
  });

  test('429 with Retry-After is retried after the delay it asks for', async () => {
    const t0 = Date.now();
    const r = await chat('r429');
    assert.equal(r.status, 200, r.text);
    assert.ok(Date.now() - t0 >= 950, `waited for Retry-After (${Date.now() - t0} ms)`);
    const mine = hosted.requests.slice(-2);
    assert.ok(mine[1].at - mine[0].at >= 950);
  });

  test('the DeepSeek reasoning switch and reasoning_content echoed on tool turns', async () => {
    let r = await chat('rlocal', { reasoning_effort: 'none' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(hosted.requests.at(-1).body.thinking, { type: 'disabled' });
    assert.equal(r.json.choices[0].message.reasoning_content, undefined);
    r = await chat('rlocal', { reasoning_effort: 'high' });
    assert.deepEqual(hosted.requests.at(-1).body.thinking, { type: 'enabled' });
    assert.equal(r.json.choices[0].message.reasoning_content, 'Let me think about this.');
    // Turn 1: a tool call (with reasoning); turn 2 from a client that drops reasoning_content.
    const tools = [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const messages = [{ role: 'user', content: 'weather in Paris?' }];
    r = await postJson(`${router.url}/chat/completions`, { model: 'rtools', messages, tools, reasoning_effort: 'high' });
    assert.equal(r.status, 200, r.text);
    const call = r.json.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'weather');
    const turn2 = [...messages, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: 'sunny' }];
    r = await postJson(`${router.url}/chat/completions`, { model: 'rtools', messages: turn2, tools, reasoning_effort: 'high' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].message.content, 'The tool said: sunny');
    assert.equal(hosted.requests.at(-1).body.messages[1].reasoning_content, 'Let me think about this.');
    // A tool turn the router never saw: thinking is switched off instead of a certain 400.
    turn2[1] = { ...turn2[1], tool_calls: [{ ...call, id: 'call_unknown' }] };
    turn2[2] = { ...turn2[2], tool_call_id: 'call_unknown' };
    r = await postJson(`${router.url}/chat/completions`, { model: 'rtools', messages: turn2, tools, reasoning_effort: 'high' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(hosted.requests.at(-1).body.thinking, { type: 'disabled' });
  });

  test('verification-gated fallback: response_format schema, then an external command', async () => {
    const rf = { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'object', required: ['answer'], properties: { answer: { type: 'integer' } } } } };
    let r = await chat('rschema', { response_format: rf });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'json');
    assert.deepEqual(JSON.parse(r.json.choices[0].message.content), { answer: 42, source: 'hosted' });
    r = await chat('rschema', { response_format: rf, stream: true });  // buffered until verified
    const text = parseSse(r.text).filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data).choices?.[0]?.delta?.content || '').join('');
    assert.deepEqual(JSON.parse(text), { answer: 42, source: 'hosted' });
    r = await chat('rcmd');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'ok2');
    if (hasSqliteCli()) {
      const h = hops(r.headers.get('x-v4host-request-id'));
      assert.equal(h[0].outcome, 'verify_failed');
      assert.match(h[0].detail, /only ok2 may answer/);
    }
    const m = await getMetrics(router.base);
    assert.ok(m.get('v4host_route_verification_failures_total{route="rcmd",upstream="ok",verifier="command"}') >= 1);
    assert.ok(m.get('v4host_route_verification_failures_total{route="rschema",upstream="badjson",verifier="json_schema"}') >= 2);
  });

  test('cost cap: refused, or routed to the cheaper route; budgets: 429, but the unpriced local tier still serves', async () => {
    let r = await chat('rcapref', { max_tokens: 1000 });  // 1000 x $2/M = $0.002 > $0.0001
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /cost cap/);
    r = await chat('rcap', { max_tokens: 1000 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'local');
    const auth = { authorization: 'Bearer sk-thrifty' };
    r = await chat('rbudgetonly', {}, auth);  // its worst case (32 tokens at $2/M) does not fit the budget
    assert.equal(r.status, 429);
    assert.match(r.json.error.message, /budget exhausted: key 'thrifty' has spent \$0\.0000 of its \$1e-06 monthly budget, and this request could cost up to \$0\.0000[0-9]+/);
    r = await chat('rbudgetonly', {}, auth);
    assert.equal(r.status, 429);
    assert.match(r.json.error.message, /budget exhausted: key 'thrifty' has spent \$[0-9.]+ of its \$1e-06 monthly budget/);
    r = await chat('rbudget', {}, auth);  // the priced hop is skipped, the local one answers
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'local');
    const spend = runV4host(['spend', '--ledger', router.ledger, '--by', 'key', '--json']);
    assert.equal(spend.status, 0, spend.stderr);
    const rows = JSON.parse(spend.stdout);
    const t = rows.find((x) => x.key === 'thrifty');
    assert.equal(t.requests, 3);
    assert.ok(t.amortised_usd > 0, 'the local tier shows its amortised cost');
  });

  test("the client's own cap (x-v4host-max-cost): priced hops over it are skipped, the unpriced local tier serves; refused when none is left", async () => {
    // Worst case at max_tokens 1000: 1000 x $2/M = $0.002.
    let r = await chat('rbudget', { max_tokens: 1000 }, { 'x-v4host-max-cost': '0.001' });  // chain [ok, local]
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'local');
    if (hasSqliteCli()) {
      const h = hops(r.headers.get('x-v4host-request-id'));
      assert.equal(h[0].upstream, 'ok');
      assert.equal(h[0].outcome, 'cost_cap');
      assert.match(h[0].detail, /worst case \$0\.00200[0-9]* > the request's max cost \$0\.001/);
    }
    r = await chat('rbudgetonly', { max_tokens: 1000 }, { 'x-v4host-max-cost': '0.001' });  // chain [ok]: nothing left
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'cost_cap_exceeded');
    assert.match(r.json.error.message, /over its max cost \(\$0\.001 from x-v4host-max-cost; the cheapest upstream of route 'rbudgetonly' could cost up to \$0\.00200/);
    r = await chat('rbudgetonly', { max_tokens: 1000 }, { 'x-v4host-max-cost': ' 0.01 ' });  // room enough: the priced hop answers
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'ok');
    // The lower of the route's cap and the client's binds: rcap's own cap ($0.0001) hands over to
    // rlocal whatever the client allows.
    r = await chat('rcap', { max_tokens: 1000 }, { 'x-v4host-max-cost': '5' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-v4host-upstream'), 'local');
    for (const bad of ['abc', '0', '-1', '1e999', '0.5usd']) {
      r = await chat('rbudgetonly', {}, { 'x-v4host-max-cost': bad });
      assert.equal(r.status, 400, `${bad}: ${r.text}`);
      assert.match(r.json.error.message, /x-v4host-max-cost must be a positive number of US dollars/);
      assert.equal(r.json.error.param, 'x-v4host-max-cost');
    }
  });

  test('budgets reserve the worst case of requests in flight: concurrent requests cannot overshoot; released on completion', async () => {
    // Worst case per request: 100 output tokens at $2/M plus a few prompt tokens at $0.5/M, about
    // $0.000205: the $0.00045 daily budget holds two in flight, not three. The upstream takes 2.5 s,
    // so all four requests are in flight together; without reservations all four would go out.
    const auth = { authorization: 'Bearer sk-pair' };
    const rs = await Promise.all([0, 1, 2, 3].map((i) => new Promise((res) => setTimeout(res, i * 50)).then(() => chat('rreserve', { max_tokens: 100 }, auth))));
    const ok = rs.filter((r) => r.status === 200);
    const refused = rs.filter((r) => r.status === 429);
    assert.equal(ok.length, 2, rs.map((r) => `${r.status} ${r.text.slice(0, 200)}`).join('\n'));
    assert.equal(refused.length, 2);
    for (const r of refused) assert.match(r.json.error.message, /key 'pair' has spent \$0\.0000 of its \$0\.00045 daily budget, \$0\.000[0-9]+ is reserved by requests in flight/);
    const spent = ok.reduce((a, r) => a + Number(r.headers.get('x-v4host-cost-usd')), 0);
    assert.ok(spent > 0 && spent <= 0.00045, `spent ${spent}`);
    // The answers cost less than their worst case; once they are in the ledger the reservations
    // are released and the actual spend is what counts: the next request goes out.
    const r = await chat('rreserve', { max_tokens: 100 }, auth);
    assert.equal(r.status, 200, r.text);
  });

  test('a client that goes away mid-request: the upstream call is cancelled and the ledger says so', async () => {
    const ac = new AbortController();
    const p = fetch(`${router.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ model: 'rhang', stream: true, messages: [{ role: 'user', content: 'bye' }] }) }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    await p;
    await new Promise((r) => setTimeout(r, 300));
    if (hasSqliteCli()) {
      const rows = ledgerRows(router.ledger, `SELECT outcome, status FROM requests WHERE route = 'rhang' ORDER BY ts DESC LIMIT 1`);
      assert.deepEqual(rows, [{ outcome: 'client_gone', status: 499 }]);
    }
    const h = await (await fetch(`${router.base}/health`)).json();
    assert.equal(h.upstreams.hang.in_flight, 0);
  });

  test('bad requests are 4xx naming the problem', async () => {
    let r = await fetch(`${router.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    assert.equal(r.status, 400);
    r = await postJson(`${router.url}/chat/completions`, { model: 'r500', messages: 'hi' });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /messages/);
    const models = await (await fetch(`${router.url}/models`)).json();
    assert.ok(models.data.some((m) => m.id === 'rcut'));
  });
});

describe('route: config errors exit 2 naming field and line', { skip: why || false }, () => {
  const dir = tempDir();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name, text) => { const p = path.join(dir, name); fs.writeFileSync(p, text); return p; };

  test('unknown field, bad value, unknown upstream', () => {
    let r = runV4host(['route', '--check-config', write('a.yaml', 'upstreams:\n  a: {kind: v4host, base_url: "http://x/v1"}\nroutes:\n  r:\n    chain: [a]\n    strem: buffer\n')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /a\.yaml:6: routes\.r\.strem: unknown field/);
    r = runV4host(['route', '--config', write('b.yaml', 'upstreams:\n  a: {kind: v4host, base_url: "http://x/v1", concurrency: lots}\nroutes:\n  r: {chain: [a]}\n')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /b\.yaml:2: upstreams\.a\.concurrency: expected an integer/);
  });

  test('a chain that could send restricted data to a disallowed upstream is refused at load, naming the chain', () => {
    const r = runV4host(['route', '--check-config', write('c.yaml',
      'upstreams:\n  flash: {kind: v4host, base_url: "http://x/v1", residency: on-prem}\n  pro: {kind: deepseek, base_url: "https://y", residency: cloud}\n' +
      'routes:\n  auto: {chain: [flash, pro]}\n  local: {chain: [flash]}\nteams:\n  secure: {residency: [on-prem]}\n')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /teams\.secure\.residency: chain 'auto' \[flash -> pro\] could send secure's data to upstream 'pro' \(residency 'cloud'\)/);
    const ok = runV4host(['route', '--check-config', write('d.yaml',
      'upstreams:\n  flash: {kind: v4host, base_url: "http://x/v1", residency: on-prem}\n  pro: {kind: deepseek, base_url: "https://y", residency: cloud}\n' +
      'routes:\n  auto: {chain: [flash, pro]}\n  local: {chain: [flash]}\nteams:\n  secure: {residency: [on-prem], routes: [local]}\n')]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /auto: flash -> pro/);
    assert.match(ok.stdout, /team secure: residency \[on-prem\] routes \[local\]/);
  });
});
