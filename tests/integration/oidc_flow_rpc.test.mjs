// Identity's side of the OpenID Connect flow, driven the way the gateway
// drives it: RPCs in sealed envelopes from a SERVICE caller "gateway". A
// person who set a password with a one-time code signs in (StartSession),
// the session is read back (GetSession), codes are issued (IssueAuthCode,
// with and without consent) and redeemed (RedeemAuthCode) — and every wrong
// redemption is refused, a replay revoking what the code granted in Redis
// exactly as the gateway's /oidc/revoke does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startSuite, api, bin, subscribe, until, redisDb } from '../lib/kreide.mjs';

let s;
let op;
const ids = {};
const clients = {};
const PASSWORD = 'ein langer satz zum anmelden';
const ADDRESS = '198.51.100.71';

const redis = (...args) =>
  execFileSync('redis-cli', ['-u', s.redisUrl, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
const sql = (query) => execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();

const sha256hex = (text) => createHash('sha256').update(text).digest('hex');
// The grant a redemption started, from its recorded access token.
const grantOf = (g) => sql(`SELECT grant_id FROM identity.oidc_access_tokens WHERE jti = '${g.access_jti}'`);
const s256 = (verifier) => createHash('sha256').update(verifier).digest('base64url');
const verifier = () => randomBytes(32).toString('base64url');

// One flow RPC as the gateway sends it (or as `as` says).
function gw(method, body, as = { service: 'gateway' }) {
  return s.rpc(`kreide.identity.Identity/${method}`, JSON.stringify(body), as);
}
function ok(reply) {
  assert.equal(reply.status, 'OK', JSON.stringify(reply));
  return reply.body;
}
function refused(reply, status, code) {
  assert.equal(reply.status, status, JSON.stringify(reply));
  assert.equal(reply.error_code, code, JSON.stringify(reply));
  return reply;
}

// RFC 6238 with HMAC-SHA1, 30-second steps, 6 digits (RFC 4226 section 5.3).
function totp(secret, at = Date.now()) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac('sha1', secret).update(msg).digest();
  const off = mac[19] & 0x0f;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1e6).padStart(6, '0');
}

function post(p, body, token = op) {
  return api(`${s.url}${p}`, { method: 'POST', token, body });
}

async function person(username, given, family, role) {
  const u = await post('/api/v1/users', {
    username, given_name: given, family_name: family, contexts: [{ school_id: ids.school, role }],
  });
  assert.equal(u.status, 201, u.text);
  const code = await post(`/api/v1/users/${u.json.id}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
  assert.equal(code.status, 201, code.text);
  const e = await api(`${s.url}/api/v1/enroll`, { method: 'POST', body: { username, code: code.json.code, password: PASSWORD } });
  assert.equal(e.status, 200, e.text);
  return u.json.id;
}

async function client(body, token = op) {
  const r = await post('/api/v1/oidc/clients', body, token);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

function startSession(username = 'tom.lehrer', password = PASSWORD, extra = {}) {
  return gw('StartSession', { username, password, client_address: ADDRESS, ...extra });
}

before(async () => {
  s = await startSuite({ name: 'oidcflowrpc', env: { KREIDE_REDIS_URL: redisDb(11) } });
  op = s.token({ roles: ['operator'] });
  const school = await post('/api/v1/schools', { name: 'Schule am Fluss', kind: 'SCHOOL', kennung: 'FLOW-1' });
  assert.equal(school.status, 201, school.text);
  ids.school = school.json.id;
  ids.teacher = await person('tom.lehrer', 'Tom', 'Lehmann', 'TEACHER');
  const cls = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLASS', name: '4b', school_year: '2026/27' });
  assert.equal(cls.status, 201, cls.text);
  ids.group = cls.json.id;
  const m = await post(`/api/v1/groups/${ids.group}/members`, { user_id: ids.teacher, role: 'LEADER' });
  assert.equal(m.status, 201, m.text);

  clients.wiki = await client({
    name: 'Schulwiki', type: 'CONFIDENTIAL', redirect_uris: ['https://wiki.example.org/cb'],
    grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'school', 'offline_access'],
  });
  clients.portal = await client({
    name: 'Portal', type: 'PUBLIC', redirect_uris: ['http://127.0.0.1:4711/cb'], scopes: ['openid', 'profile'],
    first_party: true, post_logout_redirect_uris: ['http://127.0.0.1:4711/bye'],
  });
  clients.other = await client({
    name: 'Andere App', type: 'CONFIDENTIAL', redirect_uris: ['https://other.example.org/cb'], scopes: ['openid'],
  });
  clients.plain = await client({
    name: 'Ohne Refresh', type: 'CONFIDENTIAL', redirect_uris: ['https://plain.example.org/cb'],
    scopes: ['openid', 'offline_access'],
  });
});
after(async () => s && s.stop());

// A session of the teacher, made once per test that needs a fresh one.
function session() {
  return ok(startSession());
}

// A code for the wiki (consent given), with its verifier.
function wikiCode(sess, { scope = 'openid profile school offline_access', nonce = 'n-0S6_WzA2Mj' } = {}) {
  const v = verifier();
  const code = ok(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: clients.wiki.client_id, redirect_uri: 'https://wiki.example.org/cb',
    scope, nonce, code_challenge: s256(v), code_challenge_method: 'S256', consent_given: true,
  }));
  return { code: code.code, verifier: v, expires_in: code.expires_in };
}

function redeem(c, overrides = {}) {
  return gw('RedeemAuthCode', {
    client_id: clients.wiki.client_id, code: c.code, redirect_uri: 'https://wiki.example.org/cb', code_verifier: c.verifier,
    ...overrides,
  });
}

test('clients carry first_party and post-logout redirect URIs; only operators make first-party clients', async () => {
  assert.equal(clients.portal.first_party, true);
  assert.deepEqual(clients.portal.post_logout_redirect_uris, ['http://127.0.0.1:4711/bye']);
  assert.equal(clients.wiki.first_party, false);
  assert.deepEqual(clients.wiki.post_logout_redirect_uris, []);
  const got = await api(`${s.url}/api/v1/oidc/clients/${clients.portal.client_id}`, { token: op });
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.first_party, true);
  assert.deepEqual(got.json.post_logout_redirect_uris, ['http://127.0.0.1:4711/bye']);
  const auth = ok(gw('AuthenticateClient', { client_id: clients.portal.client_id }));
  assert.equal(auth.first_party, true);
  assert.deepEqual(auth.post_logout_redirect_uris, ['http://127.0.0.1:4711/bye']);

  const carrier = await post('/api/v1/carriers', { name: 'Stadt am Fluss' });
  const school = await post('/api/v1/schools', { name: 'Zweite Schule', kind: 'SCHOOL', carrier_id: carrier.json.id });
  const admin = s.token({ roles: [`carrier_admin:${carrier.json.id}`], sub: '0190b3c4-7d2e-7a11-9f00-0123456789ab' });
  const body = { name: 'Eigene App', type: 'PUBLIC', redirect_uris: ['https://app.example.org/cb'], school_id: school.json.id };
  const denied = await post('/api/v1/oidc/clients', { ...body, first_party: true }, admin);
  assert.equal(denied.status, 403, denied.text);
  assert.equal(denied.json.error.code, 'identity.forbidden');
  assert.equal((await post('/api/v1/oidc/clients', body, admin)).status, 201);

  for (const [uris, why] of [[['http://logout.example.org/'], 'http'], [['https://a.example.org/#x'], 'fragment'],
    [['https://a.example.org/', 'https://a.example.org/'], 'twice'], [Array.from({ length: 17 }, (_, i) => `https://a.example.org/${i}`), 'many']]) {
    const r = await post('/api/v1/oidc/clients', { ...body, school_id: undefined, post_logout_redirect_uris: uris });
    assert.equal(r.status, 400, `${why}: ${r.text}`);
    assert.equal(r.json.error.code, 'identity.invalid_redirect_uri');
    assert.equal(r.json.error.field, 'post_logout_redirect_uris');
  }
});

