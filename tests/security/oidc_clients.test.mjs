// OpenID Connect clients under attack: wrong and missing credentials,
// clients using grants they may not, two authentication methods at once,
// malformed and repeated form parameters, people without the right
// registering clients, and one client's tokens in another's hands. Each is
// refused with the error RFC 6749, 7009 or 7662 names, and nothing is
// issued or changed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api } from '../lib/kreide.mjs';

let s;
let op;
let conf; // confidential, client_credentials
let codeOnly; // confidential, authorization_code only
let pub; // public
let school;

const FORM = 'application/x-www-form-urlencoded';
const basic = (id, secret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const post = (path, raw, headers = {}) =>
  api(`${s.url}${path}`, { method: 'POST', raw, headers: { 'content-type': FORM, ...headers } });
const form = (fields) => new URLSearchParams(fields).toString();

async function register(token, body) {
  return api(`${s.url}/api/v1/oidc/clients`, { method: 'POST', token, body });
}

// An OAuth error: the status, the code, no token, never cached.
function refused(r, status, error) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json?.error, error, r.text);
  assert.equal(r.json.access_token, undefined);
  assert.equal(typeof r.json.error_description, 'string');
  assert.equal(r.headers.get('cache-control'), 'no-store');
}

async function tokenFor(c) {
  const r = await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: basic(c.client_id, c.client_secret) });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

before(async () => {
  s = await startSuite({ name: 'oidcclientsec' });
  op = s.token({ roles: ['operator'] });
  conf = (await register(op, { name: 'Integrator', type: 'CONFIDENTIAL', grant_types: ['client_credentials'], scopes: ['reports'] })).json;
  codeOnly = (await register(op, { name: 'Moodle', type: 'CONFIDENTIAL', redirect_uris: ['https://moodle.example.org/cb'] })).json;
  pub = (await register(op, { name: 'App', type: 'PUBLIC', redirect_uris: ['http://127.0.0.1/cb'] })).json;
  assert.ok(conf.client_secret && codeOnly.client_secret && pub.client_id);
  const r = await api(`${s.url}/api/v1/schools`, { method: 'POST', token: op, body: { name: 'Schule S', kind: 'SCHOOL' } });
  school = r.json.id;
});

after(async () => {
  await s?.stop();
});

test('a wrong secret is invalid_client: 401 with a Basic challenge after Basic, without one after post', async () => {
  const b = await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: basic(conf.client_id, `${conf.client_secret}x`) });
  refused(b, 401, 'invalid_client');
  assert.match(b.headers.get('www-authenticate'), /^Basic /);
  const p = await post('/oidc/token', form({ grant_type: 'client_credentials', client_id: conf.client_id, client_secret: 'wrong' }));
  refused(p, 401, 'invalid_client');
  assert.equal(p.headers.get('www-authenticate'), null);
  // Another client's secret, and no secret at all, are just as wrong.
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: basic(conf.client_id, codeOnly.client_secret) }),
    401, 'invalid_client');
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials', client_id: conf.client_id })), 401, 'invalid_client');
});

test('an unknown client, or none, is invalid_client', async () => {
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: basic('AAAAAAAAAAAAAAAAAAAAAA', 'x') }),
    401, 'invalid_client');
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials', client_id: "x' OR '1'='1", client_secret: 'x' })),
    401, 'invalid_client');
  const none = await post('/oidc/token', form({ grant_type: 'client_credentials' }));
  refused(none, 401, 'invalid_client');
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: 'Basic !!!' }), 401, 'invalid_client');
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: `Bearer ${op}` }), 401, 'invalid_client');
});

test('a public client cannot use client_credentials, nor register for it', async () => {
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials', client_id: pub.client_id })), 400, 'unauthorized_client');
  // A secret for a public client is a failed authentication.
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: basic(pub.client_id, 'guess') }),
    401, 'invalid_client');
  const r = await register(op, { name: 'Bad', type: 'PUBLIC', grant_types: ['client_credentials'] });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error.code, 'identity.invalid_grant_type');
});

test('a confidential client registered without client_credentials is unauthorized_client', async () => {
  refused(await post('/oidc/token', form({ grant_type: 'client_credentials' }), { authorization: basic(codeOnly.client_id, codeOnly.client_secret) }),
    400, 'unauthorized_client');
});

test('Basic and client_secret in the body together are invalid_request', async () => {
  const r = await post('/oidc/token', form({ grant_type: 'client_credentials', client_secret: conf.client_secret }),
    { authorization: basic(conf.client_id, conf.client_secret) });
  refused(r, 400, 'invalid_request');
  const other = await post('/oidc/token', form({ grant_type: 'client_credentials', client_id: codeOnly.client_id }),
    { authorization: basic(conf.client_id, conf.client_secret) });
  refused(other, 400, 'invalid_request');
});

