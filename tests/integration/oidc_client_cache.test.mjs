// The gateway's per-loop memory of client authentications at the token
// endpoint (KREIDE_CLIENT_CACHE_TTL): repeated client_credentials requests
// keep working, a wrong secret is refused however often the right one
// succeeded before, and a client disabled in identity is refused within the
// TTL (here 2 seconds).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startSuite, api, until } from '../lib/kreide.mjs';

const TTL_S = 2;
let s;
let cc; // { client_id, client_secret }

const form = (fields) => new URLSearchParams(fields).toString();
const basic = (id, secret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const sql = (query) => execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();

function grant(id, secret, { body = false } = {}) {
  const fields = { grant_type: 'client_credentials', scope: 'reports' };
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (body) Object.assign(fields, { client_id: id, client_secret: secret });
  else headers.authorization = basic(id, secret);
  return api(`${s.url}/oidc/token`, { method: 'POST', raw: form(fields), headers });
}

function assertRefused(r) {
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error, 'invalid_client');
  assert.equal(r.json.access_token, undefined);
}

before(async () => {
  s = await startSuite({ name: 'oidcclientcache', env: { KREIDE_CLIENT_CACHE_TTL: String(TTL_S) } });
  const op = s.token({ roles: ['operator'] });
  const r = await api(`${s.url}/api/v1/oidc/clients`, {
    method: 'POST', token: op,
    body: { name: 'Cache-Probe', type: 'CONFIDENTIAL', grant_types: ['client_credentials'], scopes: ['reports'] },
  });
  assert.equal(r.status, 201, r.text);
  cc = r.json;
});

after(async () => {
  await s?.stop();
});

test('repeated client_credentials requests each get a token of their own', async () => {
  const jtis = new Set();
  for (let i = 0; i < 20; i++) {
    const r = await grant(cc.client_id, cc.client_secret, { body: i % 2 === 1 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.token_type, 'Bearer');
    assert.equal(r.json.scope, 'reports');
    const payload = JSON.parse(Buffer.from(r.json.access_token.split('.')[1], 'base64url').toString());
    assert.equal(payload.client_id, cc.client_id);
    jtis.add(payload.jti);
  }
  assert.equal(jtis.size, 20);
});

test('a wrong secret after the right one is still refused, in either method', async () => {
  assert.equal((await grant(cc.client_id, cc.client_secret)).status, 200);
  const wrong = [
    `${cc.client_secret}x`,
    cc.client_secret.slice(0, -1),
    `${cc.client_secret.slice(0, -1)}${cc.client_secret.endsWith('A') ? 'B' : 'A'}`,
    'not-the-secret',
  ];
  for (const secret of wrong) {
    assertRefused(await grant(cc.client_id, secret));
    assertRefused(await grant(cc.client_id, secret, { body: true }));
  }
  // No secret at all: a confidential client must authenticate.
  const r = await api(`${s.url}/oidc/token`, {
    method: 'POST', raw: form({ grant_type: 'client_credentials', client_id: cc.client_id }),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  assertRefused(r);
  // The right secret for another client id is no success either.
  assertRefused(await grant('AAAAAAAAAAAAAAAAAAAAAA', cc.client_secret));
  // The failures changed nothing for the right secret.
  assert.equal((await grant(cc.client_id, cc.client_secret)).status, 200);
});

test('a client disabled in identity is refused within the TTL and stays refused', async () => {
  assert.equal((await grant(cc.client_id, cc.client_secret)).status, 200);
  sql(`UPDATE identity.oidc_clients SET disabled_at = now() WHERE id = '${cc.client_id}'`);
  const t0 = Date.now();
  await until(async () => (await grant(cc.client_id, cc.client_secret)).status === 401,
    { what: 'the disabled client refused', timeoutMs: 15000 });
  // The bound is the TTL; allow for a loaded machine.
  assert.ok(Date.now() - t0 < (TTL_S + 8) * 1000, `refused only after ${Date.now() - t0} ms`);
  // Each event loop remembers on its own, so one may refuse while another
  // still answers from memory; once the TTL has passed since the client was
  // disabled, none does.
  const left = t0 + TTL_S * 1000 + 200 - Date.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  for (let i = 0; i < 10; i++) assertRefused(await grant(cc.client_id, cc.client_secret, { body: i % 2 === 1 }));
});