test('kreidectl registers first-party clients with post-logout redirect URIs', () => {
  const out = execFileSync(path.join(bin, 'kreidectl'), [
    '--url', s.url, '--token', op, '--json', 'client', 'create', '--name', 'Kreide Portal', '--type', 'public',
    '--redirect-uri', 'https://portal.example.org/cb', '--first-party',
    '--post-logout-redirect-uri', 'https://portal.example.org/bye', '--post-logout-redirect-uri', 'https://portal.example.org/',
  ]).toString();
  const c = JSON.parse(out);
  assert.equal(c.first_party, true);
  assert.deepEqual(c.post_logout_redirect_uris, ['https://portal.example.org/bye', 'https://portal.example.org/']);
});

test('only the gateway may call the flow RPCs', () => {
  const methods = {
    StartSession: { username: 'tom.lehrer', password: PASSWORD, client_address: ADDRESS },
    GetSession: { session_token: 'x' }, EndSession: { session_token: 'x' },
    IssueAuthCode: { client_id: clients.wiki.client_id }, RedeemAuthCode: { client_id: clients.wiki.client_id, code: 'x' },
    RefreshGrant: { client_id: clients.wiki.client_id, refresh_token: 'x' },
    RevokeRefreshToken: { client_id: clients.wiki.client_id, refresh_token: 'x' },
    GetUserClaims: { user_id: ids.teacher, scope: 'openid profile' },
  };
  for (const [method, body] of Object.entries(methods)) {
    for (const as of [{ roles: ['operator'] }, { user: ids.teacher }, { service: clients.wiki.client_id }, { service: 'Gateway' }]) {
      refused(gw(method, body, as), 'PERMISSION_DENIED', 'identity.forbidden');
    }
  }
  // Refused before anything was checked: the throttle counted nothing.
  assert.equal(redis('EXISTS', `kreide:throttle:acct:tom.lehrer`), '0');
});

test('StartSession checks the password like Authenticate and opens a session in Redis', () => {
  refused(startSession('tom.lehrer', 'falsches passwort'), 'UNAUTHENTICATED', 'identity.bad_credentials');
  refused(startSession('niemand.hier', PASSWORD), 'UNAUTHENTICATED', 'identity.bad_credentials');
  const before = Math.floor(Date.now() / 1000);
  const sess = session();
  assert.match(sess.session_token, /^[A-Za-z0-9_-]{43}$/);
  assert.match(sess.session_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(sess.user_id, ids.teacher);
  assert.equal(sess.username, 'tom.lehrer');
  assert.deepEqual(sess.amr, ['pwd']);
  assert.ok(Number(sess.auth_time) >= before - 1 && Number(sess.auth_time) <= before + 60);
  assert.equal(Number(sess.expires_at) - Number(sess.auth_time), 43200);

  // Redis keeps the SHA-256 of the token, never the token.
  const key = `kreide:sso:${sha256hex(sess.session_token)}`;
  const ttl = Number(redis('TTL', key));
  assert.ok(ttl > 43100 && ttl <= 43200, `TTL ${ttl}`);
  assert.equal(redis('HGET', key, 'session_id'), sess.session_id);
  assert.equal(redis('HGET', key, 'user_id'), ids.teacher);
  assert.equal(redis('HGET', key, 'amr'), 'pwd');
  assert.equal(redis('KEYS', `*${sess.session_token}*`), '');
  // The success cleared the account's failure counter.
  assert.equal(redis('EXISTS', 'kreide:throttle:acct:tom.lehrer'), '0');

  const got = ok(gw('GetSession', { session_token: sess.session_token }));
  assert.equal(got.session_token, '');
  for (const f of ['session_id', 'user_id', 'username', 'auth_time', 'expires_at']) assert.equal(got[f], sess[f], f);
  assert.deepEqual(got.amr, ['pwd']);
  for (const bad of ['', 'x', sess.session_token.slice(1), `${sess.session_token.slice(0, 42)}${sess.session_token.endsWith('A') ? 'Q' : 'A'}`, randomBytes(32).toString('base64url')]) {
    refused(gw('GetSession', { session_token: bad }), 'NOT_FOUND', 'oidc.login_required');
  }
});

test('an account with TOTP needs its code, asked for only after the right password, and never twice', () => {
  const secret = randomBytes(20);
  sql(`UPDATE identity.users SET totp_secret = decode('${secret.toString('hex')}', 'hex') WHERE id = '${ids.teacher}'`);
  try {
    refused(startSession('tom.lehrer', 'falsches passwort'), 'UNAUTHENTICATED', 'identity.bad_credentials');
    refused(startSession('tom.lehrer', 'falsches passwort', { totp: totp(secret) }), 'UNAUTHENTICATED', 'identity.bad_credentials');
    const r = refused(startSession(), 'FAILED_PRECONDITION', 'credentials.totp_required');
    assert.match(r.message, /authenticator/);
    // Authenticate shares the check.
    refused(s.rpc('kreide.identity.Identity/Authenticate', JSON.stringify({ username: 'tom.lehrer', password: PASSWORD, client_address: ADDRESS })),
      'FAILED_PRECONDITION', 'credentials.totp_required');
    const wrong = String((Number(totp(secret)) + 1) % 1e6).padStart(6, '0');
    refused(startSession('tom.lehrer', PASSWORD, { totp: wrong }), 'FAILED_PRECONDITION', 'credentials.totp_required');
    refused(startSession('tom.lehrer', PASSWORD, { totp: 'abcdef' }), 'FAILED_PRECONDITION', 'credentials.totp_required');
    const code = totp(secret);
    const sess = ok(startSession('tom.lehrer', PASSWORD, { totp: code }));
    assert.deepEqual(sess.amr, ['pwd', 'otp']);
    assert.deepEqual(ok(gw('GetSession', { session_token: sess.session_token })).amr, ['pwd', 'otp']);
    const again = refused(startSession('tom.lehrer', PASSWORD, { totp: code }), 'FAILED_PRECONDITION', 'credentials.totp_required');
    assert.match(again.message, /used already/);
  } finally {
    sql(`UPDATE identity.users SET totp_secret = NULL, totp_last_step = NULL WHERE id = '${ids.teacher}'`);
    redis('DEL', 'kreide:throttle:acct:tom.lehrer');
  }
});

test('EndSession ends the session; unknown sessions are no error', () => {
  const sess = session();
  ok(gw('EndSession', { session_token: sess.session_token }));
  assert.equal(redis('EXISTS', `kreide:sso:${sha256hex(sess.session_token)}`), '0');
  refused(gw('GetSession', { session_token: sess.session_token }), 'NOT_FOUND', 'oidc.login_required');
  refused(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: clients.portal.client_id, redirect_uri: 'http://127.0.0.1:4711/cb',
    scope: 'openid', code_challenge: s256(verifier()), code_challenge_method: 'S256',
  }), 'NOT_FOUND', 'oidc.login_required');
  ok(gw('EndSession', { session_token: sess.session_token }));
  ok(gw('EndSession', { session_token: 'not-a-token' }));
});