test('unknown grant types are unsupported, a missing one is invalid_request, an unregistered one unauthorized_client', async () => {
  const auth = { authorization: basic(conf.client_id, conf.client_secret) };
  for (const g of ['password', 'implicit', 'urn:ietf:params:oauth:grant-type:device_code', 'AUTHORIZATION_CODE']) {
    refused(await post('/oidc/token', form({ grant_type: g, code: 'x' }), auth), 400, 'unsupported_grant_type');
  }
  refused(await post('/oidc/token', form({ scope: 'reports' }), auth), 400, 'invalid_request');
  // conf is registered for client_credentials only
  refused(await post('/oidc/token', form({ grant_type: 'authorization_code', code: 'x', redirect_uri: 'https://a.example.org/cb' }), auth),
    400, 'unauthorized_client');
  refused(await post('/oidc/token', form({ grant_type: 'refresh_token', refresh_token: 'x' }), auth), 400, 'unauthorized_client');
  // codeOnly has no refresh_token grant
  refused(await post('/oidc/token', form({ grant_type: 'refresh_token', refresh_token: 'x' }),
    { authorization: basic(codeOnly.client_id, codeOnly.client_secret) }), 400, 'unauthorized_client');
});

test('scopes beyond the registration, or about a person, are invalid_scope', async () => {
  const auth = { authorization: basic(conf.client_id, conf.client_secret) };
  for (const scope of ['admin', 'reports admin', 'openid', 'offline_access', 'reports  reports', 'caf\u00e9']) {
    refused(await post('/oidc/token', form({ grant_type: 'client_credentials', scope }), auth), 400, 'invalid_scope');
  }
  const ok = await post('/oidc/token', form({ grant_type: 'client_credentials', scope: 'reports reports' }), auth);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.scope, 'reports');
});

test('malformed and repeated form parameters are invalid_request', async () => {
  const auth = { authorization: basic(conf.client_id, conf.client_secret) };
  const bodies = [
    'grant_type=client_credentials&grant_type=client_credentials',
    'grant_type=client_credentials&scope=reports&scope=reports',
    'grant_type=client_credentials&x=%zz',
    'grant_type=client_credentials&x=%ff%fe',
    'grant_type=client_credentials&x=%00',
    'grant_type=client_credentials&=x',
    `grant_type=client_credentials&pad=${'a'.repeat(20000)}`,
  ];
  for (const raw of bodies) refused(await post('/oidc/token', raw, auth), 400, 'invalid_request');
  const ids = `grant_type=client_credentials&client_id=${conf.client_id}&client_id=${conf.client_id}&client_secret=${conf.client_secret}`;
  refused(await post('/oidc/token', ids), 400, 'invalid_request');
  // JSON is not the token endpoint's format.
  const json = await api(`${s.url}/oidc/token`, {
    method: 'POST', body: { grant_type: 'client_credentials' }, headers: { authorization: basic(conf.client_id, conf.client_secret) },
  });
  refused(json, 400, 'invalid_request');
  const get = await api(`${s.url}/oidc/token?grant_type=client_credentials`, { headers: auth });
  refused(get, 405, 'invalid_request');
  assert.equal(get.headers.get('allow'), 'POST');
  // Introspection and revocation need their token parameter.
  refused(await post('/oidc/introspect', '', auth), 400, 'invalid_request');
  refused(await post('/oidc/revoke', 'token_type_hint=access_token', auth), 400, 'invalid_request');
  refused(await post('/oidc/revoke', 'token=a&token=b', auth), 400, 'invalid_request');
});

test('only operators and carrier admins register clients; nothing is stored otherwise', async () => {
  const pupil = s.token({ sub: '0190b3c4-7d2e-7a11-9f00-00000000000a', schools: [`${school}:pupil`] });
  const teacher = s.token({ sub: '0190b3c4-7d2e-7a11-9f00-00000000000b', schools: [`${school}:teacher`] });
  const admin = s.token({ sub: '0190b3c4-7d2e-7a11-9f00-00000000000c', schools: [`${school}:school_admin`] });
  const otherCarrier = s.token({ roles: ['carrier_admin:0190b3c4-7d2e-7a11-9f00-0000000000cc'] });
  const body = { name: 'Sneaky', type: 'CONFIDENTIAL', grant_types: ['client_credentials'] };
  for (const t of [pupil, teacher, admin, otherCarrier]) {
    for (const b of [body, { ...body, school_id: school }]) {
      const r = await register(t, b);
      assert.equal(r.status, 403, r.text);
      assert.equal(r.json.error.code, 'identity.forbidden');
      assert.equal(r.json.client_secret, undefined);
    }
  }
  const service = await tokenFor(conf);
  assert.equal((await register(service, body)).status, 403);
  assert.equal((await register(undefined, body)).status, 401);
  const psql = (await import('node:child_process')).execFileSync;
  const n = psql('psql', [s.dbUrl, '-qAtc', "SELECT count(*) FROM identity.oidc_clients WHERE name = 'Sneaky'"]).toString().trim();
  assert.equal(n, '0');
});

