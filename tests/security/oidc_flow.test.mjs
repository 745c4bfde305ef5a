// The authorization-code flow under attack: unregistered redirect URIs,
// replayed, expired and stolen codes, wrong PKCE verifiers, stolen and
// replayed refresh tokens, forged and tampered tokens (a flipped signature
// byte, a changed claim, `alg: none`, HS256 keyed with the public key), and
// person access tokens from the flow used beyond their rights. Each is
// refused with the error the specifications name, and nothing is issued or
// changed (checked through the API and by counting rows).
//
// The policies themselves (who may issue codes, what a school's people may
// see) are tested with operator-made tokens in credentials.test.mjs and
// tenant_isolation.test.mjs; here the same refusals meet tokens that came
// out of the code flow.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, createPublicKey, randomBytes } from 'node:crypto';
import { startSuite, api, until } from '../lib/kreide.mjs';
import { signIn, request, CookieJar } from '../lib/signin.mjs';

let s;
let op;
const ids = {};
const clients = {};
const jars = {}; // one signed-in browser per person
const PASSWORD = 'ein sehr geheimes passwort';
const REDIRECT = 'http://127.0.0.1:8766/cb';
const OTHER_REDIRECT = 'http://127.0.0.1:8766/other';
const BYE = 'http://127.0.0.1:8766/bye';
const FLOW_SCOPE = 'openid profile school offline_access';

