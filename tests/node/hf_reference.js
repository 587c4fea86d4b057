// Reference tokenization with Hugging Face `tokenizers` (npm, prebuilt native binding).
// Usage: node hf_reference.js REQUEST.json RESPONSE.json
// REQUEST: {"tokenizer": "/path/tokenizer.json", "texts_b64": [...], "decode": [[ids], ...]}
//   texts are raw bytes in base64; they are decoded as UTF-8 with U+FFFD replacement (WHATWG
//   TextDecoder, maximal-subpart rule) and encoded with add_special_tokens = false.
// RESPONSE: {"ids": [[...], ...], "decoded_b64": ["...", ...]}  (decode keeps special tokens)
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [reqPath, outPath] = process.argv.slice(2);
  const req = JSON.parse(fs.readFileSync(reqPath, 'utf8'));
  const tok = Tokenizer.fromFile(req.tokenizer);
  const dec = new TextDecoder('utf-8');
  const ids = [];
  for (const b64 of req.texts_b64 || []) {
    const text = dec.decode(Buffer.from(b64, 'base64'));
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    ids.push(Array.from(enc.getIds()));
  }
  const decoded = [];
  for (const seq of req.decode || []) {
    const s = await tok.decode(seq, false);
    decoded.push(Buffer.from(s, 'utf8').toString('base64'));
  }
  fs.writeFileSync(outPath, JSON.stringify({ ids, decoded_b64: decoded }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