test('registrations with bad redirect URIs, grants or scopes are refused', async () => {
  const bad = [
    [{ redirect_uris: ['http://moodle.example.org/cb'] }, 'identity.invalid_redirect_uri'],
    [{ redirect_uris: ['https://moodle.example.org/cb#frag'] }, 'identity.invalid_redirect_uri'],
    [{ redirect_uris: ['https://user@moodle.example.org/cb'] }, 'identity.invalid_redirect_uri'],
    [{ redirect_uris: ['https://a.example.org/cb', 'https://a.example.org/cb'] }, 'identity.invalid_redirect_uri'],
    [{ redirect_uris: [] }, 'identity.invalid_redirect_uri'],
    [{ redirect_uris: ['https://a.example.org/cb'], grant_types: ['implicit'] }, 'identity.invalid_grant_type'],
    [{ redirect_uris: ['https://a.example.org/cb'], grant_types: ['authorization_code', 'authorization_code'] }, 'identity.invalid_grant_type'],
    [{ grant_types: ['refresh_token'] }, 'identity.invalid_grant_type'],
    [{ redirect_uris: ['https://a.example.org/cb'], scopes: ['two words'] }, 'identity.invalid_scope'],
    [{ redirect_uris: ['https://a.example.org/cb'], id_token_alg: 'none' }, 'identity.invalid_alg'],
    [{ redirect_uris: ['https://a.example.org/cb'], id_token_alg: 'HS256' }, 'identity.invalid_alg'],
    [{ redirect_uris: ['https://a.example.org/cb'], type: 'CLIENT_TYPE_UNSPECIFIED' }, 'identity.invalid_client_type'],
    [{ redirect_uris: ['https://a.example.org/cb'], name: '' }, 'identity.invalid_name'],
  ];
  for (const [extra, code] of bad) {
    const r = await register(op, { name: 'Bad', type: 'CONFIDENTIAL', ...extra });
    assert.equal(r.status, 400, `${JSON.stringify(extra)}: ${r.text}`);
    assert.equal(r.json.error.code, code, JSON.stringify(extra));
  }
});

test('one client cannot introspect or revoke another client\'s token', async () => {
  const token = await tokenFor(conf);
  const other = { authorization: basic(codeOnly.client_id, codeOnly.client_secret) };
  const intro = await post('/oidc/introspect', form({ token }), other);
  assert.equal(intro.status, 200, intro.text);
  assert.deepEqual(intro.json, { active: false });
  const rv = await post('/oidc/revoke', form({ token }), other);
  assert.equal(rv.status, 200, rv.text);
  const own = await post('/oidc/introspect', form({ token }), { authorization: basic(conf.client_id, conf.client_secret) });
  assert.equal(own.json.active, true);
  // A public client cannot introspect at all; wrong credentials are refused.
  refused(await post('/oidc/introspect', form({ token, client_id: pub.client_id })), 401, 'invalid_client');
  refused(await post('/oidc/revoke', form({ token }), { authorization: basic(conf.client_id, 'wrong') }), 401, 'invalid_client');
  assert.equal((await api(`${s.url}/api/v1/oidc/clients/${conf.client_id}`, { token })).status, 200);
});

test('tampered or unsigned tokens are inactive', async () => {
  const token = await tokenFor(conf);
  const [h, p, sig] = token.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, scope: 'admin' })).toString('base64url')}.${sig}`;
  const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`;
  const auth = { authorization: basic(conf.client_id, conf.client_secret) };
  for (const t of [forged, none, 'x', `${token}x`]) {
    const r = await post('/oidc/introspect', form({ token: t }), auth);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { active: false });
  }
});

test('a client reads only its own registration; other registrations do not exist for it', async () => {
  const token = await tokenFor(conf);
  const r = await api(`${s.url}/api/v1/oidc/clients/${codeOnly.client_id}`, { token });
  assert.equal(r.status, 404, r.text);
  const pupil = s.token({ sub: '0190b3c4-7d2e-7a11-9f00-00000000000a', schools: [`${school}:pupil`] });
  assert.equal((await api(`${s.url}/api/v1/oidc/clients/${conf.client_id}`, { token: pupil })).status, 404);
  assert.equal((await api(`${s.url}/api/v1/oidc/clients/..%2F..`, { token: op })).status, 404);
});

test('AuthenticateClient answers only the gateway', () => {
  const r = s.rpc('kreide.identity.Identity/AuthenticateClient',
    JSON.stringify({ client_id: conf.client_id, client_secret: conf.client_secret }), { roles: ['operator'] });
  assert.equal(r.status, 'PERMISSION_DENIED');
});