const FORM = 'application/x-www-form-urlencoded';
const basic = (c) =>
  `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;
const sql = (query) => execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();

async function post(suite, path, body, token) {
  const r = await api(`${suite.url}${path}`, { method: 'POST', token, body });
  assert.ok(r.status === 200 || r.status === 201, `${path}: ${r.status} ${r.text}`);
  return r.json;
}

// A person with a password, in `contexts`.
async function person(suite, token, username, contexts) {
  const id = (await post(suite, '/api/v1/users', { username, given_name: 'Vorname', family_name: 'Nachname', contexts }, token)).id;
  const { code } = await post(suite, `/api/v1/users/${id}/codes`, { school_id: contexts[0].school_id, purpose: 'ENROLLMENT' }, token);
  await post(suite, '/api/v1/enroll', { username, code, password: PASSWORD });
  return id;
}

const registerClient = (suite, token, name, extra = {}) => post(suite, '/api/v1/oidc/clients', {
  name, type: 'CONFIDENTIAL', redirect_uris: [REDIRECT, OTHER_REDIRECT], post_logout_redirect_uris: [BYE], first_party: true,
  grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'school', 'offline_access'], ...extra,
}, token);

before(async () => {
  s = await startSuite({ name: 'oidcflowsec' });
  op = s.token({ roles: ['operator'] });
  const p = (path, body) => post(s, path, body, op);
  ids.a = (await p('/api/v1/schools', { name: 'Schule A', kind: 'SCHOOL' })).id;
  ids.b = (await p('/api/v1/schools', { name: 'Schule B', kind: 'SCHOOL' })).id;
  ids.teacher = await person(s, op, 'flow.teacher', [{ school_id: ids.a, role: 'TEACHER' }]);
  ids.pupil = await person(s, op, 'flow.pupil', [{ school_id: ids.a, role: 'PUPIL' }]);
  ids.outsider = await person(s, op, 'flow.outsider', [{ school_id: ids.a, role: 'PUPIL' }]);
  ids.pupilB = await person(s, op, 'flow.pupilb', [{ school_id: ids.b, role: 'PUPIL' }]);
  const cls = (await p(`/api/v1/schools/${ids.a}/groups`, { kind: 'CLASS', name: '5a' })).id;
  await p(`/api/v1/groups/${cls}/members`, { user_id: ids.teacher, role: 'LEADER' });
  await p(`/api/v1/groups/${cls}/members`, { user_id: ids.pupil, role: 'MEMBER' });
  clients.a = await registerClient(s, op, 'Client A');
  clients.b = await registerClient(s, op, 'Client B');
  for (const u of ['teacher', 'pupil']) jars[u] = new CookieJar();
});

after(async () => {
  await s?.stop();
});

const pkce = () => {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
};

function authorizeUrl(suite, client, { redirectUri = REDIRECT, scope = FLOW_SCOPE, challenge, extra = {} } = {}) {
  const u = new URL('/oidc/authorize', suite.url);
  const params = {
    response_type: 'code', client_id: client.client_id, redirect_uri: redirectUri, scope,
    state: randomBytes(8).toString('hex'), nonce: randomBytes(8).toString('hex'), ...extra,
  };
  if (challenge) Object.assign(params, { code_challenge: challenge, code_challenge_method: 'S256' });
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u;
}

// A fresh code for `who` (signed in once, silently afterwards) and its PKCE pair.
async function code({ suite = s, who = 'teacher', client = clients.a, redirectUri = REDIRECT, scope, jar = jars[who] } = {}) {
  const p = pkce();
  const { redirect } = await signIn(authorizeUrl(suite, client, { redirectUri, scope, challenge: p.challenge }), {
    username: `flow.${who}`, password: PASSWORD, redirectUri, jar,
  });
  const c = redirect.searchParams.get('code');
  assert.ok(c, `no code: ${redirect}`);
  return { code: c, verifier: p.verifier, redirectUri };
}

function token(fields, client = clients.a, suite = s) {
  return api(`${suite.url}/oidc/token`, {
    method: 'POST', raw: new URLSearchParams(fields).toString(), headers: { 'content-type': FORM, authorization: basic(client) },
  });
}
const redeem = (c, client = clients.a, over = {}) => token({
  grant_type: 'authorization_code', code: c.code, redirect_uri: c.redirectUri, code_verifier: c.verifier, ...over,
}, client);
const refresh = (rt, client = clients.a) => token({ grant_type: 'refresh_token', refresh_token: rt }, client);

async function tokens(opts) {
  const r = await redeem(await code(opts));
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// An OAuth error answer from the token endpoint, with nothing issued.
function refused(r, error, description) {
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json?.error, error, r.text);
  assert.equal(r.json.access_token, undefined);
  assert.equal(r.json.id_token, undefined);
  assert.equal(r.json.refresh_token, undefined);
  if (description) assert.match(r.json.error_description, description);
  assert.equal(r.headers.get('cache-control'), 'no-store');
}

const userinfo = (t) => api(`${s.url}/oidc/userinfo`, { token: t });
const directory = (t, school = ids.a) => api(`${s.url}/api/v1/schools/${school}/directory`, { token: t });

// The token works for userinfo and the API, or neither.
async function works(t) {
  const u = await userinfo(t);
  const d = await directory(t);
  assert.equal(u.status === 200, d.status === 200, `userinfo ${u.status}, API ${d.status}`);
  return u.status === 200;
}
// Revocations reach every gateway loop over Redis, a moment after identity
// recorded them: wait for the refusal, then check it everywhere.
async function revoked(t) {
  await until(async () => (await userinfo(t)).status === 401, { what: 'the revocation to arrive' });
  await dead(t);
}
async function dead(t) {
  const u = await userinfo(t);
  assert.equal(u.status, 401, u.text);
  assert.match(u.headers.get('www-authenticate') || '', /invalid_token/);
  const d = await directory(t);
  assert.equal(d.status, 401, d.text);
  assert.equal(d.json.error.code, 'auth.invalid_token');
}

// The flow's tables (services/identity/migrations/005_oidc_flow.sql), each
// as a digest of all its rows: a refusal changes none of them.
const FLOW_TABLES = ['oidc_codes', 'oidc_grants', 'oidc_access_tokens', 'oidc_consents'];
// What Redis holds of a refresh token's family (docs/oidc.md, "Refresh
// tokens"): the token's key, the family's hash and its access tokens.
const redis = (...args) =>
  execFileSync('redis-cli', ['-u', s.redisUrl, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
function familyOf(rt) {
  const gid = redis('GET', `kreide:rt:${createHash('sha256').update(rt).digest('hex')}`);
  assert.notEqual(gid, '', 'Redis knows the refresh token');
  return { gid, family: redis('HGETALL', `kreide:rtf:${gid}`), jtis: redis('LRANGE', `kreide:rtj:${gid}`, '0', '-1') };
}
function flowRows({ except = [] } = {}) {
  return Object.fromEntries(FLOW_TABLES.filter((t) => !except.includes(t)).map((t) =>
    [t, sql(`SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM identity.${t} t`)]));
}
// A code's row: 'unused', 'used' (refused, no grant) or 'redeemed'.
const codeState = (c) => sql(`SELECT CASE WHEN used_at IS NULL THEN 'unused' WHEN grant_id IS NULL THEN 'used' ELSE 'redeemed' END `
  + `FROM identity.oidc_codes WHERE code_hash = sha256('${c.code}'::bytea)`);

test('an unregistered redirect_uri gets an error page, never a redirect, and no code', async () => {
  await code(); // signed in: a code would be issued if the URI were accepted
  const before = flowRows();
  const bad = [
    'https://attacker.example/cb', `${REDIRECT}/x`, `${REDIRECT}?x=1`, REDIRECT.toUpperCase(), 'http://127.0.0.1:8766/c',
    `${REDIRECT}#f`, 'http://localhost:8766/cb', 'http://127.0.0.1:8766/cb/../cb', 'javascript:alert(1)',
  ];
  for (const redirectUri of bad) {
    for (const client of [clients.a, { client_id: 'AAAAAAAAAAAAAAAAAAAAAA' }]) {
      const url = authorizeUrl(s, client, { redirectUri, challenge: pkce().challenge });
      const r = await request(jars.teacher, url.href);
      assert.equal(r.status, 400, `${redirectUri}: ${r.status}`);
      assert.equal(r.location, null, `${redirectUri} redirected to ${r.location}`);
      assert.match(r.headers.get('content-type'), /^text\/html/);
      assert.ok(!r.text.includes('code='), redirectUri);
    }
  }
  assert.deepEqual(flowRows(), before, 'a refused request wrote a code');
  // A registered URI of the same client is fine (the control).
  assert.ok((await code({ redirectUri: OTHER_REDIRECT })).code);
});

