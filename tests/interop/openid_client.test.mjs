// The npm library `openid-client` (unmodified; plain http allowed with its
// documented allowInsecureRequests, since the suite listens on loopback) as
// the relying party of the whole authorization-code flow: discovery,
// authorization code with PKCE after a scripted sign-in, the token
// exchange with the library's own ID token validation, userinfo, refresh
// with rotation, revocation, client_credentials and RP-initiated logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { startSuite, api, until } from '../lib/kreide.mjs';
import { signIn, follow, CookieJar } from '../lib/signin.mjs';

let s;
let op;
const ids = {};
let client; // confidential: authorization_code, refresh_token, client_credentials
let config; // openid-client's configuration for it
const browser = new CookieJar(); // the person's browser, signed in once
const USER = { username: 'jana.jansen', password: 'ein langes sicheres passwort' };
const REDIRECT = 'http://127.0.0.1:8765/callback';
const LOGGED_OUT = 'http://127.0.0.1:8765/logged-out';

async function post(path, body, token = op) {
  const r = await api(`${s.url}${path}`, { method: 'POST', token, body });
  assert.ok(r.status === 200 || r.status === 201, `${path}: ${r.status} ${r.text}`);
  return r.json;
}

before(async () => {
  s = await startSuite({ name: 'interopoidc' });
  op = s.token({ roles: ['operator'] });
  ids.school = (await post('/api/v1/schools', { name: 'Gymnasium Am Hafen', kind: 'SCHOOL', kennung: '654321' })).id;
  ids.user = (await post('/api/v1/users', {
    username: USER.username, given_name: 'Jana', family_name: 'Jansen', contexts: [{ school_id: ids.school, role: 'TEACHER' }],
  })).id;
  ids.group = (await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLASS', name: '7c', school_year: '2026/27' })).id;
  await post(`/api/v1/groups/${ids.group}/members`, { user_id: ids.user, role: 'LEADER' });
  const { code } = await post(`/api/v1/users/${ids.user}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
  await post('/api/v1/enroll', { username: USER.username, code, password: USER.password }, null);

  client = await post('/api/v1/oidc/clients', {
    name: 'Lernplattform', type: 'CONFIDENTIAL', redirect_uris: [REDIRECT], post_logout_redirect_uris: [LOGGED_OUT],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    scopes: ['openid', 'profile', 'school', 'offline_access', 'reports'],
  });
  config = await oidc.discovery(new URL(s.url), client.client_id, undefined, oidc.ClientSecretBasic(client.client_secret),
    { execute: [oidc.allowInsecureRequests] });
});

after(async () => {
  await s?.stop();
});

// One authorization request in `browser` (signing in or consenting where
// the provider asks), redeemed with openid-client. Returns the tokens and
// the checks used.
async function codeFlow({ scope = 'openid profile school offline_access', extra = {}, cfg = config } = {}) {
  const checks = {
    pkceCodeVerifier: oidc.randomPKCECodeVerifier(),
    expectedState: oidc.randomState(),
    expectedNonce: oidc.randomNonce(),
  };
  const url = oidc.buildAuthorizationUrl(cfg, {
    redirect_uri: REDIRECT, scope, state: checks.expectedState, nonce: checks.expectedNonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(checks.pkceCodeVerifier), code_challenge_method: 'S256', ...extra,
  });
  const { redirect, steps } = await signIn(url, { ...USER, redirectUri: REDIRECT, jar: browser });
  const tokens = await oidc.authorizationCodeGrant(cfg, redirect, checks);
  return { tokens, checks, redirect, steps };
}

// An openid-client error carrying an OAuth error code or HTTP status.
const oauthError = (error) => (e) => {
  assert.equal(e.error ?? e.cause?.error, error, `${e.name}: ${e.message}`);
  return true;
};
const httpStatus = (status) => (e) => {
  assert.equal(e.status ?? e.response?.status ?? e.cause?.status, status, `${e.name}: ${e.message}`);
  return true;
};

test('discovery: openid-client accepts the provider metadata', () => {
  const m = config.serverMetadata();
  assert.equal(m.issuer, s.url);
  assert.equal(m.authorization_endpoint, `${s.url}/oidc/authorize`);
  assert.equal(m.end_session_endpoint, `${s.url}/oidc/logout`);
  assert.ok(m.supportsPKCE());
});

let first; // the first sign-in's result, for the later tests

test('authorization code with PKCE: scripted sign-in, token exchange, ID token validated by the library', async () => {
  first = await codeFlow();
  const { tokens, checks, redirect, steps } = first;
  // A third-party client: the person signs in, then allows the scopes.
  assert.deepEqual(steps, ['login', 'consent']);
  // RFC 9207: the authorization response names the issuer.
  assert.equal(redirect.searchParams.get('iss'), s.url);
  assert.equal(redirect.searchParams.get('state'), checks.expectedState);
  assert.match(redirect.searchParams.get('code'), /^[A-Za-z0-9_-]{43}$/);
  // The person's browser now holds the SSO cookie.
  assert.ok(browser.get(s.url, 'kreide_sso'), 'the SSO cookie is set');

  assert.equal(tokens.token_type, 'bearer');
  assert.ok(tokens.expires_in > 0 && tokens.expires_in <= 600, String(tokens.expires_in));
  assert.ok(tokens.refresh_token, 'offline_access gives a refresh token');
  assert.deepEqual(tokens.scope.split(' ').sort(), ['offline_access', 'openid', 'profile', 'school']);

  const c = tokens.claims(); // signature, iss, aud, exp, iat, nonce checked by openid-client
  assert.equal(c.iss, s.url);
  assert.equal(c.sub, ids.user);
  assert.equal(c.aud, client.client_id);
  assert.equal(c.azp, client.client_id);
  assert.equal(c.nonce, checks.expectedNonce);
  assert.equal(typeof c.sid, 'string');
  assert.ok(Math.abs(c.auth_time - Date.now() / 1000) < 120, `auth_time ${c.auth_time}`);
  assert.equal(c.exp - c.iat, 600);
  assert.equal(c.preferred_username, USER.username);
  assert.equal(c.given_name, 'Jana');
  assert.equal(c.family_name, 'Jansen');
  assert.equal(c.name, 'Jana Jansen');
  assert.equal(c.schools.length, 1);
  const school = c.schools[0];
  assert.equal(school.school_id, ids.school);
  assert.equal(school.name, 'Gymnasium Am Hafen');
  assert.equal(school.kennung, '654321');
  assert.deepEqual(school.roles, ['teacher']);
  assert.deepEqual(school.schulconnex_roles, ['Lehr']);
  assert.deepEqual(school.groups, [{ group_id: ids.group, name: '7c', kind: 'class', role: 'leader' }]);
  assert.deepEqual(c['urn:schulconnex:de:personenkontext:organisation:kennung'], ['654321']);
  assert.deepEqual(c['urn:schulconnex:de:personenkontext:rolle'], ['Lehr']);
  assert.equal(typeof c.at_hash, 'string');
  const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url'));
  assert.equal(header.alg, 'ES256');

  // The access token is a person token the API accepts.
  const at = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
  assert.equal(at.sub, ids.user);
  assert.equal(at.client_id, client.client_id);
  assert.equal(at.aud, 'kreide');
  const dir = await api(`${s.url}/api/v1/schools/${ids.school}/directory`, { token: tokens.access_token });
  assert.equal(dir.status, 200, dir.text);
  assert.ok(dir.json.people.some((p) => p.username === USER.username));
});

test('userinfo returns the person claims for the expected subject', async () => {
  const info = await oidc.fetchUserInfo(config, first.tokens.access_token, ids.user);
  assert.equal(info.sub, ids.user);
  assert.equal(info.preferred_username, USER.username);
  assert.equal(info.name, 'Jana Jansen');
  assert.equal(info.schools[0].school_id, ids.school);
  for (const k of ['iss', 'aud', 'nonce', 'exp']) assert.equal(info[k], undefined, k);
  // A wrong expected subject is caught by the library.
  await assert.rejects(oidc.fetchUserInfo(config, first.tokens.access_token, '01890000-0000-7000-8000-000000000000'));
  // Without the school scope, no school claims.
  const { tokens } = await codeFlow({ scope: 'openid profile' });
  const slim = await oidc.fetchUserInfo(config, tokens.access_token, ids.user);
  assert.equal(slim.preferred_username, USER.username);
  assert.equal(slim.schools, undefined);
  assert.equal(tokens.claims().schools, undefined);
  assert.equal(tokens.refresh_token, undefined, 'no offline_access, no refresh token');
});

test('a second authorization signs in silently with the SSO cookie', async () => {
  const { tokens, steps } = await codeFlow({ extra: { prompt: 'none' } });
  assert.deepEqual(steps, [], 'no login page, no consent page');
  assert.equal(tokens.claims().sub, ids.user);
  assert.equal(tokens.claims().sid, first.tokens.claims().sid, 'the same SSO session');
});

test('refresh rotates the refresh token; the old one then fails', async () => {
  const { tokens } = await codeFlow();
  const next = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(next.refresh_token && next.refresh_token !== tokens.refresh_token, 'a new refresh token');
  assert.notEqual(next.access_token, tokens.access_token);
  const info = await oidc.fetchUserInfo(config, next.access_token, ids.user);
  assert.equal(info.sub, ids.user);
  if (next.id_token) assert.equal(next.claims().sub, ids.user);
  await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token), oauthError('invalid_grant'));
});

test('revocation: a revoked access token and a revoked refresh token stop working', async () => {
  const { tokens } = await codeFlow();
  assert.equal((await oidc.fetchUserInfo(config, tokens.access_token, ids.user)).sub, ids.user);
  await oidc.tokenRevocation(config, tokens.access_token);
  // Every loop of the gateway hears of it a moment later.
  await until(async () => (await api(`${s.url}/oidc/userinfo`, { token: tokens.access_token })).status === 401,
    { what: 'the revocation to reach every loop' });
  await assert.rejects(oidc.fetchUserInfo(config, tokens.access_token, ids.user), httpStatus(401));
  await oidc.tokenRevocation(config, tokens.refresh_token);
  await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token), oauthError('invalid_grant'));
});

test('a client registered for RS256 gets RS256 ID tokens, which the library verifies with the JWK Set', async () => {
  const rs = await post('/api/v1/oidc/clients', {
    name: 'Altes Portal', type: 'CONFIDENTIAL', redirect_uris: [REDIRECT], id_token_alg: 'RS256', scopes: ['openid', 'profile'],
  });
  assert.equal(rs.id_token_alg, 'RS256');
  const cfg = await oidc.discovery(new URL(s.url), rs.client_id, { id_token_signed_response_alg: 'RS256' },
    oidc.ClientSecretPost(rs.client_secret), { execute: [oidc.allowInsecureRequests] });
  const { tokens, steps } = await codeFlow({ scope: 'openid profile', cfg });
  assert.deepEqual(steps, ['consent'], 'signed in already; this client asks for consent once');
  const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url'));
  assert.equal(header.alg, 'RS256');
  assert.equal(tokens.claims().aud, rs.client_id);
  assert.equal(tokens.claims().preferred_username, USER.username);
  // The access token stays ES256, for the API.
  assert.equal(JSON.parse(Buffer.from(tokens.access_token.split('.')[0], 'base64url')).alg, 'ES256');
  assert.equal((await oidc.fetchUserInfo(cfg, tokens.access_token, ids.user)).sub, ids.user);
});

test('client_credentials with the same client', async () => {
  const t = await oidc.clientCredentialsGrant(config, { scope: 'reports' });
  assert.equal(t.scope, 'reports');
  const claims = JSON.parse(Buffer.from(t.access_token.split('.')[1], 'base64url'));
  assert.equal(claims.sub, client.client_id);
  assert.equal(claims.kind, 'service');
  // It acts for no one: userinfo refuses it.
  await assert.rejects(oidc.fetchUserInfo(config, t.access_token, client.client_id));
});

test('RP-initiated logout ends the SSO session: prompt=none then answers login_required', async () => {
  const { tokens } = await codeFlow();
  const sso = browser.get(s.url, 'kreide_sso');
  assert.ok(sso);
  const state = oidc.randomState();
  const end = oidc.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token, post_logout_redirect_uri: LOGGED_OUT, state,
  });
  // With a valid hint of the person signed in, the GET ends the session at
  // once: 303 to the registered post-logout URI, the cookie cleared.
  const r = await follow(browser, end.href, { stopAt: LOGGED_OUT });
  assert.ok(r.redirect, `not redirected to ${LOGGED_OUT}: ${r.page?.status} ${r.page?.text.slice(0, 300)}`);
  assert.deepEqual(r.hops.map((h) => h.status), [303]);
  assert.equal(r.redirect.origin + r.redirect.pathname, LOGGED_OUT);
  assert.equal(browser.get(s.url, 'kreide_sso'), undefined, 'the SSO cookie is cleared');
  assert.equal(r.redirect.searchParams.get('state'), state);

  // Even a browser that kept the old cookie is signed in no more: the
  // session behind it is gone.
  browser.set(s.url, 'kreide_sso', sso);
  const checks = { expectedState: oidc.randomState(), pkceCodeVerifier: oidc.randomPKCECodeVerifier() };
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT, scope: 'openid', state: checks.expectedState, prompt: 'none',
    code_challenge: await oidc.calculatePKCECodeChallenge(checks.pkceCodeVerifier), code_challenge_method: 'S256',
  });
  const silent = await follow(browser, url.href, { stopAt: REDIRECT });
  assert.ok(silent.redirect, `prompt=none answers the client: ${silent.page?.status}`);
  assert.equal(silent.redirect.searchParams.get('error'), 'login_required');
  assert.equal(silent.redirect.searchParams.get('code'), null);
  await assert.rejects(oidc.authorizationCodeGrant(config, silent.redirect, checks), oauthError('login_required'));
});
