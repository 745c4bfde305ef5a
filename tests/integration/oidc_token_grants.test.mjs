// The token half of the OpenID Connect provider: codes are obtained from
// identity the way the gateway obtains them (StartSession + IssueAuthCode as
// the SERVICE caller "gateway"), then a relying party redeems them at
// /oidc/token. ID tokens are checked with `jose` against the published JWK
// Set (ES256, and RS256 for a client registered so); access tokens work on
// /api/v1 and /oidc/userinfo until a replayed code, a reused refresh token or
// a revocation kills them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createLocalJWKSet, jwtVerify, decodeProtectedHeader, decodeJwt } from 'jose';
import { startSuite, api, until, redisDb } from '../lib/kreide.mjs';

let s;
let op;
let jwks;
const ids = {};
const clients = {};
const PASSWORD = 'ein langer satz zum anmelden';
const FORM = 'application/x-www-form-urlencoded';

const s256 = (v) => createHash('sha256').update(v).digest('base64url');
const newVerifier = () => randomBytes(32).toString('base64url');
const basic = (c) =>
  `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;

function gw(method, body) {
  return s.rpc(`kreide.identity.Identity/${method}`, JSON.stringify(body), { service: 'gateway' });
}
function ok(reply) {
  assert.equal(reply.status, 'OK', JSON.stringify(reply));
  return reply.body;
}
const post = (p, body, token = op) => api(`${s.url}${p}`, { method: 'POST', token, body });

async function person(username, given, family, contexts) {
  const u = await post('/api/v1/users', { username, given_name: given, family_name: family, contexts });
  assert.equal(u.status, 201, u.text);
  const code = await post(`/api/v1/users/${u.json.id}/codes`, { school_id: contexts[0].school_id, purpose: 'ENROLLMENT' });
  assert.equal(code.status, 201, code.text);
  const e = await api(`${s.url}/api/v1/enroll`, { method: 'POST', body: { username, code: code.json.code, password: PASSWORD } });
  assert.equal(e.status, 200, e.text);
  return u.json.id;
}

async function client(body) {
  const r = await post('/api/v1/oidc/clients', body);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// A fresh SSO session of the teacher.
const session = () => ok(gw('StartSession', { username: 'tina.tafel', password: PASSWORD, client_address: '198.51.100.80' }));

// A code for client `c` (consent given), with its PKCE verifier.
function codeFor(c, sess, { scope = 'openid profile school offline_access', nonce = randomBytes(8).toString('hex'), pkce = true } = {}) {
  const verifier = newVerifier();
  const body = {
    session_token: sess.session_token, client_id: c.client_id, redirect_uri: c.redirect_uris[0], scope, nonce, consent_given: true,
  };
  if (pkce) Object.assign(body, { code_challenge: s256(verifier), code_challenge_method: 'S256' });
  const r = ok(gw('IssueAuthCode', body));
  return { code: r.code, verifier, nonce, redirect_uri: c.redirect_uris[0] };
}

// POST /oidc/token as client `c`: Basic for confidential clients, the id
// in the body (method none) for public ones, unless `auth` says otherwise.
function tokenRequest(c, fields, { auth } = {}) {
  const headers = { 'content-type': FORM };
  const body = { ...fields };
  if (auth !== undefined) {
    if (auth) headers.authorization = auth;
  } else if (c.client_secret) {
    headers.authorization = basic(c);
  } else {
    body.client_id = c.client_id;
  }
  return api(`${s.url}/oidc/token`, { method: 'POST', raw: new URLSearchParams(body).toString(), headers });
}

const redeem = (c, code, extra = {}) => tokenRequest(c, {
  grant_type: 'authorization_code', code: code.code, redirect_uri: code.redirect_uri, code_verifier: code.verifier, ...extra,
});
const refresh = (c, refreshToken, extra = {}) => tokenRequest(c, { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra });

function granted(r) {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.headers.get('pragma'), 'no-cache');
  assert.equal(r.json.token_type, 'Bearer');
  assert.ok(r.json.expires_in > 0 && r.json.expires_in <= 600, r.text);
  assert.equal(typeof r.json.access_token, 'string');
  assert.equal(typeof r.json.id_token, 'string');
  return r.json;
}

function refused(r, status, error) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json?.error, error, r.text);
  assert.equal(typeof r.json.error_description, 'string');
  assert.equal(r.json.access_token, undefined);
  assert.equal(r.headers.get('cache-control'), 'no-store');
}

const userinfo = (token) => api(`${s.url}/oidc/userinfo`, { token });
const userinfoPost = (token) => api(`${s.url}/oidc/userinfo`, {
  method: 'POST', raw: new URLSearchParams({ access_token: token }).toString(), headers: { 'content-type': FORM },
});

function invalidToken(r) {
  assert.equal(r.status, 401, r.text);
  assert.match(r.headers.get('www-authenticate'), /^Bearer realm="kreide", error="invalid_token", error_description="[^"]*"$/);
  assert.equal(r.json.error, 'invalid_token');
}

// The claims of the ID token that userinfo repeats.
function personClaims(p) {
  const out = { ...p };
  for (const k of ['iss', 'aud', 'azp', 'exp', 'iat', 'auth_time', 'nonce', 'sid', 'at_hash']) delete out[k];
  return out;
}

before(async () => {
  s = await startSuite({ name: 'oidctokens', env: { KREIDE_REDIS_URL: redisDb(12) } });
  op = s.token({ roles: ['operator'] });
  const a = await post('/api/v1/schools', { name: 'Schule am Hafen', kind: 'SCHOOL', kennung: 'TOK-4711' });
  assert.equal(a.status, 201, a.text);
  ids.school = a.json.id;
  const b = await post('/api/v1/schools', { name: 'Kita Seestern', kind: 'KITA' });
  assert.equal(b.status, 201, b.text);
  ids.kita = b.json.id;
  ids.teacher = await person('tina.tafel', 'Tina', 'Tafel', [
    { school_id: ids.school, role: 'TEACHER' }, { school_id: ids.kita, role: 'PARENT' }]);
  const cls = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLASS', name: '7c', school_year: '2026/27' });
  assert.equal(cls.status, 201, cls.text);
  ids.group = cls.json.id;
  const m = await post(`/api/v1/groups/${ids.group}/members`, { user_id: ids.teacher, role: 'LEADER' });
  assert.equal(m.status, 201, m.text);

  clients.wiki = await client({
    name: 'Schulwiki', type: 'CONFIDENTIAL', redirect_uris: ['https://wiki.example.org/cb'],
    grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'school', 'offline_access'],
  });
  clients.legacy = await client({
    name: 'Altes Portal', type: 'CONFIDENTIAL', redirect_uris: ['https://legacy.example.org/cb'], scopes: ['openid', 'profile'],
    id_token_alg: 'RS256',
  });
  clients.other = await client({
    name: 'Andere App', type: 'CONFIDENTIAL', redirect_uris: ['https://other.example.org/cb'],
    grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'offline_access'],
  });
  clients.app = await client({
    name: 'Schul-App', type: 'PUBLIC', redirect_uris: ['http://127.0.0.1/cb'],
    grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'offline_access'],
  });
  clients.service = await client({ name: 'Berichte', type: 'CONFIDENTIAL', grant_types: ['client_credentials'], scopes: ['reports'] });
  const d = await api(`${s.url}/.well-known/openid-configuration`);
  jwks = createLocalJWKSet((await api(d.json.jwks_uri)).json);
});
after(async () => s && s.stop());

test('authorization_code: an ES256 ID token with nonce, auth_time, sid, azp, profile, school and Schulconnex claims', async () => {
  const sess = session();
  const code = codeFor(clients.wiki, sess);
  const t = granted(await redeem(clients.wiki, code));
  assert.equal(t.scope, 'openid profile school offline_access');
  assert.equal(typeof t.refresh_token, 'string');

  assert.deepEqual(decodeProtectedHeader(t.id_token), { alg: 'ES256', kid: 'test1', typ: 'JWT' });
  const { payload: id } = await jwtVerify(t.id_token, jwks, { issuer: s.url, audience: clients.wiki.client_id, algorithms: ['ES256'] });
  assert.equal(id.sub, ids.teacher);
  assert.equal(id.azp, clients.wiki.client_id);
  assert.equal(id.nonce, code.nonce);
  assert.equal(id.auth_time, Number(sess.auth_time));
  assert.equal(id.sid, sess.session_id);
  assert.equal(id.exp - id.iat, 600);
  assert.ok(Math.abs(id.iat - Date.now() / 1000) < 60);
  // at_hash (OpenID Connect Core 3.1.3.6): left half of SHA-256 of the access token
  assert.equal(id.at_hash, createHash('sha256').update(t.access_token).digest().subarray(0, 16).toString('base64url'));
  assert.equal(id.name, 'Tina Tafel');
  assert.equal(id.given_name, 'Tina');
  assert.equal(id.family_name, 'Tafel');
  assert.equal(id.preferred_username, 'tina.tafel');

  const bySchool = Object.fromEntries(id.schools.map((x) => [x.school_id, x]));
  assert.equal(id.schools.length, 2);
  const hafen = bySchool[ids.school];
  assert.equal(hafen.name, 'Schule am Hafen');
  assert.equal(hafen.kennung, 'TOK-4711');
  assert.deepEqual(hafen.roles, ['teacher']);
  assert.deepEqual(hafen.schulconnex_roles, ['Lehr']);
  assert.deepEqual(hafen.groups, [{ group_id: ids.group, name: '7c', kind: 'class', role: 'leader' }]);
  const kita = bySchool[ids.kita];
  assert.equal(kita.kennung, undefined); // none set: left out
  assert.deepEqual(kita.roles, ['parent']);
  assert.deepEqual(kita.schulconnex_roles, ['SorgBer']);
  assert.deepEqual([...id['urn:schulconnex:de:personenkontext:rolle']].sort(), ['Lehr', 'SorgBer']);
  assert.deepEqual(id['urn:schulconnex:de:personenkontext:organisation:kennung'], ['TOK-4711']);

  // The access token: a person's, for the API.
  assert.deepEqual(decodeProtectedHeader(t.access_token), { alg: 'ES256', kid: 'test1', typ: 'JWT' });
  const { payload: at } = await jwtVerify(t.access_token, jwks, { issuer: s.url, audience: 'kreide', algorithms: ['ES256'] });
  assert.equal(at.sub, ids.teacher);
  assert.equal(at.client_id, clients.wiki.client_id);
  assert.equal(at.scope, t.scope);
  assert.equal(at.sid, sess.session_id);
  assert.match(at.jti, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  assert.equal(at.kind, undefined);
  assert.equal(at.exp - Math.floor(Date.now() / 1000) <= 600, true);
  assert.deepEqual(at.schools.map((x) => [x.school_id, x.roles]).sort(),
    [[ids.school, ['teacher']], [ids.kita, ['parent']]].sort());
});

test('the person access token works on /api/v1 and on userinfo (GET and POST), which repeats the ID token claims', async () => {
  const t = granted(await redeem(clients.wiki, codeFor(clients.wiki, session())));
  const me = await api(`${s.url}/api/v1/users/${ids.teacher}`, { token: t.access_token });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.username, 'tina.tafel');
  // the schools claim makes the caller a teacher of the school
  const dir = await api(`${s.url}/api/v1/schools/${ids.school}/directory?q=tin`, { token: t.access_token });
  assert.equal(dir.status, 200, dir.text);
  assert.ok(dir.json.people.some((p) => p.user_id === ids.teacher), dir.text);

  const id = decodeJwt(t.id_token);
  const g = await userinfo(t.access_token);
  assert.equal(g.status, 200, g.text);
  assert.match(g.headers.get('content-type'), /^application\/json/);
  assert.equal(g.headers.get('access-control-allow-origin'), '*');
  assert.equal(g.headers.get('access-control-allow-credentials'), null);
  assert.equal(g.headers.get('cache-control'), 'no-store');
  assert.deepEqual(g.json, personClaims(id));
  for (const k of ['iss', 'aud', 'nonce', 'exp']) assert.equal(g.json[k], undefined, k);
  const p = await userinfoPost(t.access_token);
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(p.json, g.json);
});

test('userinfo shows only what the scope granted', async () => {
  const t = granted(await redeem(clients.wiki, codeFor(clients.wiki, session(), { scope: 'openid' })));
  assert.equal(t.scope, 'openid');
  assert.equal(t.refresh_token, undefined); // no offline_access
  const g = await userinfo(t.access_token);
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json, { sub: ids.teacher });
  const id = decodeJwt(t.id_token);
  assert.equal(id.name, undefined);
  assert.equal(id.schools, undefined);
  // the access token still carries the schools for the API
  assert.equal(decodeJwt(t.access_token).schools.length, 2);
});

test('a client registered for RS256 gets an RS256 ID token from the RSA key; its access token stays ES256', async () => {
  const t = granted(await redeem(clients.legacy, codeFor(clients.legacy, session(), { scope: 'openid profile' })));
  assert.equal(t.refresh_token, undefined);
  assert.deepEqual(decodeProtectedHeader(t.id_token), { alg: 'RS256', kid: 'test1-rsa', typ: 'JWT' });
  const { payload } = await jwtVerify(t.id_token, jwks, { issuer: s.url, audience: clients.legacy.client_id, algorithms: ['RS256'] });
  assert.equal(payload.sub, ids.teacher);
  assert.equal(payload.preferred_username, 'tina.tafel');
  await assert.rejects(jwtVerify(t.id_token, jwks, { algorithms: ['ES256'] }));
  assert.equal(decodeProtectedHeader(t.access_token).alg, 'ES256');
  assert.equal((await userinfo(t.access_token)).status, 200);
});

test('a replayed code is invalid_grant and the tokens of its first redemption die', async () => {
  const code = codeFor(clients.wiki, session());
  const t = granted(await redeem(clients.wiki, code));
  assert.equal((await userinfo(t.access_token)).status, 200);
  assert.equal((await api(`${s.url}/api/v1/users/${ids.teacher}`, { token: t.access_token })).status, 200);

  refused(await redeem(clients.wiki, code), 400, 'invalid_grant');
  invalidToken(await userinfo(t.access_token));
  invalidToken(await userinfoPost(t.access_token));
  // the API hears of it over the revocation channel
  await until(async () => (await api(`${s.url}/api/v1/users/${ids.teacher}`, { token: t.access_token })).status === 401,
    { what: 'the API refusing the revoked token' });
  refused(await refresh(clients.wiki, t.refresh_token), 400, 'invalid_grant');
});

test('a wrong verifier or redirect_uri is invalid_grant and uses the code up; another client cannot redeem it', async () => {
  const sess = session();
  let code = codeFor(clients.wiki, sess);
  refused(await redeem(clients.wiki, code, { code_verifier: newVerifier() }), 400, 'invalid_grant');
  refused(await redeem(clients.wiki, code), 400, 'invalid_grant');

  code = codeFor(clients.wiki, sess);
  refused(await redeem(clients.wiki, code, { redirect_uri: 'https://wiki.example.org/cb2' }), 400, 'invalid_grant');
  refused(await redeem(clients.wiki, code), 400, 'invalid_grant');

  // a code issued with a challenge needs its verifier
  code = codeFor(clients.wiki, sess);
  refused(await tokenRequest(clients.wiki, { grant_type: 'authorization_code', code: code.code, redirect_uri: code.redirect_uri }),
    400, 'invalid_grant');

  // another client, even with the right redirect URI and verifier
  code = codeFor(clients.wiki, sess);
  refused(await redeem(clients.other, code), 400, 'invalid_grant');

  refused(await redeem(clients.wiki, { ...code, code: randomBytes(32).toString('base64url') }), 400, 'invalid_grant');
  refused(await redeem(clients.wiki, { ...code, code: 'short' }), 400, 'invalid_grant');
  refused(await tokenRequest(clients.wiki, { grant_type: 'authorization_code', redirect_uri: code.redirect_uri }), 400, 'invalid_request');
  refused(await tokenRequest(clients.wiki, { grant_type: 'authorization_code', code: code.code }), 400, 'invalid_request');
  refused(await tokenRequest(clients.wiki, { grant_type: 'refresh_token' }), 400, 'invalid_request');
});

test('refresh tokens rotate; reusing an old one is invalid_grant and kills the whole family', async () => {
  const sess = session();
  const first = granted(await redeem(clients.wiki, codeFor(clients.wiki, sess)));
  const idFirst = decodeJwt(first.id_token);

  const second = granted(await refresh(clients.wiki, first.refresh_token));
  assert.equal(typeof second.refresh_token, 'string');
  assert.notEqual(second.refresh_token, first.refresh_token);
  assert.notEqual(second.access_token, first.access_token);
  assert.equal(second.scope, first.scope);
  const { payload: id2 } = await jwtVerify(second.id_token, jwks, { issuer: s.url, audience: clients.wiki.client_id });
  // OpenID Connect Core 12.2: same iss, sub, aud and azp; auth_time of the sign-in
  assert.equal(id2.sub, idFirst.sub);
  assert.equal(id2.azp, idFirst.azp);
  assert.equal(id2.auth_time, Number(sess.auth_time));
  assert.equal(id2.sid, sess.session_id);
  assert.equal(id2.nonce, undefined);
  assert.notEqual(decodeJwt(second.access_token).jti, decodeJwt(first.access_token).jti);
  assert.equal((await userinfo(second.access_token)).status, 200);

  // narrowing the scope (RFC 6749 section 6)
  const third = granted(await refresh(clients.wiki, second.refresh_token, { scope: 'openid profile offline_access' }));
  assert.equal(third.scope, 'openid profile offline_access');
  const info = await userinfo(third.access_token);
  assert.equal(info.status, 200, info.text);
  assert.equal(info.json.preferred_username, 'tina.tafel');
  assert.equal(info.json.schools, undefined);

  // another client cannot use the family's token
  refused(await refresh(clients.other, third.refresh_token), 400, 'invalid_grant');

  // the reuse of a rotated token
  refused(await refresh(clients.wiki, first.refresh_token), 400, 'invalid_grant');
  refused(await refresh(clients.wiki, third.refresh_token), 400, 'invalid_grant');
  invalidToken(await userinfo(third.access_token));
  invalidToken(await userinfo(second.access_token));
});

// Refresh token families in Redis (docs/oidc.md, "Refresh tokens").
const redis = (...args) =>
  execFileSync('redis-cli', ['-u', s.redisUrl, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
const sha256hex = (text) => createHash('sha256').update(text).digest('hex');
const familyOf = (refreshToken) => redis('GET', `kreide:rt:${sha256hex(refreshToken)}`);
// How often identity rotated a token of grant `gid` itself (its log line).
const identityRotations = (gid) => readFileSync(s.identity.logPath, 'utf8').split('\n')
  .filter((l) => l.includes('"refresh token rotated"') && l.includes(`"grant_id":"${gid}"`)).length;
const hafenGroups = (idToken) => decodeJwt(idToken).schools.find((x) => x.school_id === ids.school).groups;

test('a plain refresh rotates in Redis at the gateway; a change of the directory, reuse and revocation go to identity', async () => {
  const first = granted(await redeem(clients.wiki, codeFor(clients.wiki, session())));
  const gid = familyOf(first.refresh_token);
  assert.match(gid, /^[0-9a-f-]{36}$/);
  // The family carries the person's claims from the redemption.
  assert.notEqual(redis('HGET', `kreide:rtf:${gid}`, 'cver'), '');

  const second = granted(await refresh(clients.wiki, first.refresh_token));
  assert.equal(identityRotations(gid), 0, 'rotated without identity');
  assert.equal(redis('HGET', `kreide:rtf:${gid}`, 'cur'), sha256hex(second.refresh_token));
  assert.deepEqual(redis('LRANGE', `kreide:rtj:${gid}`, '0', '-1').split('\n'),
    [`${decodeJwt(second.access_token).jti} ${decodeJwt(second.access_token).exp}`]);
  const { payload: id2 } = await jwtVerify(second.id_token, jwks, { issuer: s.url, audience: clients.wiki.client_id });
  const { payload: id1 } = await jwtVerify(first.id_token, jwks, { issuer: s.url, audience: clients.wiki.client_id });
  for (const k of ['sub', 'azp', 'auth_time', 'sid', 'name', 'preferred_username', 'schools',
    'urn:schulconnex:de:personenkontext:rolle', 'urn:schulconnex:de:personenkontext:organisation:kennung']) {
    assert.deepEqual(id2[k], id1[k], k);
  }
  assert.equal(id2.nonce, undefined);
  assert.equal(id2.at_hash, createHash('sha256').update(second.access_token).digest().subarray(0, 16).toString('base64url'));
  assert.deepEqual(decodeJwt(second.access_token).schools, decodeJwt(first.access_token).schools);
  assert.equal((await userinfo(second.access_token)).status, 200);

  // The teacher leaves class 7c: the carried claims are stale, identity
  // reads them again, and the next refresh is plain again.
  const gone = await api(`${s.url}/api/v1/groups/${ids.group}/members/${ids.teacher}`, { method: 'DELETE', token: op });
  assert.equal(gone.status, 200, gone.text);
  try {
    const third = granted(await refresh(clients.wiki, second.refresh_token));
    assert.deepEqual(hafenGroups(third.id_token), []);
    await until(() => identityRotations(gid) === 1, { what: 'identity rotated after the change' });
    const fourth = granted(await refresh(clients.wiki, third.refresh_token));
    assert.deepEqual(hafenGroups(fourth.id_token), []);
    assert.equal(identityRotations(gid), 1, 'plain again');

    // Claims that aged out are read again too.
    redis('HSET', `kreide:rtf:${gid}`, 'cuntil', String(Math.floor(Date.now() / 1000) - 1));
    const fifth = granted(await refresh(clients.wiki, fourth.refresh_token));
    await until(() => identityRotations(gid) === 2, { what: 'identity rotated after the claims aged out' });

    // Reusing a token the gateway rotated revokes the whole family.
    refused(await refresh(clients.wiki, second.refresh_token), 400, 'invalid_grant');
    refused(await refresh(clients.wiki, fifth.refresh_token), 400, 'invalid_grant');
    for (const t of [second, third, fourth, fifth]) invalidToken(await userinfo(t.access_token));
    assert.equal(redis('HGET', `kreide:rtf:${gid}`, 'revoked'), 'refresh_reused');
  } finally {
    const back = await post(`/api/v1/groups/${ids.group}/members`, { user_id: ids.teacher, role: 'LEADER' });
    assert.equal(back.status, 201, back.text);
  }
});

test('a family written by another Redis process or revoked is never rotated at the gateway', async () => {
  const a = granted(await redeem(clients.wiki, codeFor(clients.wiki, session())));
  redis('HSET', `kreide:rtf:${familyOf(a.refresh_token)}`, 'epoch', '0123456789abcdef0123456789abcdef01234567');
  refused(await refresh(clients.wiki, a.refresh_token), 400, 'invalid_grant');
  const b = granted(await redeem(clients.wiki, codeFor(clients.wiki, session())));
  const revoke = await api(`${s.url}/oidc/revoke`, {
    method: 'POST', raw: new URLSearchParams({ token: b.refresh_token }).toString(),
    headers: { 'content-type': FORM, authorization: basic(clients.wiki) },
  });
  assert.equal(revoke.status, 200, revoke.text);
  refused(await refresh(clients.wiki, b.refresh_token), 400, 'invalid_grant');
  invalidToken(await userinfo(b.access_token));
});

test('revoking a refresh token (RFC 7009) ends it and its access tokens; another client\'s revocation changes nothing', async () => {
  const t = granted(await redeem(clients.wiki, codeFor(clients.wiki, session())));
  const revoke = (c, token) => api(`${s.url}/oidc/revoke`, {
    method: 'POST', raw: new URLSearchParams({ token, token_type_hint: 'refresh_token' }).toString(),
    headers: { 'content-type': FORM, authorization: basic(c) },
  });
  let r = await revoke(clients.other, t.refresh_token);
  assert.equal(r.status, 200, r.text);
  assert.equal((await userinfo(t.access_token)).status, 200);
  r = await revoke(clients.wiki, 'not-a-token-of-ours');
  assert.equal(r.status, 200, r.text);

  r = await revoke(clients.wiki, t.refresh_token);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, {});
  refused(await refresh(clients.wiki, t.refresh_token), 400, 'invalid_grant');
  invalidToken(await userinfo(t.access_token));
  // a second revocation is as quiet as the first
  assert.equal((await revoke(clients.wiki, t.refresh_token)).status, 200);
  // introspection does not describe refresh tokens
  const i = await api(`${s.url}/oidc/introspect`, {
    method: 'POST', raw: new URLSearchParams({ token: t.refresh_token }).toString(),
    headers: { 'content-type': FORM, authorization: basic(clients.wiki) },
  });
  assert.deepEqual(i.json, { active: false });
});

test('a public client redeems with PKCE and authentication method none, and refreshes the same way', async () => {
  const sess = session();
  let code = codeFor(clients.app, sess, { scope: 'openid profile offline_access' });
  const t = granted(await redeem(clients.app, code));
  assert.equal(typeof t.refresh_token, 'string');
  const { payload } = await jwtVerify(t.id_token, jwks, { issuer: s.url, audience: clients.app.client_id });
  assert.equal(payload.azp, clients.app.client_id);
  const r = granted(await refresh(clients.app, t.refresh_token));
  assert.notEqual(r.refresh_token, t.refresh_token);

  // a public client without its verifier, or with a made-up secret
  code = codeFor(clients.app, sess, { scope: 'openid' });
  refused(await tokenRequest(clients.app, { grant_type: 'authorization_code', code: code.code, redirect_uri: code.redirect_uri }),
    400, 'invalid_grant');
  code = codeFor(clients.app, sess, { scope: 'openid' });
  refused(await redeem(clients.app, code, { client_secret: 'guess' }), 401, 'invalid_client');
  // ... which did not use the code up
  granted(await redeem(clients.app, code));
  // a confidential client cannot leave its secret out
  refused(await tokenRequest(clients.wiki, { grant_type: 'authorization_code', code: 'x', redirect_uri: 'https://wiki.example.org/cb',
    client_id: clients.wiki.client_id }, { auth: null }), 401, 'invalid_client');
});

test('userinfo refuses missing, bad, revoked and non-person tokens with RFC 6750 challenges', async () => {
  let r = await api(`${s.url}/oidc/userinfo`);
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="kreide"');
  r = await api(`${s.url}/oidc/userinfo`, { headers: { authorization: 'Basic eDp5' } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="kreide"');
  invalidToken(await userinfo('not.a.token'));
  invalidToken(await userinfoPost('x'.repeat(9000)));

  const t = granted(await redeem(clients.wiki, codeFor(clients.wiki, session())));
  const [h, p] = t.access_token.split('.');
  const forged = JSON.parse(Buffer.from(p, 'base64url'));
  forged.scope = 'openid profile school';
  forged.sub = '01890000-0000-7000-8000-000000000099';
  invalidToken(await userinfo(`${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${t.access_token.split('.')[2]}`));

  // valid tokens that speak for no person, or were not granted openid
  const cc = await tokenRequest(clients.service, { grant_type: 'client_credentials' });
  assert.equal(cc.status, 200, cc.text);
  for (const token of [cc.json.access_token, op, s.token({ sub: ids.teacher, schools: [`${ids.school}:teacher`] })]) {
    r = await userinfo(token);
    assert.equal(r.status, 403, r.text);
    assert.match(r.headers.get('www-authenticate'), /error="insufficient_scope"/);
    assert.match(r.headers.get('www-authenticate'), /scope="openid"/);
    assert.equal(r.json.error, 'insufficient_scope');
  }

  // one token in two places, or a malformed form
  r = await api(`${s.url}/oidc/userinfo`, {
    method: 'POST', token: t.access_token, raw: new URLSearchParams({ access_token: t.access_token }).toString(),
    headers: { 'content-type': FORM },
  });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error, 'invalid_request');
  r = await api(`${s.url}/oidc/userinfo`, { method: 'POST', raw: 'access_token=a&access_token=b', headers: { 'content-type': FORM } });
  assert.equal(r.status, 400, r.text);

  r = await api(`${s.url}/oidc/userinfo`, { method: 'DELETE', token: t.access_token });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET, POST');

  // a browser relying party's preflight
  const pre = await fetch(`${s.url}/oidc/userinfo`, {
    method: 'OPTIONS', headers: { origin: 'https://rp.example.org', 'access-control-request-method': 'GET',
      'access-control-request-headers': 'authorization' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-headers'), /Authorization/);
  assert.match(pre.headers.get('access-control-allow-methods'), /GET/);
  assert.equal(pre.headers.get('access-control-allow-credentials'), null);

  // revoked at /oidc/revoke: userinfo reads the revocation from Redis
  const rv = await api(`${s.url}/oidc/revoke`, {
    method: 'POST', raw: new URLSearchParams({ token: t.access_token }).toString(),
    headers: { 'content-type': FORM, authorization: basic(clients.wiki) },
  });
  assert.equal(rv.status, 200, rv.text);
  invalidToken(await userinfo(t.access_token));
});

// Last: restarts the gateway without its RSA key.
test('without an RSA key an RS256 client gets server_error, the code is not used up, and the log says why', async () => {
  const g = s.gateways[0];
  const rsaFile = path.join(s.keysDir, 'test1-rsa.pem');
  const pem = readFileSync(rsaFile);
  const restart = async () => {
    await g.stop();
    g.start();
    await until(async () => (await fetch(`${g.url}/readyz`)).status === 200, { what: 'gateway ready' });
  };
  unlinkSync(rsaFile);
  try {
    await restart();
    const code = codeFor(clients.legacy, session(), { scope: 'openid' });
    refused(await redeem(clients.legacy, code), 500, 'server_error');
    assert.match(readFileSync(g.logPath, 'utf8'), /no private key for.*RS256|RS256.*kreidectl keygen --alg RS256/);
    writeFileSync(rsaFile, pem, { mode: 0o600 });
    await restart();
    const t = granted(await redeem(clients.legacy, code));
    assert.equal(decodeProtectedHeader(t.id_token).alg, 'RS256');
  } finally {
    writeFileSync(rsaFile, pem, { mode: 0o600 });
  }
});