test('a reused code is invalid_grant and kills the tokens issued from it', async () => {
  const c = await code();
  const first = await redeem(c);
  assert.equal(first.status, 200, first.text);
  const { access_token: at, refresh_token: rt } = first.json;
  assert.ok(await works(at));
  refused(await redeem(c), 'invalid_grant');
  await revoked(at);
  refused(await refresh(rt), 'invalid_grant');
});

test('a wrong PKCE verifier is invalid_grant, and the code is gone after it', async () => {
  const c = await code();
  const before = flowRows({ except: ['oidc_codes'] });
  refused(await redeem(c, clients.a, { code_verifier: pkce().verifier }), 'invalid_grant', /verifier/);
  assert.equal(codeState(c), 'used');
  const nearly = c.verifier.slice(0, -1) + (c.verifier.endsWith('A') ? 'B' : 'A');
  refused(await redeem(c, clients.a, { code_verifier: nearly }), 'invalid_grant');
  refused(await redeem(c), 'invalid_grant'); // single use, even after a failure
  assert.deepEqual(flowRows({ except: ['oidc_codes'] }), before, 'no grant, no tokens');
  assert.equal(codeState(c), 'used');
  // Without any verifier, for a code that has a challenge.
  const d = await code();
  refused(await token({ grant_type: 'authorization_code', code: d.code, redirect_uri: d.redirectUri }), 'invalid_grant');
});

test('a code redeemed with another redirect_uri than it was issued for is invalid_grant', async () => {
  const c = await code();
  const before = flowRows({ except: ['oidc_codes'] });
  refused(await redeem(c, clients.a, { redirect_uri: OTHER_REDIRECT }), 'invalid_grant', /redirect_uri/);
  refused(await redeem(c), 'invalid_grant');
  assert.deepEqual(flowRows({ except: ['oidc_codes'] }), before);
  assert.equal(codeState(c), 'used');
});

test('a code presented by another client is invalid_grant and stays the rightful client\'s', async () => {
  const c = await code();
  const before = flowRows();
  refused(await redeem(c, clients.b), 'invalid_grant');
  assert.deepEqual(flowRows(), before);
  assert.equal(codeState(c), 'unused');
  const own = await redeem(c);
  assert.equal(own.status, 200, own.text);
  assert.ok(await works(own.json.access_token));
});

test('a refresh token presented by another client is invalid_grant and stays valid for its own', async () => {
  const t = await tokens();
  const before = flowRows();
  const family = familyOf(t.refresh_token);
  refused(await refresh(t.refresh_token, clients.b), 'invalid_grant');
  assert.deepEqual(flowRows(), before);
  assert.deepEqual(familyOf(t.refresh_token), family);
  assert.ok(await works(t.access_token), 'the family is not revoked by a stranger');
  const own = await refresh(t.refresh_token);
  assert.equal(own.status, 200, own.text);
});