test('IssueAuthCode asks for consent of third-party clients, records it, and skips it for first-party ones', () => {
  const sess = session();
  const req = {
    session_token: sess.session_token, client_id: clients.wiki.client_id, redirect_uri: 'https://wiki.example.org/cb',
    scope: 'openid profile', nonce: 'abc', code_challenge: s256(verifier()), code_challenge_method: 'S256',
  };
  refused(gw('IssueAuthCode', req), 'FAILED_PRECONDITION', 'oidc.consent_required');
  assert.equal(sql(`SELECT count(*) FROM identity.oidc_codes`), '0', 'refused: no code stored');
  const code = ok(gw('IssueAuthCode', { ...req, consent_given: true }));
  assert.match(code.code, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Number(code.expires_in), 60);
  assert.equal(sql(`SELECT array_to_string(scopes, ' ') FROM identity.oidc_consents WHERE user_id = '${ids.teacher}'`),
    'openid profile');
  // Remembered: the same scopes, in any order, need no page again.
  ok(gw('IssueAuthCode', { ...req, scope: 'profile openid' }));
  // More scopes ask again; allowing them merges the consent.
  refused(gw('IssueAuthCode', { ...req, scope: 'openid school' }), 'FAILED_PRECONDITION', 'oidc.consent_required');
  ok(gw('IssueAuthCode', { ...req, scope: 'openid school', consent_given: true }));
  assert.equal(sql(`SELECT array_to_string(scopes, ' ') FROM identity.oidc_consents WHERE user_id = '${ids.teacher}'`),
    'openid profile school');
  // The stored code is only a hash, bound to the request.
  const row = sql(`SELECT client_id, user_id, redirect_uri, scope, nonce, session_id FROM identity.oidc_codes `
    + `WHERE code_hash = decode('${sha256hex(code.code)}', 'hex')`);
  assert.equal(row, [clients.wiki.client_id, ids.teacher, 'https://wiki.example.org/cb', 'openid profile', 'abc', sess.session_id].join('|'));

  // A first-party client never asks.
  ok(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: clients.portal.client_id, redirect_uri: 'http://127.0.0.1:4711/cb',
    scope: 'openid profile', code_challenge: s256(verifier()), code_challenge_method: 'S256',
  }));
  assert.equal(sql(`SELECT count(*) FROM identity.oidc_consents WHERE client_id = '${clients.portal.client_id}'`), '0');
});

test('IssueAuthCode checks the request again itself', () => {
  const sess = session();
  const base = {
    session_token: sess.session_token, client_id: clients.portal.client_id, redirect_uri: 'http://127.0.0.1:4711/cb',
    scope: 'openid', code_challenge: s256(verifier()), code_challenge_method: 'S256',
  };
  const cases = [
    [{ redirect_uri: 'http://127.0.0.1:4711/cb/' }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ redirect_uri: 'https://evil.example.org/cb' }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ scope: 'profile' }, 'INVALID_ARGUMENT', 'oidc.invalid_scope'],
    [{ scope: 'openid school' }, 'INVALID_ARGUMENT', 'oidc.invalid_scope'],
    [{ scope: 'openid "x"' }, 'INVALID_ARGUMENT', 'oidc.invalid_scope'],
    [{ code_challenge: '', code_challenge_method: '' }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ code_challenge_method: 'plain' }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ code_challenge_method: '' }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ code_challenge: 'too-short' }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ nonce: 'n'.repeat(513) }, 'INVALID_ARGUMENT', 'oidc.invalid_request'],
    [{ client_id: 'AAAAAAAAAAAAAAAAAAAAAA' }, 'INVALID_ARGUMENT', 'oidc.invalid_client'],
    [{ session_token: randomBytes(32).toString('base64url') }, 'NOT_FOUND', 'oidc.login_required'],
  ];
  const codes = sql('SELECT count(*) FROM identity.oidc_codes');
  for (const [change, status, code] of cases) refused(gw('IssueAuthCode', { ...base, ...change }), status, code);
  assert.equal(sql('SELECT count(*) FROM identity.oidc_codes'), codes, 'no refused request stored a code');
  // RFC 8252 section 7.3: a loopback redirect URI may name another port.
  ok(gw('IssueAuthCode', { ...base, redirect_uri: 'http://127.0.0.1:5000/cb' }));
  // A confidential client may go without PKCE.
  ok(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: clients.other.client_id, redirect_uri: 'https://other.example.org/cb',
    scope: 'openid', consent_given: true,
  }));
});

