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
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startSuite, api } from '../lib/kreide.mjs';
import { signIn, request, CookieJar } from '../lib/browser.mjs';

let s;
let op;
const ids = {};
const clients = {};
const jars = {}; // one signed-in browser per person
const PASSWORD = 'ein sehr geheimes passwort';
const REDIRECT = 'http://127.0.0.1:8766/cb';
const OTHER_REDIRECT = 'http://127.0.0.1:8766/other';
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
  name, type: 'CONFIDENTIAL', redirect_uris: [REDIRECT, OTHER_REDIRECT], first_party: true,
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
async function dead(t) {
  const u = await userinfo(t);
  assert.equal(u.status, 401, u.text);
  assert.match(u.headers.get('www-authenticate') || '', /invalid_token/);
  const d = await directory(t);
  assert.equal(d.status, 401, d.text);
  assert.equal(d.json.error.code, 'auth.invalid_token');
}

// Rows the flow writes; a refusal changes none of them.
function flowRows() {
  const tables = sql("SELECT string_agg(table_name, ' ' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'identity' "
    + "AND table_name ~ '(code|grant|refresh|consent)'").split(' ').filter((t) => t && t !== 'one_time_codes');
  assert.ok(tables.length >= 2, `the flow's tables: ${tables}`);
  return Object.fromEntries(tables.map((t) => [t, sql(`SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM identity.${t} t`)]));
}

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
  // A registered URI of the same client is fine (the control).
  assert.ok((await code({ redirectUri: OTHER_REDIRECT })).code);
  const after = flowRows();
  for (const t of Object.keys(before)) if (!/code/.test(t)) assert.equal(after[t], before[t], t);
});

test('a reused code is invalid_grant and kills the tokens issued from it', async () => {
  const c = await code();
  const first = await redeem(c);
  assert.equal(first.status, 200, first.text);
  const { access_token: at, refresh_token: rt } = first.json;
  assert.ok(await works(at));
  refused(await redeem(c), 'invalid_grant');
  await dead(at);
  refused(await refresh(rt), 'invalid_grant');
});

test('a wrong PKCE verifier is invalid_grant, and the code is gone after it', async () => {
  const c = await code();
  const before = flowRows();
  refused(await redeem(c, clients.a, { code_verifier: pkce().verifier }), 'invalid_grant');
  const nearly = c.verifier.slice(0, -1) + (c.verifier.endsWith('A') ? 'B' : 'A');
  refused(await redeem(c, clients.a, { code_verifier: nearly }), 'invalid_grant');
  refused(await redeem(c), 'invalid_grant'); // single use, even after a failure
  const after = flowRows();
  for (const t of Object.keys(before)) if (!/code/.test(t)) assert.equal(after[t], before[t], t);
  // Without any verifier, for a code that has a challenge.
  const d = await code();
  refused(await token({ grant_type: 'authorization_code', code: d.code, redirect_uri: d.redirectUri }), 'invalid_grant');
});

test('a code redeemed with another redirect_uri than it was issued for is invalid_grant', async () => {
  const c = await code();
  refused(await redeem(c, clients.a, { redirect_uri: OTHER_REDIRECT }), 'invalid_grant');
  refused(await redeem(c), 'invalid_grant');
});

test('a code presented by another client is invalid_grant and stays the rightful client\'s', async () => {
  const c = await code();
  const before = flowRows();
  refused(await redeem(c, clients.b), 'invalid_grant');
  assert.deepEqual(flowRows(), before);
  const own = await redeem(c);
  assert.equal(own.status, 200, own.text);
  assert.ok(await works(own.json.access_token));
});

test('a refresh token presented by another client is invalid_grant and stays valid for its own', async () => {
  const t = await tokens();
  const before = flowRows();
  refused(await refresh(t.refresh_token, clients.b), 'invalid_grant');
  assert.deepEqual(flowRows(), before);
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
  await dead(t.access_token);
  await dead(r2.json.access_token);
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

test('alg none and HS256 keyed with the public key are refused by userinfo and the API', async () => {
  const t = await tokens();
  const { header, payload } = parts(t.access_token);
  const none = `${b64({ ...header, alg: 'none' })}.${b64(payload)}.`;
  await dead(none);
  await dead(`${b64({ typ: 'JWT', alg: 'none' })}.${b64(payload)}.`);
  // The public key as an attacker finds it: PEM from the JWK Set, and the
  // JWK itself.
  const jwks = (await api(`${s.url}/.well-known/jwks.json`)).json;
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk);
  const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  for (const secret of [pem, pem.trim(), JSON.stringify(jwk)]) {
    const head = b64({ ...header, alg: 'HS256' });
    const body = b64(payload);
    const mac = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
    await dead(`${head}.${body}.${mac}`);
  }
  // The key files the suite signs with are EC keys: no HMAC secret there either.
  for (const f of readdirSync(s.keysDir).filter((n) => n.endsWith('.pem'))) {
    const key = createPublicKey(readFileSync(path.join(s.keysDir, f)));
    assert.ok(['ec', 'rsa'].includes(key.asymmetricKeyType), f);
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
  // A suite of its own whose codes live one second.
  const e = await startSuite({ name: 'oidcflowexp', env: { KREIDE_AUTH_CODE_TTL: '1' } });
  try {
    const eop = e.token({ roles: ['operator'] });
    const school = (await post(e, '/api/v1/schools', { name: 'Schule E', kind: 'SCHOOL' }, eop)).id;
    await person(e, eop, 'flow.teacher', [{ school_id: school, role: 'TEACHER' }]);
    const client = await registerClient(e, eop, 'Client E');
    const c = await code({ suite: e, client, jar: new CookieJar() });
    const issued = Date.now();
    // Time has to pass: a code of one second is expired two seconds later.
    await new Promise((r) => setTimeout(r, 2100 - (Date.now() - issued)));
    refused(await token({ grant_type: 'authorization_code', code: c.code, redirect_uri: c.redirectUri, code_verifier: c.verifier }, client, e),
      'invalid_grant', /expired/);
  } finally {
    await e.stop();
  }
});
