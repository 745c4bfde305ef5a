// The gateway serving the portal (KREIDE_STATIC_DIR): files with the
// portal's headers, index.html for the app's routes, JSON 404s for missing
// files and for every path of the gateway's own, and the portal's
// configuration document (KREIDE_PORTAL_CONFIG), read at each request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, renameSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { startSuite, api } from '../lib/kreide.mjs';

const INDEX = '<!doctype html><title>portal index</title>';
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
  "connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
let s;
let dir;
let configFile;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kreide-static-'));
  const www = path.join(dir, 'www');
  mkdirSync(path.join(www, 'assets'), { recursive: true });
  writeFileSync(path.join(www, 'index.html'), INDEX);
  writeFileSync(path.join(www, 'assets', 'index-Ab12Cd34.js'), 'console.log(1)');
  writeFileSync(path.join(www, 'sw.js'), 'self.x = 1');
  writeFileSync(path.join(www, 'manifest.webmanifest'), '{"name":"Kreide"}');
  configFile = path.join(dir, 'portal-config.json');
  s = await startSuite({ name: 'static', env: { KREIDE_STATIC_DIR: www, KREIDE_PORTAL_CONFIG: configFile } });
});
after(async () => {
  if (s) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

const get = (p, opts) => api(`${s.url}${p}`, opts);

test('the start page carries the portal headers and is revalidated', async () => {
  const r = await get('/');
  assert.equal(r.status, 200);
  assert.equal(r.text, INDEX);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  assert.equal(r.headers.get('content-security-policy'), CSP);
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
});

test('routes of the app answer with its index.html, also with a query', async () => {
  for (const p of ['/auth/callback?code=abc&state=xyz', '/enroll', '/class/0192/0193', '/admin/x/', '/apiary']) {
    const r = await get(p);
    assert.equal(r.status, 200, p);
    assert.equal(r.text, INDEX, p);
    assert.match(r.headers.get('content-type'), /^text\/html; charset=utf-8/, p);
    assert.equal(r.headers.get('content-security-policy'), CSP, p);
    assert.equal(r.headers.get('cache-control'), 'no-cache', p);
  }
  const head = await fetch(`${s.url}/accounts`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  const post = await get('/enroll', { method: 'POST', body: {} });
  assert.equal(post.status, 405);
  assert.equal(post.json.error.code, 'static.method_not_allowed');
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
});

test('hashed assets are cached for a year, other files revalidated, types right', async () => {
  const a = await get('/assets/index-Ab12Cd34.js');
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.match(a.headers.get('content-type'), /^text\/javascript/);
  const sw = await get('/sw.js');
  assert.equal(sw.status, 200);
  assert.equal(sw.headers.get('cache-control'), 'no-cache');
  const m = await get('/manifest.webmanifest');
  assert.match(m.headers.get('content-type'), /^application\/manifest\+json/);
});

test('missing files and the gateway\'s own paths are never answered with the app', async () => {
  for (const p of ['/assets/index-gone.js', '/missing.png', '/icons/none.svg', '/.well-known/nothing']) {
    const r = await get(p);
    assert.equal(r.status, 404, p);
    assert.notEqual(r.text, INDEX, p);
  }
  // Dot segments are resolved inside the directory: never a file outside it.
  for (const p of ['/%2e%2e/%2e%2e/etc/passwd', '/assets/../../../etc/passwd', '/..%2f..%2fetc%2fpasswd']) {
    const r = await get(p);
    assert.ok(!r.text.includes('root:'), p);
  }
  const missing = await get('/assets/index-gone.js');
  assert.equal(missing.json.error.code, 'static.not_found');
  assert.match(missing.headers.get('content-type'), /^application\/json/);
  // The API, the sign-in pages and the operational endpoints keep their own answers.
  const apiMiss = await get('/api/v1/nothing');
  assert.equal(apiMiss.status, 404);
  assert.equal(apiMiss.json.error.code, 'api.not_found');
  const oidc = await get('/oidc/nothing');
  assert.equal(oidc.status, 404);
  assert.notEqual(oidc.text, INDEX);
  assert.equal((await get('/healthz')).status, 200);
  const disc = await get('/.well-known/openid-configuration');
  assert.equal(disc.status, 200);
  assert.ok(disc.json.issuer);
});

test('the portal configuration is served uncached once it exists, and follows changes', async () => {
  const none = await get('/portal-config.json');
  assert.equal(none.status, 404);
  assert.equal(none.json.error.code, 'static.not_configured');
  writeFileSync(configFile, JSON.stringify({ client_id: 'first' }));
  const one = await get('/portal-config.json');
  assert.equal(one.status, 200);
  assert.deepEqual(one.json, { client_id: 'first' });
  assert.match(one.headers.get('content-type'), /^application\/json/);
  assert.equal(one.headers.get('cache-control'), 'no-store');
  // A new registration (a new file in its place) is served as soon as h2o's
  // file cache lets go of the old one (within a second).
  writeFileSync(`${configFile}.new`, JSON.stringify({ client_id: 'second' }));
  renameSync(`${configFile}.new`, configFile);
  const deadline = Date.now() + 5000;
  let seen;
  while (Date.now() < deadline) {
    seen = (await get('/portal-config.json')).json;
    if (seen && seen.client_id === 'second') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(seen, { client_id: 'second' });
});
