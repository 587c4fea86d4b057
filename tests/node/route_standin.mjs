// A scripted stand-in for the hosted DeepSeek API (the one upstream of the router tests that
// cannot run here), behaving like the real one where the router depends on it:
//  - POST /chat/completions and /v1/chat/completions, streaming (SSE, usage in the last chunk when
//    stream_options.include_usage) or not;
//  - the reasoning switch `thinking: {type: enabled|disabled}` (default enabled for the
//    reasoner-style models): reasoning_content in the answer only when enabled;
//  - in thinking mode, an assistant turn with tool_calls but no reasoning_content is refused with
//    400 (invalid_request_error), as the hosted API does;
//  - usage with prompt_cache_hit_tokens / prompt_cache_miss_tokens (and cached_tokens), a second
//    identical prompt counting as a cache hit, so the router's tariff has cached input to price;
//  - requires `Authorization: Bearer <key>` when started with a key (401 otherwise).
// The `model` field picks a behaviour, so one stand-in plays many upstreams:
//   ok | tools (answers with a tool call) | json (valid JSON for the schema) | badjson |
//   http500 | garbage (200 with a non-SSE body) | cut (stream cut after two deltas, no [DONE]) |
//   slow (first token after `slowMs`) | hang (headers, then nothing) | ratelimit (429 with
//   Retry-After: 1 on the first call per prompt, then ok) | ratelimit-always.
// POST /v1/messages plays an Anthropic upstream: x-api-key, anthropic-version and max_tokens
// required, extended thinking only with 1024 <= budget_tokens < max_tokens (400 otherwise).
// Every request is recorded (`requests`) so tests can assert what the router sent.
import http from 'node:http';

