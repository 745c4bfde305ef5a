#!/usr/bin/env node
// The portal's weight on first load: every script, module preload and style
// sheet that the built index.html loads, each compressed with gzip level 9
// (zlib, RFC 1952) as a server or proxy would send it. The goal is at most
// 150 KiB together. Prints one line per file and the sum; writes
// bench/results/portal.json.
//
//   node tests/bench/portal_size.mjs [PORTAL_DIR]     (default $BUILD/portal)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';

const GOAL_KIB = 150;
const dir = process.argv[2] || path.join(process.env.BUILD || 'build', 'portal');
const html = readFileSync(path.join(dir, 'index.html'), 'utf8');

// <script src>, <link rel="stylesheet|modulepreload" href>: same-origin paths only.
const refs = [];
for (const tag of html.match(/<(script|link)\b[^>]*>/gi) || []) {
  const attr = (name) => (tag.match(new RegExp(`\\b${name}\\s*=\\s*"([^"]*)"`, 'i')) || [])[1];
  const isScript = /^<script/i.test(tag);
  const rel = (attr('rel') || '').toLowerCase();
  const url = isScript ? attr('src') : attr('href');
  if (!url) continue;
  if (!isScript && rel !== 'stylesheet' && rel !== 'modulepreload') continue;
  if (!url.startsWith('/') || url.startsWith('//')) throw new Error(`index.html loads ${url} from elsewhere`);
  refs.push(url);
}
if (refs.length === 0) throw new Error('index.html loads no script or style sheet');

const files = [...new Set(refs)].map((url) => {
  const body = readFileSync(path.join(dir, url.split('?')[0]));
  return { url, bytes: body.length, gzip_bytes: gzipSync(body, { level: 9 }).length };
});
const total = files.reduce((a, f) => a + f.gzip_bytes, 0);
const raw = files.reduce((a, f) => a + f.bytes, 0);
const kib = (n) => (n / 1024).toFixed(1);

console.log('\nportal: what index.html loads first (gzip -9)');
for (const f of files) console.log(`  ${f.url.padEnd(40)} ${kib(f.bytes).padStart(8)} KiB ${kib(f.gzip_bytes).padStart(8)} KiB gzip`);
console.log(`portal initial JS + CSS = ${kib(total)} KiB gzip (${kib(raw)} KiB raw)   (goal <= ${GOAL_KIB} KiB)`);

mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/portal.json', `${JSON.stringify({
  name: 'portal', tool: 'node zlib gzip level 9', inputs: { index: path.join(dir, 'index.html') },
  files, initial_gzip_bytes: total, initial_raw_bytes: raw, goal_gzip_bytes: GOAL_KIB * 1024,
  within_goal: total <= GOAL_KIB * 1024,
}, null, 2)}\n`);
console.log('wrote bench/results/portal.json');