test('a reused refresh token revokes the whole family', async () => {
  const t = await tokens();
  const r2 = await refresh(t.refresh_token);
  assert.equal(r2.status, 200, r2.text);
  assert.ok(await works(r2.json.access_token));
  refused(await refresh(t.refresh_token), 'invalid_grant');
  // Every token of the family is dead: the old and the new access token,
  // and the newest refresh token.
  await revoked(t.access_token);
  await revoked(r2.json.access_token);
  refused(await refresh(r2.json.refresh_token), 'invalid_grant');
  // Another family of the same person is untouched.
  assert.ok(await works((await tokens()).access_token));
});

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const parts = (t) => {
  const [h, p, sig] = t.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')), h, p, sig };
};

test('tampered access and ID tokens are refused by userinfo and the API', async () => {
  const t = await tokens();
  assert.ok(await works(t.access_token));
  const { h, p, sig, payload } = parts(t.access_token);
  // One flipped bit in the signature.
  const raw = Buffer.from(sig, 'base64url');
  raw[10] ^= 0x01;
  await dead(`${h}.${p}.${raw.toString('base64url')}`);
  // A changed claim under the old signature: another person, more schools, a later expiry.
  await dead(`${h}.${b64({ ...payload, sub: ids.pupilB })}.${sig}`);
  await dead(`${h}.${b64({ ...payload, schools: [...payload.schools, { school_id: ids.b, roles: ['school_admin'] }] })}.${sig}`);
  await dead(`${h}.${b64({ ...payload, exp: payload.exp + 3600 })}.${sig}`);
  // An ID token is no access token (its audience is the client), tampered or not.
  await dead(t.id_token);
  const id = parts(t.id_token);
  await dead(`${id.h}.${b64({ ...id.payload, aud: 'kreide' })}.${id.sig}`);
  // The untouched token still works.
  assert.ok(await works(t.access_token));
});

test('a tampered or unsigned ID token as id_token_hint ends no session and redirects nowhere', async () => {
  const jar = new CookieJar();
  const t = await tokens({ jar });
  const id = parts(t.id_token);
  const raw = Buffer.from(id.sig, 'base64url');
  raw[5] ^= 0x80;
  const bad = [
    `${id.h}.${id.p}.${raw.toString('base64url')}`,
    `${id.h}.${b64({ ...id.payload, sub: ids.pupil })}.${id.sig}`,
    `${b64({ ...id.header, alg: 'none' })}.${id.p}.`,
    t.access_token, // an access token is no ID token
  ];
  const logout = (hint) => {
    const u = new URL('/oidc/logout', s.url);
    u.searchParams.set('id_token_hint', hint);
    u.searchParams.set('post_logout_redirect_uri', BYE);
    return request(jar, u.href);
  };
  for (const hint of bad) {
    const r = await logout(hint);
    assert.equal(r.status, 400, `${r.status} ${r.location}`);
    assert.equal(r.location, null);
    assert.match(r.headers.get('content-type'), /^text\/html/);
  }
  // Still signed in: a silent authorization gets a code.
  const silent = await signIn(authorizeUrl(s, clients.a, { challenge: pkce().challenge, extra: { prompt: 'none' } }),
    { redirectUri: REDIRECT, jar });
  assert.ok(silent.redirect.searchParams.get('code'), String(silent.redirect));
  // The untouched hint (the control) ends the session.
  const ok = await logout(t.id_token);
  assert.equal(ok.status, 303, ok.text.slice(0, 300));
  assert.equal(new URL(ok.location).origin + new URL(ok.location).pathname, BYE);
});

test('alg none and HS256 keyed with the public key are refused by userinfo and the API', async () => {
  const t = await tokens();
  const { header, payload } = parts(t.access_token);
  const none = `${b64({ ...header, alg: 'none' })}.${b64(payload)}.`;
  await dead(none);
  await dead(`${b64({ typ: 'JWT', alg: 'none' })}.${b64(payload)}.`);
  // Every public key as an attacker finds it in the JWK Set (the suite has
  // an EC and an RSA key), as PEM and as the JWK itself, for an HMAC secret.
  const jwks = (await api(`${s.url}/.well-known/jwks.json`)).json;
  assert.deepEqual(jwks.keys.map((k) => k.kty).sort(), ['EC', 'RSA']);
  for (const jwk of jwks.keys) {
    const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    for (const secret of [pem, pem.trim(), JSON.stringify(jwk)]) {
      const head = b64({ ...header, alg: 'HS256', kid: jwk.kid });
      const body = b64(payload);
      const mac = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
      await dead(`${head}.${body}.${mac}`);
    }
  }
  assert.ok(await works(t.access_token));
});