test('RedeemAuthCode answers the grant: claims, ids to revoke later, a refresh token with offline_access', () => {
  const sess = session();
  const c = wikiCode(sess);
  const t0 = Math.floor(Date.now() / 1000);
  const g = ok(redeem(c));
  assert.equal(g.scope, 'openid profile school offline_access');
  assert.equal(g.nonce, 'n-0S6_WzA2Mj');
  assert.equal(g.session_id, sess.session_id);
  assert.equal(g.auth_time, sess.auth_time);
  assert.match(g.access_jti, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const exp = Number(g.access_expires_at);
  assert.ok(exp >= t0 + 600 - 1 && exp <= t0 + 600 + 60, `access_expires_at ${exp}`);
  assert.match(g.refresh_token, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(Math.abs(Number(g.refresh_expires_in) - 30 * 86400) < 60);
  assert.equal(g.id_token_alg, 'ES256');
  assert.equal(g.claims.sub, ids.teacher);
  assert.equal(g.claims.name, 'Tom Lehmann');
  assert.equal(g.claims.given_name, 'Tom');
  assert.equal(g.claims.family_name, 'Lehmann');
  assert.equal(g.claims.preferred_username, 'tom.lehrer');
  assert.deepEqual(g.claims.schools, [{
    school_id: ids.school, name: 'Schule am Fluss', kennung: 'FLOW-1', roles: ['teacher'], schulconnex_roles: ['Lehr'],
    groups: [{ group_id: ids.group, name: '4b', kind: 'class', role: 'leader' }],
  }]);
  // Recorded: the jti with its expiry and the grant in PostgreSQL, which
  // knows how long the family may refresh; the refresh token's hash and its
  // family in Redis, bound to the Redis process that holds them.
  assert.equal(sql(`SELECT floor(extract(epoch FROM expires_at))::bigint FROM identity.oidc_access_tokens WHERE jti = '${g.access_jti}'`),
    String(exp));
  const gid = grantOf(g);
  const until = Number(sql(`SELECT floor(extract(epoch FROM refresh_until))::bigint FROM identity.oidc_grants WHERE id = '${gid}'`));
  assert.ok(Math.abs(until - (t0 + 60 * 86400)) < 60, `refresh_until ${until}`);
  assert.equal(redis('GET', `kreide:rt:${sha256hex(g.refresh_token)}`), gid);
  assert.equal(refreshState(g.refresh_token), 'current');
  assert.equal(redis('HGET', `kreide:rtf:${gid}`, 'client'), clients.wiki.client_id);
  assert.equal(redis('HGET', `kreide:rtf:${gid}`, 'user'), ids.teacher);
  assert.match(redis('INFO', 'server'), new RegExp(`run_id:${redis('HGET', `kreide:rtf:${gid}`, 'epoch')}`));
  assert.ok(Number(redis('TTL', `kreide:rt:${sha256hex(g.refresh_token)}`)) > 30 * 86400 - 60);

  // Without profile no names; schools are always there for the access token.
  const lean = ok(redeem(wikiCode(sess, { scope: 'openid', nonce: '' })));
  assert.equal(lean.claims.name, '');
  assert.equal(lean.claims.preferred_username, '');
  assert.equal(lean.claims.schools[0].school_id, ids.school);
  assert.equal(lean.refresh_token, '', 'no offline_access, no refresh token');
  assert.equal(lean.nonce, '');
});

test('a client without the refresh_token grant gets no refresh token, and offline_access is not granted', () => {
  const sess = session();
  const v = verifier();
  const code = ok(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: clients.plain.client_id, redirect_uri: 'https://plain.example.org/cb',
    scope: 'openid offline_access', code_challenge: s256(v), code_challenge_method: 'S256', consent_given: true,
  }));
  const g = ok(gw('RedeemAuthCode', {
    client_id: clients.plain.client_id, code: code.code, redirect_uri: 'https://plain.example.org/cb', code_verifier: v,
  }));
  assert.equal(g.scope, 'openid');
  assert.equal(g.refresh_token, '');
});

