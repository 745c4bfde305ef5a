// OpenID Connect clients end to end: an operator registers a confidential
// client over the API, the unmodified `openid-client` library discovers the
// provider and runs the client_credentials grant, the token authenticates
// API calls on two gateway replicas, introspection reports it, and after
// revocation every replica refuses it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { startSuite, api, until } from '../lib/kreide.mjs';

let s;
let op;
let cc; // the confidential client: { client_id, client_secret }

const form = (fields) => new URLSearchParams(fields).toString();
const basic = (id, secret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

async function tokenRequest(url, fields, headers = {}) {
  return api(`${url}/oidc/token`, {
    method: 'POST', raw: form(fields), headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

// The configuration openid-client builds from our discovery document; plain
// http is allowed because the suite listens on loopback.
function discover(url, clientId, auth) {
  return oidc.discovery(new URL(url), clientId, undefined, auth, { execute: [oidc.allowInsecureRequests] });
}

before(async () => {
  s = await startSuite({ name: 'oidcclients', gateways: 2 });
  assert.ok(s.redisUrl, 'the suites run with a Redis (make test gives one)');
  op = s.token({ roles: ['operator'] });
  const r = await api(`${s.url}/api/v1/oidc/clients`, {
    method: 'POST', token: op,
    body: { name: 'Stundenplan-Export', type: 'CONFIDENTIAL', grant_types: ['client_credentials'], scopes: ['timetable', 'reports'] },
  });
  assert.equal(r.status, 201, r.text);
  cc = r.json;
});

after(async () => {
  await s?.stop();
});

test('registration returns a random client id and a secret shown once', async () => {
  assert.match(cc.client_id, /^[A-Za-z0-9_-]{22}$/);
  assert.match(cc.client_secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(cc.type, 'CONFIDENTIAL');
  assert.deepEqual(cc.grant_types, ['client_credentials']);
  assert.deepEqual(cc.scopes, ['timetable', 'reports']);
  assert.equal(cc.id_token_alg, 'ES256');
  const got = await api(`${s.url}/api/v1/oidc/clients/${cc.client_id}`, { token: op });
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.client_id, cc.client_id);
  assert.equal(got.json.name, 'Stundenplan-Export');
  assert.equal(got.json.client_secret, undefined);
  assert.ok(!got.text.includes(cc.client_secret));
});

test('openid-client discovers the provider and gets a token with client_secret_basic', async () => {
  const config = await discover(s.url, cc.client_id, oidc.ClientSecretBasic(cc.client_secret));
  assert.equal(config.serverMetadata().issuer, s.url);
  const tokens = await oidc.clientCredentialsGrant(config, { scope: 'timetable' });
  assert.equal(tokens.token_type, 'bearer'); // openid-client lower-cases it
  assert.equal(tokens.expires_in, 600);
  assert.equal(tokens.scope, 'timetable');
  const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
  assert.equal(claims.iss, s.url);
  assert.equal(claims.sub, cc.client_id);
  assert.equal(claims.client_id, cc.client_id);
  assert.equal(claims.aud, 'kreide');
  assert.equal(claims.kind, 'service');
  assert.equal(claims.exp - claims.iat, 600);
  assert.match(claims.jti, /^[0-9a-f-]{36}$/);
  const header = JSON.parse(Buffer.from(tokens.access_token.split('.')[0], 'base64url'));
  assert.equal(header.alg, 'ES256');
});

test('client_secret_post works too, and the answer is never cached', async () => {
  const r = await tokenRequest(s.url, { grant_type: 'client_credentials', client_id: cc.client_id, client_secret: cc.client_secret });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.headers.get('pragma'), 'no-cache');
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.scope, 'timetable reports'); // every registered scope when none is asked for
});

test('the token authenticates on both replicas, introspects, and is refused everywhere once revoked', async () => {
  const config = await discover(s.url, cc.client_id, oidc.ClientSecretPost(cc.client_secret));
  const { access_token: token } = await oidc.clientCredentialsGrant(config);
  const { access_token: other } = await oidc.clientCredentialsGrant(config);
  const own = (url, t) => api(`${url}/api/v1/oidc/clients/${cc.client_id}`, { token: t });

  for (const g of s.gateways) {
    // A client reads its own registration with its token...
    const r = await own(g.url, token);
    assert.equal(r.status, 200, `${g.url}: ${r.text}`);
    assert.equal(r.json.client_id, cc.client_id);
    // ...and is authenticated, but no operator, elsewhere.
    const list = await api(`${g.url}/api/v1/schools`, { token });
    assert.equal(list.status, 403, list.text);
    assert.equal(list.json.error.code, 'identity.forbidden');
  }
  assert.equal((await api(`${s.url}/api/v1/schools`)).status, 401);

  const before = await oidc.tokenIntrospection(config, token);
  assert.equal(before.active, true);
  assert.equal(before.client_id, cc.client_id);
  assert.equal(before.sub, cc.client_id);
  assert.equal(before.scope, 'timetable reports');
  assert.equal(before.token_type, 'Bearer');

  await oidc.tokenRevocation(config, token);

  // Every loop of both replicas hears of it over Redis.
  for (const g of s.gateways) {
    await until(async () => (await own(g.url, token)).status === 401, { what: `${g.url} refusing the revoked token` });
    const r = await own(g.url, token);
    assert.equal(r.json.error.code, 'auth.invalid_token');
    assert.match(r.headers.get('www-authenticate'), /invalid_token/);
  }
  const afterwards = await oidc.tokenIntrospection(config, token);
  assert.equal(afterwards.active, false);
  assert.deepEqual(Object.keys(afterwards), ['active']);
  // The introspection of the second replica asks Redis, too.
  const second = await api(`${s.gateways[1].url}/oidc/introspect`, {
    method: 'POST', raw: form({ token }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(cc.client_id, cc.client_secret) },
  });
  assert.equal(second.status, 200, second.text);
  assert.equal(second.json.active, false);

  // Revocation is per token: the other one still works.
  for (const g of s.gateways) assert.equal((await own(g.url, other)).status, 200);
  assert.equal((await oidc.tokenIntrospection(config, other)).active, true);
  // Revoking again, or a token that is no token, is still a 200 (RFC 7009).
  await oidc.tokenRevocation(config, token);
  await oidc.tokenRevocation(config, 'not-a-token');
});

test('a school client can be registered by its carrier admin', async () => {
  const carrier = await api(`${s.url}/api/v1/carriers`, { method: 'POST', token: op, body: { name: 'Stadt Client' } });
  const school = await api(`${s.url}/api/v1/schools`, {
    method: 'POST', token: op, body: { name: 'Schule Client', kind: 'SCHOOL', carrier_id: carrier.json.id },
  });
  const admin = s.token({ roles: [`carrier_admin:${carrier.json.id}`], sub: '0190b3c4-7d2e-7a11-9f00-0123456789ab' });
  const r = await api(`${s.url}/api/v1/oidc/clients`, {
    method: 'POST', token: admin,
    body: {
      name: 'Schulwebsite', type: 'PUBLIC', school_id: school.json.id,
      redirect_uris: ['https://schule.example.org/callback', 'http://127.0.0.1/cb'],
    },
  });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.client_secret, '');
  assert.deepEqual(r.json.grant_types, ['authorization_code']);
  assert.deepEqual(r.json.scopes, ['openid', 'profile']);
  assert.equal(r.json.school_id, school.json.id);
  assert.equal(r.json.created_by, '0190b3c4-7d2e-7a11-9f00-0123456789ab');
  const got = await api(`${s.url}/api/v1/oidc/clients/${r.json.client_id}`, { token: admin });
  assert.equal(got.status, 200, got.text);
  assert.deepEqual(got.json.redirect_uris, ['https://schule.example.org/callback', 'http://127.0.0.1/cb']);
});

test('without Redis a revocation still reaches every loop of the process', async () => {
  const t = await startSuite({ name: 'oidcnoredis', env: { KREIDE_REDIS_URL: '' } });
  try {
    const opt = t.token({ roles: ['operator'] });
    const c = (await api(`${t.url}/api/v1/oidc/clients`, {
      method: 'POST', token: opt, body: { name: 'Lokal', type: 'CONFIDENTIAL', grant_types: ['client_credentials'] },
    })).json;
    const auth = { authorization: basic(c.client_id, c.client_secret) };
    const token = (await tokenRequest(t.url, { grant_type: 'client_credentials' }, auth)).json.access_token;
    assert.ok(token);
    const own = () => api(`${t.url}/api/v1/oidc/clients/${c.client_id}`, { token });
    // Several requests, so that both of the gateway's loops cache the token.
    for (let i = 0; i < 8; i++) assert.equal((await own()).status, 200);
    const rv = await api(`${t.url}/oidc/revoke`, {
      method: 'POST', raw: form({ token, token_type_hint: 'access_token' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth },
    });
    assert.equal(rv.status, 200, rv.text);
    await until(async () => {
      for (let i = 0; i < 8; i++) if ((await own()).status !== 401) return false;
      return true;
    }, { what: 'every loop refusing the revoked token' });
  } finally {
    await t.stop();
  }
});