test('a person access token from the flow reaches only its own school', async () => {
  const t = await tokens();
  const claims = parts(t.access_token).payload;
  assert.deepEqual(claims.schools.map((x) => x.school_id), [ids.a]);
  const own = await directory(t.access_token, ids.a);
  assert.equal(own.status, 200, own.text);
  for (const path of [`/api/v1/schools/${ids.b}/directory`, `/api/v1/schools/${ids.b}/directory?q=flow`, `/api/v1/schools/${ids.b}/groups`]) {
    const r = await api(`${s.url}${path}`, { token: t.access_token });
    assert.equal(r.status, 403, `${path}: ${r.text}`);
    assert.equal(r.json.error.code, 'identity.forbidden');
    assert.equal(r.json.people, undefined);
  }
  const foreign = await api(`${s.url}/api/v1/users/${ids.pupilB}`, { token: t.access_token });
  assert.equal(foreign.status, 404, foreign.text);
});

test('one-time codes with flow tokens: a pupil issues none, a teacher none outside their groups', async () => {
  const codeRows = () => sql('SELECT count(*) FROM identity.one_time_codes');
  const rows = codeRows();
  const pupil = await tokens({ who: 'pupil' });
  const teacher = await tokens({ who: 'teacher' });
  const issue = (user, tok, purpose = 'RESET', school = ids.a) =>
    api(`${s.url}/api/v1/users/${user}/codes`, { method: 'POST', token: tok, body: { school_id: school, purpose } });
  for (const [user, tok] of [[ids.pupil, pupil], [ids.outsider, pupil], [ids.outsider, teacher], [ids.pupilB, teacher]]) {
    const r = await issue(user, tok.access_token, 'RESET', user === ids.pupilB ? ids.b : ids.a);
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.error.code, 'identity.forbidden');
    assert.equal(r.json.code, undefined);
  }
  assert.equal(codeRows(), rows);
  // The teacher's own pupil: allowed (the control).
  const ok = await issue(ids.pupil, teacher.access_token);
  assert.equal(ok.status, 201, ok.text);
});

test('an expired code is invalid_grant', async () => {
  // A suite of its own whose codes live 10 seconds, the shortest
  // KREIDE_AUTH_CODE_TTL identity accepts.
  const e = await startSuite({ name: 'oidcflowexp', env: { KREIDE_AUTH_CODE_TTL: '10' } });
  try {
    const eop = e.token({ roles: ['operator'] });
    const school = (await post(e, '/api/v1/schools', { name: 'Schule E', kind: 'SCHOOL' }, eop)).id;
    await person(e, eop, 'flow.teacher', [{ school_id: school, role: 'TEACHER' }]);
    const client = await registerClient(e, eop, 'Client E');
    const jar = new CookieJar();
    const c = await code({ suite: e, client, jar });
    const control = await code({ suite: e, client, jar });
    const redeemIt = (x) => token({ grant_type: 'authorization_code', code: x.code, redirect_uri: x.redirectUri, code_verifier: x.verifier },
      client, e);
    const expired = () => execFileSync('psql', [e.dbUrl, '-qAtc',
      `SELECT expires_at < now() FROM identity.oidc_codes WHERE code_hash = sha256('${c.code}'::bytea)`]).toString().trim();
    assert.equal(expired(), 'f');
    const ok = await redeemIt(control); // in time: fine
    assert.equal(ok.status, 200, ok.text);
    await until(() => expired() === 't', { what: 'the code to expire', timeoutMs: 20000, intervalMs: 250 });
    // Identity's housekeeping may have deleted the expired code just before
    // (then it is "unknown"); either way it is refused.
    refused(await redeemIt(c), 'invalid_grant', /expired|unknown/);
    assert.equal(execFileSync('psql', [e.dbUrl, '-qAtc', 'SELECT count(*) FROM identity.oidc_codes']).toString().trim(), '1',
      'the expired code is deleted, the redeemed one kept');
    assert.equal(execFileSync('psql', [e.dbUrl, '-qAtc', 'SELECT count(*) FROM identity.oidc_grants']).toString().trim(), '1',
      'only the control made a grant');
  } finally {
    await e.stop();
  }
});