test('a wrong verifier, a wrong redirect URI, another client, an unknown or expired code: invalid_grant', () => {
  const sess = session();
  const codeRow = (c) => sql(`SELECT used_at IS NOT NULL FROM identity.oidc_codes WHERE code_hash = decode('${sha256hex(c.code)}', 'hex')`);

  // Another client: refused, and the code stays good for its own client.
  const a = wikiCode(sess);
  let r = refused(gw('RedeemAuthCode', {
    client_id: clients.other.client_id, code: a.code, redirect_uri: 'https://wiki.example.org/cb', code_verifier: a.verifier,
  }), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /another client/);
  assert.equal(codeRow(a), 'f');
  ok(redeem(a));

  // A wrong verifier or redirect URI uses the code up.
  const b = wikiCode(sess);
  r = refused(redeem(b, { code_verifier: verifier() }), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /code_verifier/);
  assert.equal(codeRow(b), 't');
  refused(redeem(b), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  const b2 = wikiCode(sess);
  refused(redeem(b2, { code_verifier: '' }), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  const c = wikiCode(sess);
  r = refused(redeem(c, { redirect_uri: 'https://wiki.example.org/cb?x=1' }), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /redirect_uri/);
  assert.equal(codeRow(c), 't');
  refused(redeem(c), 'FAILED_PRECONDITION', 'oidc.invalid_grant');

  // Unknown codes, of any shape.
  for (const code of [randomBytes(32).toString('base64url'), 'short', '']) {
    r = refused(redeem({ code, verifier: verifier() }), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
    assert.match(r.message, /unknown/);
  }

  // Expired: refused, and deleted on the spot.
  const d = wikiCode(sess);
  sql(`UPDATE identity.oidc_codes SET created_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute' `
    + `WHERE code_hash = decode('${sha256hex(d.code)}', 'hex')`);
  r = refused(redeem(d), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /expired/);
  assert.equal(codeRow(d), '');
});

test('a replayed code revokes the access token it granted, in Redis and on the revocation channel', async () => {
  const sess = session();
  const c = wikiCode(sess);
  const g = ok(redeem(c));
  const key = `kreide:revoked:jti:${g.access_jti}`;
  assert.equal(redis('EXISTS', key), '0');
  const sub = subscribe(s.redisUrl, 'kreide.tokens.revoked');
  try {
    await sub.ready;
    const r = refused(redeem(c), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
    assert.match(r.message, /used before/);
    assert.equal(redis('GET', key), '1');
    const revokedUntil = Number(g.access_expires_at) + 30;
    const ttl = Number(redis('TTL', key));
    const left = revokedUntil - Math.floor(Date.now() / 1000);
    assert.ok(ttl > 0 && Math.abs(ttl - left) <= 5, `TTL ${ttl}, expected about ${left}`);
    await until_published(sub, g.access_jti);
    const msg = sub.messages.map((m) => JSON.parse(m)).find((m) => m.jti === g.access_jti);
    assert.deepEqual(msg, { jti: g.access_jti, until: revokedUntil });
  } finally {
    sub.close();
  }
  assert.equal(sql(`SELECT revoked_reason FROM identity.oidc_grants g JOIN identity.oidc_access_tokens a ON a.grant_id = g.id `
    + `WHERE a.jti = '${g.access_jti}'`), 'code_replayed');
  // A third try is refused the same way.
  refused(redeem(c), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
});

async function until_published(sub, jti) {
  await until(() => sub.messages.some((m) => JSON.parse(m).jti === jti), { what: `the revocation of ${jti} published` });
}

test('GetUserClaims answers the claims of the scopes asked for', () => {
  const only = ok(gw('GetUserClaims', { user_id: ids.teacher, scope: 'openid' }));
  assert.equal(only.sub, ids.teacher);
  assert.equal(only.name, '');
  assert.deepEqual(only.schools, []);
  const full = ok(gw('GetUserClaims', { user_id: ids.teacher, scope: 'openid profile school' }));
  assert.equal(full.preferred_username, 'tom.lehrer');
  assert.equal(full.name, 'Tom Lehmann');
  assert.equal(full.schools.length, 1);
  assert.deepEqual(full.schools[0].groups, [{ group_id: ids.group, name: '4b', kind: 'class', role: 'leader' }]);
  refused(gw('GetUserClaims', { user_id: '0190b3c4-7d2e-7a11-9f00-0000000000ff', scope: 'openid' }), 'NOT_FOUND', 'identity.not_found');
  refused(gw('GetUserClaims', { user_id: 'nope', scope: 'openid' }), 'INVALID_ARGUMENT', 'identity.invalid_id');
});

test('a client of one school signs in only people of that school', async () => {
  const other = await post('/api/v1/schools', { name: 'Nachbarschule', kind: 'SCHOOL' });
  const c = await client({
    name: 'Nachbar-App', type: 'CONFIDENTIAL', redirect_uris: ['https://n.example.org/cb'], school_id: other.json.id,
  });
  const sess = session();
  refused(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: c.client_id, redirect_uri: 'https://n.example.org/cb', scope: 'openid',
    consent_given: true,
  }), 'FAILED_PRECONDITION', 'oidc.access_denied');
  const mine = await client({
    name: 'Eigene Schul-App', type: 'CONFIDENTIAL', redirect_uris: ['https://m.example.org/cb'], school_id: ids.school,
  });
  ok(gw('IssueAuthCode', {
    session_token: sess.session_token, client_id: mine.client_id, redirect_uri: 'https://m.example.org/cb', scope: 'openid',
    consent_given: true,
  }));
});

test('no token or code ever reaches the log', async () => {
  const { readFileSync } = await import('node:fs');
  const sess = session();
  const c = wikiCode(sess);
  const g = ok(redeem(c));
  // The log reaches its file through a pipe: wait for the redemption's line.
  const log = await until(() => {
    const text = readFileSync(s.identity.logPath, 'utf8');
    return text.includes(g.access_jti) && text;
  }, { what: 'the redemption logged with its jti' });
  for (const secret of [sess.session_token, c.code, c.verifier, g.refresh_token, PASSWORD]) assert.ok(!log.includes(secret));
});

// ------------------------------------------------------------ refresh tokens

function wikiGrant(scope = 'openid profile school offline_access') {
  const g = ok(redeem(wikiCode(session(), { scope })));
  assert.match(g.refresh_token, /^[A-Za-z0-9_-]{43}$/);
  return g;
}

function refresh(token, { scope = '', client_id = clients.wiki.client_id } = {}) {
  return gw('RefreshGrant', { client_id, refresh_token: token, scope });
}

// What Redis holds of a refresh token: 'current' (its family's newest),
// 'rotated' (used before; kept to recognise reuse) or '' (unknown).
function refreshState(token) {
  const gid = redis('GET', `kreide:rt:${sha256hex(token)}`);
  if (gid === '') return '';
  return redis('HGET', `kreide:rtf:${gid}`, 'cur') === sha256hex(token) ? 'current' : 'rotated';
}

test('RefreshGrant rotates: a new refresh token, a new recorded access jti, the same grant', () => {
  const g = wikiGrant();
  const t0 = Math.floor(Date.now() / 1000);
  const n = ok(refresh(g.refresh_token));
  assert.notEqual(n.refresh_token, g.refresh_token);
  assert.match(n.refresh_token, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(n.access_jti, g.access_jti);
  assert.ok(Math.abs(Number(n.access_expires_at) - (t0 + 600)) <= 60);
  assert.ok(Math.abs(Number(n.refresh_expires_in) - 30 * 86400) < 60);
  assert.equal(n.scope, g.scope);
  assert.equal(n.session_id, g.session_id);
  assert.equal(n.auth_time, g.auth_time);
  assert.equal(n.nonce, '');
  assert.equal(n.id_token_alg, 'ES256');
  assert.equal(n.claims.sub, ids.teacher);
  assert.equal(n.claims.name, 'Tom Lehmann');
  assert.equal(n.claims.schools[0].school_id, ids.school);
  assert.equal(refreshState(g.refresh_token), 'rotated');
  assert.equal(refreshState(n.refresh_token), 'current');
  // The new access token is recorded with the family, to be revoked with it.
  assert.deepEqual(redis('LRANGE', `kreide:rtj:${grantOf(g)}`, '0', '-1').split('\n'), [`${n.access_jti} ${n.access_expires_at}`]);
  // And again, from the new one.
  const m = ok(refresh(n.refresh_token));
  assert.notEqual(m.refresh_token, n.refresh_token);
});

test('RefreshGrant narrows the scope only to a subset, and a refused narrowing changes nothing', () => {
  const g = wikiGrant();
  for (const scope of ['openid profile email', 'admin', 'openid "x"']) {
    refused(refresh(g.refresh_token, { scope }), 'INVALID_ARGUMENT', 'oidc.invalid_scope');
    assert.equal(refreshState(g.refresh_token), 'current', `${scope}: the token is not used up`);
  }
  const n = ok(refresh(g.refresh_token, { scope: 'openid' }));
  assert.equal(n.scope, 'openid');
  assert.equal(n.claims.name, '', 'no profile, no names');
  assert.equal(n.claims.schools[0].school_id, ids.school);
  // The grant keeps what was granted: the next refresh may ask for it all.
  const m = ok(refresh(n.refresh_token));
  assert.equal(m.scope, 'openid profile school offline_access');
});

test('a rotated refresh token used again revokes the whole family: refresh tokens and live access tokens', async () => {
  const g = wikiGrant();
  const n = ok(refresh(g.refresh_token));
  const m = ok(refresh(n.refresh_token));
  // One recorded access token has expired already: it is not revoked again.
  const old = g.access_jti;
  sql(`UPDATE identity.oidc_access_tokens SET created_at = now() - interval '20 minutes', expires_at = now() - interval '5 minutes' WHERE jti = '${old}'`);
  const sub = subscribe(s.redisUrl, 'kreide.tokens.revoked');
  try {
    await sub.ready;
    const r = refused(refresh(g.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
    assert.match(r.message, /family is revoked/);
    for (const live of [n, m]) {
      assert.equal(redis('GET', `kreide:revoked:jti:${live.access_jti}`), '1');
      await until_published(sub, live.access_jti);
      const msg = sub.messages.map((x) => JSON.parse(x)).find((x) => x.jti === live.access_jti);
      assert.deepEqual(msg, { jti: live.access_jti, until: Number(live.access_expires_at) + 30 });
    }
    assert.equal(redis('EXISTS', `kreide:revoked:jti:${old}`), '0');
    assert.ok(!sub.messages.some((x) => JSON.parse(x).jti === old));
  } finally {
    sub.close();
  }
  // The newest token of the family is dead too.
  const last = refused(refresh(m.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(last.message, /revoked/);
});

test('refresh tokens for a client without the grant, unknown, expired, or of a replayed code are refused', () => {
  const g = wikiGrant();
  // A client not registered for the grant is refused before the token is looked at.
  refused(refresh(g.refresh_token, { client_id: clients.other.client_id }), 'INVALID_ARGUMENT', 'oidc.unauthorized_client');
  assert.equal(refreshState(g.refresh_token), 'current');
  for (const token of [randomBytes(32).toString('base64url'), 'short', '']) {
    const r = refused(refresh(token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
    assert.match(r.message, /unknown/);
  }
  // Expired: refused and deleted on the spot.
  redis('HSET', `kreide:rtf:${grantOf(g)}`, 'exp', String(Math.floor(Date.now() / 1000) - 86400));
  const r = refused(refresh(g.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /expired/);
  assert.equal(refreshState(g.refresh_token), '');

  // A replayed code revokes the refresh token it gave.
  const c = wikiCode(session());
  const fromCode = ok(redeem(c));
  refused(redeem(c), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  const dead = refused(refresh(fromCode.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(dead.message, /revoked/);
});

test('another client that may refresh cannot use the wiki\'s refresh token, and spends nothing trying', async () => {
  const rival = await client({
    name: 'Rivale', type: 'CONFIDENTIAL', redirect_uris: ['https://rival.example.org/cb'],
    grant_types: ['authorization_code', 'refresh_token'], scopes: ['openid', 'offline_access'],
  });
  const g = wikiGrant();
  const r = refused(refresh(g.refresh_token, { client_id: rival.client_id }), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /another client/);
  assert.equal(refreshState(g.refresh_token), 'current');
  ok(refresh(g.refresh_token));
  // Revoking another client's token is answered like success and changes nothing.
  const h = wikiGrant();
  ok(gw('RevokeRefreshToken', { client_id: rival.client_id, refresh_token: h.refresh_token }));
  ok(refresh(h.refresh_token));
});

test('a grant revoked in PostgreSQL while Redis missed it refuses its refresh tokens, and Redis learns it', () => {
  // As when Redis was down while a replayed code revoked the grant.
  const g = wikiGrant();
  const n = ok(refresh(g.refresh_token));
  sql(`UPDATE identity.oidc_grants SET revoked_at = now(), revoked_reason = 'code_replayed' WHERE id = '${grantOf(g)}'`);
  const r = refused(refresh(n.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /revoked/);
  assert.equal(redis('HGET', `kreide:rtf:${grantOf(g)}`, 'revoked'), 'revoked');
  // The access token that refresh issued is revoked with the family.
  assert.equal(redis('GET', `kreide:revoked:jti:${n.access_jti}`), '1');
  assert.equal(sql(`SELECT revoked_reason FROM identity.oidc_grants WHERE id = '${grantOf(g)}'`), 'code_replayed');
});

test('a code replay Redis could not hear of is told to Redis again shortly', async () => {
  const c = wikiCode(session());
  const g = ok(redeem(c));
  const gid = grantOf(g);
  const fk = `kreide:rtf:${gid}`;
  // The family's key answers nothing but errors while the replay comes.
  redis('RENAME', fk, `${fk}:aside`);
  redis('SET', fk, 'not a hash');
  refused(redeem(c), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.equal(sql(`SELECT revoked_reason || ' ' || redis_pending FROM identity.oidc_grants WHERE id = '${gid}'`), 'code_replayed true');
  redis('DEL', fk);
  redis('RENAME', `${fk}:aside`, fk);
  assert.equal(redis('HGET', fk, 'revoked'), '');
  // Flow calls (any worker's, every few seconds) tell Redis again.
  await until(() => {
    gw('RefreshGrant', { client_id: clients.wiki.client_id, refresh_token: randomBytes(32).toString('base64url') });
    return redis('HGET', fk, 'revoked') === 'code_replayed';
  }, { what: 'the revocation in Redis', timeoutMs: 30000, intervalMs: 500 });
  assert.equal(sql(`SELECT redis_pending FROM identity.oidc_grants WHERE id = '${gid}'`), 'f');
  refused(refresh(g.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
});

test('Redis losing the families fails closed: neither the newest nor a rotated refresh token is accepted', () => {
  const g = wikiGrant();
  const n = ok(refresh(g.refresh_token));
  const other = wikiGrant();
  // A restart without persistence, or a flush: the families are gone.
  for (const key of [`kreide:rtf:${grantOf(g)}`, `kreide:rtj:${grantOf(g)}`]) redis('DEL', key);
  for (const token of [n.refresh_token, g.refresh_token]) {
    const r = refused(refresh(token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
    assert.match(r.message, /unknown/);
  }
  redis('FLUSHDB');
  refused(refresh(other.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
});

test('a family another Redis process wrote (a restored snapshot, a failover) is never trusted', () => {
  const g = wikiGrant();
  const n = ok(refresh(g.refresh_token));
  // A snapshot taken before the rotation and restored into a new Redis
  // process would show g as current under an epoch that is not this
  // process's run_id: exactly this state.
  const gid = grantOf(g);
  redis('HSET', `kreide:rtf:${gid}`, 'cur', sha256hex(g.refresh_token), 'epoch', '0123456789abcdef0123456789abcdef01234567');
  for (const token of [g.refresh_token, n.refresh_token]) {
    const r = refused(refresh(token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
    assert.match(r.message, /unknown/);
  }
  assert.equal(redis('HGET', `kreide:rtf:${gid}`, 'cur'), sha256hex(g.refresh_token), 'nothing rotated');
});

test('a client disabled after the grant cannot refresh any more', () => {
  const g = wikiGrant();
  sql(`UPDATE identity.oidc_clients SET disabled_at = now() WHERE id = '${clients.wiki.client_id}'`);
  try {
    refused(refresh(g.refresh_token), 'INVALID_ARGUMENT', 'oidc.invalid_client');
  } finally {
    sql(`UPDATE identity.oidc_clients SET disabled_at = NULL WHERE id = '${clients.wiki.client_id}'`);
  }
});

test('a grant that went with its person or client gives no tokens on refresh', () => {
  const g = wikiGrant();
  // The grant goes with the person (ON DELETE CASCADE); Redis still holds the family.
  sql(`DELETE FROM identity.oidc_grants WHERE id = '${grantOf(g)}'`);
  const r = refused(refresh(g.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  assert.match(r.message, /no longer exists/);
});

test('RevokeRefreshToken ends the family and its live access tokens; unknown tokens are no error', async () => {
  const g = wikiGrant();
  const n = ok(refresh(g.refresh_token));
  const sub = subscribe(s.redisUrl, 'kreide.tokens.revoked');
  try {
    await sub.ready;
    ok(gw('RevokeRefreshToken', { client_id: clients.wiki.client_id, refresh_token: n.refresh_token }));
    for (const jti of [g.access_jti, n.access_jti]) {
      assert.equal(redis('GET', `kreide:revoked:jti:${jti}`), '1');
      await until_published(sub, jti);
    }
  } finally {
    sub.close();
  }
  assert.equal(sql(`SELECT revoked_reason FROM identity.oidc_grants WHERE id = '${grantOf(g)}'`), 'revoked_by_client');
  assert.equal(redis('HGET', `kreide:rtf:${grantOf(g)}`, 'revoked'), 'revoked_by_client');
  refused(refresh(n.refresh_token), 'FAILED_PRECONDITION', 'oidc.invalid_grant');
  // Revoking an older token of the family, again, or nonsense: all fine.
  ok(gw('RevokeRefreshToken', { client_id: clients.wiki.client_id, refresh_token: g.refresh_token }));
  ok(gw('RevokeRefreshToken', { client_id: clients.wiki.client_id, refresh_token: n.refresh_token }));
  ok(gw('RevokeRefreshToken', { client_id: clients.wiki.client_id, refresh_token: randomBytes(32).toString('base64url') }));
  ok(gw('RevokeRefreshToken', { client_id: 'x', refresh_token: 'y' }));
});

test('what expired is cleaned up by the first flow call of a worker, then at most once a minute', async () => {
  // One worker, so which worker answers is no question.
  const t = await startSuite({ name: 'oidcflowclean', env: { KREIDE_REDIS_URL: s.redisUrl, KREIDE_WORKERS: '1' } });
  try {
    const q = (query) => execFileSync('psql', [t.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();
    const user = '0190b3c4-7d2e-7a11-9f00-00000000c1ea';
    const client = 'CLEANUPCLEANUPCLEANUP0';
    q(`INSERT INTO identity.users (id, username, given_name, family_name, display_name) VALUES ('${user}', 'cleo.clean', 'Cleo', 'Clean', 'Cleo Clean');
       INSERT INTO identity.oidc_clients (id, name, type, redirect_uris, grant_types, scopes, created_by)
         VALUES ('${client}', 'Cleanup', 'public', '{https://c.example.org/cb}', '{authorization_code}', '{openid}', 'test')`);
    const code = (n, expired, grant = 'NULL') => `INSERT INTO identity.oidc_codes (code_hash, client_id, user_id, redirect_uri, scope, session_id, auth_time, created_at, expires_at, used_at, grant_id)
       VALUES (decode('${sha256hex(`code${n}`)}', 'hex'), '${client}', '${user}', 'https://c.example.org/cb', 'openid', '${user}', 1,
       now() - interval '1 hour', now() ${expired ? '-' : '+'} interval '30 minutes', ${grant === 'NULL' ? 'NULL' : 'now()'}, ${grant === 'NULL' ? 'NULL' : `'${grant}'`})`;
    const grant = (id, created, refreshUntil) => `INSERT INTO identity.oidc_grants (id, client_id, user_id, scope, session_id, auth_time, created_at, refresh_until)
       VALUES ('${id}', '${client}', '${user}', 'openid', '${user}', 1, now() - interval '${created}', now() + interval '${refreshUntil}')`;
    const gOld = '0190b3c4-7d2e-7a11-9f00-0000000000a1'; // nothing live left: goes
    const gLive = '0190b3c4-7d2e-7a11-9f00-0000000000a2'; // its family may still refresh: stays
    q([
      code(1, true), code(2, false), grant(gOld, '2 hours', '-1 day'), grant(gLive, '2 hours', '1 day'), code(3, true, gOld), code(4, true, gLive),
      `INSERT INTO identity.oidc_access_tokens (jti, grant_id, created_at, expires_at) VALUES
         ('0190b3c4-7d2e-7a11-9f00-0000000000b1', '${gOld}', now() - interval '2 hours', now() - interval '1 hour'),
         ('0190b3c4-7d2e-7a11-9f00-0000000000b2', '${gLive}', now() - interval '5 minutes', now() + interval '5 minutes')`,
    ].join(';\n'));
    const counts = () => q(`SELECT (SELECT count(*) FROM identity.oidc_codes) || ' ' || (SELECT count(*) FROM identity.oidc_grants) || ' '
      || (SELECT count(*) FROM identity.oidc_access_tokens)`);
    assert.equal(counts(), '4 2 2');
    const call = () => t.rpc('kreide.identity.Identity/IssueAuthCode', JSON.stringify({ session_token: 'x', client_id: client }), { service: 'gateway' });
    refused(call(), 'NOT_FOUND', 'oidc.login_required');
    // Left: the live code 2, the code of the live grant (kept for replays), the
    // live grant with its live access token.
    assert.equal(counts(), '2 1 1');
    assert.equal(q(`SELECT count(*) FROM identity.oidc_grants WHERE id = '${gLive}'`), '1');
    // Within the minute the next call leaves a new expired code alone.
    q(code(5, true));
    refused(call(), 'NOT_FOUND', 'oidc.login_required');
    assert.equal(counts(), '3 1 1');
  } finally {
    await t.stop();
  }
});

// ------------------------------------------------------------------- TOTP

// Waits (polling the clock) until the current 30-second step has at least
// `margin` seconds left, so codes of the steps around it stay in the window
// while a test runs.
async function stepWithRoom(margin = 8) {
  await until(() => 30 - ((Date.now() / 1000) % 30) >= margin && (Date.now() / 1000) % 30 >= 1,
    { timeoutMs: 40000, intervalMs: 200, what: 'a TOTP step with room left' });
  return Math.floor(Date.now() / 1000 / 30);
}
const codeAt = (secret, step) => totp(secret, step * 30 * 1000 + 1000);
const b32decode = (text) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of text) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  return Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
};
const me = (p, token, body = {}) => api(`${s.url}/api/v1/me/totp${p}`, { method: 'POST', token, body });

test('a teacher sets up TOTP through the API, signs in with it, and switches it off again', async () => {
  const teacher = s.token({ sub: ids.teacher, schools: [`${ids.school}:teacher`] });
  const setup = await me('', teacher);
  assert.equal(setup.status, 200, setup.text);
  assert.match(setup.json.secret, /^[A-Z2-7]{32}$/);
  assert.equal(setup.json.otpauth_uri,
    `otpauth://totp/Kreide:tom.lehrer?secret=${setup.json.secret}&issuer=Kreide&algorithm=SHA1&digits=6&period=30`);
  const secret = b32decode(setup.json.secret);
  assert.equal(secret.length, 20);
  assert.equal(sql(`SELECT encode(totp_pending_secret, 'hex') || ' ' || (totp_secret IS NULL) FROM identity.users WHERE id = '${ids.teacher}'`),
    `${secret.toString('hex')} true`);
  // Pending is not on: sign-in still needs only the password.
  ok(startSession());

  const step = await stepWithRoom();
  for (const code of ['12345', 'abcdef', String((Number(codeAt(secret, step)) + 1) % 1e6).padStart(6, '0')]) {
    const r = await me('/confirm', teacher, { code });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'identity.totp_invalid');
    assert.equal(r.json.error.field, 'code');
  }
  const confirmed = await me('/confirm', teacher, { code: codeAt(secret, step - 1) });
  assert.equal(confirmed.status, 200, confirmed.text);
  assert.equal(sql(`SELECT (totp_secret IS NOT NULL) || ' ' || (totp_pending_secret IS NULL) || ' ' || totp_last_step FROM identity.users WHERE id = '${ids.teacher}'`),
    `true true ${step - 1}`);
  const again = await me('', teacher);
  assert.equal(again.status, 409, again.text);
  assert.equal(again.json.error.code, 'identity.totp_enabled');

  // Sign-in now asks for the code, after the password, and takes each code once.
  refused(startSession('tom.lehrer', 'falsch'), 'UNAUTHENTICATED', 'identity.bad_credentials');
  refused(startSession(), 'FAILED_PRECONDITION', 'credentials.totp_required');
  refused(startSession('tom.lehrer', PASSWORD, { totp: codeAt(secret, step - 1) }), 'FAILED_PRECONDITION', 'credentials.totp_required');
  const sess = ok(startSession('tom.lehrer', PASSWORD, { totp: codeAt(secret, step) }));
  assert.deepEqual(sess.amr, ['pwd', 'otp']);
  const replay = refused(startSession('tom.lehrer', PASSWORD, { totp: codeAt(secret, step) }), 'FAILED_PRECONDITION',
    'credentials.totp_required');
  assert.match(replay.message, /used already/);
  redis('DEL', 'kreide:throttle:acct:tom.lehrer');

  // Switching off takes a current code that was not used yet.
  const used = await me('/disable', teacher, { code: codeAt(secret, step) });
  assert.equal(used.status, 400, used.text);
  assert.equal(used.json.error.code, 'identity.totp_invalid');
  const off = await me('/disable', teacher, { code: codeAt(secret, step + 1) });
  assert.equal(off.status, 200, off.text);
  assert.equal(sql(`SELECT (totp_secret IS NULL) || ' ' || (totp_last_step IS NULL) FROM identity.users WHERE id = '${ids.teacher}'`), 'true true');
  assert.deepEqual(ok(startSession()).amr, ['pwd']);
  const offAgain = await me('/disable', teacher, { code: codeAt(secret, step + 1) });
  assert.equal(offAgain.status, 409, offAgain.text);
  assert.equal(offAgain.json.error.code, 'identity.totp_not_enabled');
  redis('DEL', 'kreide:throttle:acct:tom.lehrer');
});

test('a pending TOTP secret waits 15 minutes; confirming needs one', async () => {
  const teacher = s.token({ sub: ids.teacher, schools: [`${ids.school}:teacher`] });
  const none = await me('/confirm', teacher, { code: '123456' });
  assert.equal(none.status, 409, none.text);
  assert.equal(none.json.error.code, 'identity.totp_not_pending');
  const setup = await me('', teacher);
  assert.equal(setup.status, 200, setup.text);
  // A second setup replaces the first secret.
  const second = await me('', teacher);
  assert.notEqual(second.json.secret, setup.json.secret);
  const step = await stepWithRoom();
  const stale = await me('/confirm', teacher, { code: codeAt(b32decode(setup.json.secret), step) });
  assert.equal(stale.status, 400, stale.text);
  sql(`UPDATE identity.users SET totp_pending_at = now() - interval '16 minutes' WHERE id = '${ids.teacher}'`);
  const late = await me('/confirm', teacher, { code: codeAt(b32decode(second.json.secret), step) });
  assert.equal(late.status, 409, late.text);
  assert.equal(late.json.error.code, 'identity.totp_not_pending');
  assert.equal(sql(`SELECT totp_secret IS NULL FROM identity.users WHERE id = '${ids.teacher}'`), 't');
});

test('pupils, parents and callers who are no person cannot set up TOTP', async () => {
  const pupil = await post('/api/v1/users', {
    username: 'pia.schuelerin', given_name: 'Pia', family_name: 'Schulz', contexts: [{ school_id: ids.school, role: 'PUPIL' }],
  });
  const parent = await post('/api/v1/users', {
    username: 'pete.vater', given_name: 'Pete', family_name: 'Schulz', contexts: [{ school_id: ids.school, role: 'PARENT' }],
  });
  // Even a token claiming another role: identity goes by the directory.
  for (const [id, role] of [[pupil.json.id, 'pupil'], [parent.json.id, 'parent'], [pupil.json.id, 'teacher']]) {
    const t = s.token({ sub: id, schools: [`${ids.school}:${role}`] });
    for (const p of ['', '/confirm']) {
      const r = await me(p, t, p ? { code: '123456' } : {});
      assert.equal(r.status, 403, `${role} ${p}: ${r.text}`);
      assert.equal(r.json.error.code, 'identity.forbidden');
    }
  }
  assert.equal(sql(`SELECT count(*) FROM identity.users WHERE totp_pending_secret IS NOT NULL AND id IN ('${pupil.json.id}', '${parent.json.id}')`), '0');
  const r = await me('', op);
  assert.equal(r.status, 403, r.text);
  assert.equal((await me('', undefined)).status, 401);
  // Over RPC: a service is no person either.
  refused(gw('SetupTotp', {}), 'PERMISSION_DENIED', 'identity.forbidden');
});

test('guessing the code to switch TOTP off is throttled per account', async () => {
  const teacher = s.token({ sub: ids.teacher, schools: [`${ids.school}:teacher`] });
  const setup = await me('', teacher);
  const secret = b32decode(setup.json.secret);
  const step = await stepWithRoom();
  assert.equal((await me('/confirm', teacher, { code: codeAt(secret, step) })).status, 200);
  try {
    const wrong = String((Number(codeAt(secret, step + 1)) + 1) % 1e6).padStart(6, '0');
    let throttled;
    for (let i = 0; i < 8 && !throttled; i++) {
      const r = await me('/disable', teacher, { code: wrong });
      if (r.status === 429) throttled = r;
      else assert.equal(r.json.error.code, 'identity.totp_invalid', r.text);
    }
    assert.ok(throttled, 'wrong codes are held back after a few');
    assert.equal(throttled.json.error.code, 'identity.throttled');
    assert.equal(sql(`SELECT totp_secret IS NOT NULL FROM identity.users WHERE id = '${ids.teacher}'`), 't');
  } finally {
    redis('DEL', 'kreide:throttle:acct:tom.lehrer');
    sql(`UPDATE identity.users SET totp_secret = NULL, totp_last_step = NULL, totp_enabled_at = NULL WHERE id = '${ids.teacher}'`);
  }
});