export async function startStandin({ key = '', slowMs = 3000 } = {}) {
  const requests = [];
  const seenPrompts = new Set();
  const limited = new Set();
  const sockets = new Set();
  let n = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => handle(req, res, body));
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  function error(res, status, message, type = 'invalid_request_error', headers = {}) {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ error: { message, type, param: null, code: null } }));
  }

  // Engine-style pressure for overflow tests: /health answers like v4host serve, /metrics like vLLM.
  const pressure = { queued: 0, running: 1 };
  function handle(req, res, raw) {
    if (req.method === 'GET' && req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ status: 'ok', model: 'standin', running: pressure.running, queued: pressure.queued }));
    }
    if (req.method === 'GET' && req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return res.end(`# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} ${pressure.queued}\n` +
        `vllm:num_requests_running{model_name="m"} ${pressure.running}\n`);
    }
    // A RouteLLM-style classifier endpoint: long prompts are "hard".
    if (req.method === 'POST' && req.url === '/classify') {
      let b = {};
      try { b = JSON.parse(raw); } catch { /* empty */ }
      const text = JSON.stringify(b.messages || '');
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ route: text.includes('prove') ? 'hard' : 'easy' }));
    }
    if (req.method === 'GET' && (req.url === '/models' || req.url === '/v1/models')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'list', data: [{ id: 'deepseek-v4-pro', object: 'model' }] }));
    }
    if (req.method === 'POST' && req.url === '/v1/messages') return messages(req, res, raw);
    if (req.method !== 'POST' || !/^(\/v1)?\/chat\/completions$/.test(req.url)) return error(res, 404, `no route ${req.url}`);
    let b;
    try { b = JSON.parse(raw); } catch { return error(res, 400, 'Failed to deserialize the JSON body'); }
    requests.push({ headers: req.headers, body: b, at: Date.now() });
    if (key && req.headers.authorization !== `Bearer ${key}`) return error(res, 401, 'Authentication Fails, Your api key is invalid', 'authentication_error');
    const mode = String(b.model || 'ok');
    const thinking = !(b.thinking && b.thinking.type === 'disabled');
    const msgs = Array.isArray(b.messages) ? b.messages : [];
    if (thinking) {
      for (const m of msgs) {
        if (m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length && typeof m.reasoning_content !== 'string')
          return error(res, 400, 'Missing `reasoning_content` field in the assistant message at message index ' + msgs.indexOf(m) +
            '. For more information, please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls');
      }
    }
    const promptKey = JSON.stringify(msgs);
    const promptTokens = Math.max(1, Math.ceil(promptKey.length / 4));
    const hit = seenPrompts.has(promptKey) ? Math.floor(promptTokens / 2) : 0;
    seenPrompts.add(promptKey);
    if (mode === 'http500') return error(res, 500, 'Internal server error (stand-in)', 'server_error');
    if (mode === 'ratelimit-always' || (mode === 'ratelimit' && !limited.has(promptKey))) {
      limited.add(promptKey);
      return error(res, 429, 'Rate limit reached for requests', 'rate_limit_error', { 'retry-after': '1' });
    }
    if (mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      return res.end('data: {this is not json\n\nHTTP/1.1 500 oops <html>');
    }
    const id = `stand-${++n}`;
    const reasoning = thinking ? 'Let me think about this.' : null;
    let content = 'Hello from the hosted stand-in.';
    let toolCalls = null;
    if (mode === 'json') content = JSON.stringify({ answer: 42, source: 'hosted' });
    if (mode === 'badjson') content = '{"answer": "not a number"';
    const lastTool = msgs.length && msgs[msgs.length - 1].role === 'tool';
    if (mode === 'tools' && !lastTool && Array.isArray(b.tools) && b.tools.length) {
      const t = b.tools[0].function;
      toolCalls = [{ id: `call_${n}`, type: 'function', function: { name: t.name, arguments: JSON.stringify({ city: 'Paris' }) } }];
      content = '';
    } else if (mode === 'tools' && lastTool) {
      content = `The tool said: ${msgs[msgs.length - 1].content}`;
    }
    const completionTokens = Math.max(1, Math.ceil((content.length + (reasoning ? reasoning.length : 0)) / 4));
    const usage = {
      prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: hit }, prompt_cache_hit_tokens: hit, prompt_cache_miss_tokens: promptTokens - hit,
      completion_tokens_details: { reasoning_tokens: reasoning ? Math.ceil(reasoning.length / 4) : 0 },
    };
    const finish = toolCalls ? 'tool_calls' : 'stop';
    const created = Math.floor(Date.now() / 1000);
    if (!b.stream) {
      const message = { role: 'assistant', content: toolCalls ? null : content };
      if (reasoning) message.reasoning_content = reasoning;
      if (toolCalls) message.tool_calls = toolCalls;
      const send = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id, object: 'chat.completion', created, model: 'deepseek-v4-pro', choices: [{ index: 0, message, finish_reason: finish }], usage }));
      };
      if (mode === 'hang') return;  // never answers
      return mode === 'slow' ? setTimeout(send, slowMs) : send();
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = (delta, fin = null, extra = {}) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: 'deepseek-v4-pro', choices: [{ index: 0, delta, finish_reason: fin }], ...extra })}\n\n`;
    const parts = [chunk({ role: 'assistant', content: '' })];
    if (reasoning) parts.push(chunk({ reasoning_content: reasoning }));
    if (toolCalls) {
      parts.push(chunk({ tool_calls: [{ index: 0, id: toolCalls[0].id, type: 'function', function: { name: toolCalls[0].function.name, arguments: '' } }] }));
      parts.push(chunk({ tool_calls: [{ index: 0, function: { arguments: toolCalls[0].function.arguments } }] }));
    } else {
      const words = content.match(/.{1,8}/gs) || [''];
      for (const w of words) parts.push(chunk({ content: w }));
    }
    parts.push(chunk({}, finish));
    if (b.stream_options && b.stream_options.include_usage) parts.push(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: 'deepseek-v4-pro', choices: [], usage })}\n\n`);
    parts.push('data: [DONE]\n\n');
    if (mode === 'hang') return res.write(': stand-in hangs\n\n');
    if (mode === 'cut') {
      res.write(parts.slice(0, 3).join(''));
      return setTimeout(() => res.socket.destroy(), 50);
    }
    const go = () => { res.write(parts.join('')); res.end(); };
    return mode === 'slow' ? setTimeout(go, slowMs) : go();
  }

  // An Anthropic Messages upstream (x-api-key, anthropic-version, the event stream).
  function messages(req, res, raw) {
    let b;
    try { b = JSON.parse(raw); } catch { return error(res, 400, 'invalid JSON'); }
    requests.push({ headers: req.headers, body: b, at: Date.now(), api: 'messages' });
    if (key && req.headers['x-api-key'] !== key) {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } }));
    }
    if (!req.headers['anthropic-version'] || typeof b.max_tokens !== 'number') {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens and anthropic-version are required' } }));
    }
    // As Anthropic's API: extended thinking needs budget_tokens >= 1024 and below max_tokens.
    if (b.thinking && b.thinking.type === 'enabled') {
      const bt = b.thinking.budget_tokens;
      if (typeof bt !== 'number' || bt < 1024 || bt >= b.max_tokens) {
        res.writeHead(400, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error',
          message: typeof bt !== 'number' || bt < 1024 ? 'thinking.budget_tokens: must be greater than or equal to 1024'
            : '`max_tokens` must be greater than `thinking.budget_tokens`' } }));
      }
    }
    const text = 'Hello from the Anthropic stand-in.';
    const usage = { input_tokens: 11, output_tokens: 9, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
    const id = `msg_${++n}`;
    if (!b.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ id, type: 'message', role: 'assistant', model: b.model, content: [{ type: 'text', text }],
        stop_reason: 'end_turn', stop_sequence: null, usage }));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    res.write(ev('message_start', { message: { id, type: 'message', role: 'assistant', model: b.model, content: [], stop_reason: null,
      stop_sequence: null, usage: { ...usage, output_tokens: 0 } } }));
    res.write(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
    for (const w of text.match(/.{1,8}/gs)) res.write(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } }));
    res.write(ev('content_block_stop', { index: 0 }));
    res.write(ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }));
    res.end(ev('message_stop', {}));
  }

  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port, url: `http://127.0.0.1:${port}`, requests, pressure,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}
