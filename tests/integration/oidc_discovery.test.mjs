// The OpenID Connect provider's public surface on a running gateway:
// discovery, the JWK Set (checked with Node's own crypto against a token the
// operator tool signs) and the server-rendered sign-in pages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { startSuite, api } from '../lib/kreide.mjs';

let s;
before(async () => {
  s = await startSuite({ name: 'oidcdisc' });
});
after(async () => s && s.stop());

const b64url = (text) => Buffer.from(text, 'base64url');

function verifyWithJwks(token, jwks) {
  const [h, p, sig] = token.split('.');
  const header = JSON.parse(b64url(h).toString());
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `no key ${header.kid} in the JWK Set`);
  assert.equal(header.alg, jwk.alg);
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  return verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, b64url(sig));
}

test('the discovery document names the issuer and every endpoint under it', async () => {
  const r = await api(`${s.url}/.well-known/openid-configuration`);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.equal(r.headers.get('cache-control'), 'public, max-age=300');
  const d = r.json;
  assert.equal(d.issuer, s.url); // KREIDE_ISSUER, exactly
  const endpoints = ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri',
    'end_session_endpoint', 'revocation_endpoint', 'introspection_endpoint'];
  for (const e of endpoints) {
    assert.equal(typeof d[e], 'string', e);
    assert.ok(d[e].startsWith(`${d.issuer}/`), `${e} ${d[e]} is not under ${d.issuer}`);
    assert.doesNotThrow(() => new URL(d[e]), e);
  }
  assert.equal(new Set(endpoints.map((e) => d[e])).size, endpoints.length, 'endpoints are distinct');
  assert.deepEqual(d.response_types_supported, ['code']);
  assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(d.subject_types_supported, ['public']);
  assert.deepEqual([...d.grant_types_supported].sort(), ['authorization_code', 'client_credentials', 'refresh_token']);
  assert.deepEqual([...d.id_token_signing_alg_values_supported].sort(), ['ES256', 'RS256']);
  assert.deepEqual([...d.token_endpoint_auth_methods_supported].sort(),
    ['client_secret_basic', 'client_secret_post', 'none']);
  for (const scope of ['openid', 'profile', 'school', 'offline_access']) assert.ok(d.scopes_supported.includes(scope), scope);
  for (const claim of ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'name', 'given_name', 'family_name',
    'preferred_username', 'urn:schulconnex:de:personenkontext:rolle',
    'urn:schulconnex:de:personenkontext:organisation:kennung']) {
    assert.ok(d.claims_supported.includes(claim), claim);
  }
  for (const p of ['none', 'login']) assert.ok(d.prompt_values_supported.includes(p), p);
  assert.equal(d.authorization_response_iss_parameter_supported, true);
  assert.equal(d.request_uri_parameter_supported, false);
});

test('the JWK Set holds the suite key and verifies a token kreidectl signed', async () => {
  const d = (await api(`${s.url}/.well-known/openid-configuration`)).json;
  const r = await api(d.jwks_uri);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/(jwk-set\+)?json/);
  const jwks = r.json;
  const key = jwks.keys.find((k) => k.kid === 'test1');
  assert.ok(key, r.text);
  assert.equal(key.kty, 'EC');
  assert.equal(key.crv, 'P-256');
  assert.equal(key.alg, 'ES256');
  assert.equal(key.use, 'sig');
  for (const k of jwks.keys) assert.equal(k.d, undefined, 'a private part is published');

  const sub = '01890000-0000-7000-8000-000000000042';
  const token = s.token({ roles: ['operator'], sub });
  assert.equal(verifyWithJwks(token, jwks), true);
  const claims = JSON.parse(b64url(token.split('.')[1]).toString());
  assert.equal(claims.iss, d.issuer);
  assert.equal(claims.sub, sub);

  // another subject in the payload and the same key refuses it
  const [h, p, sig] = token.split('.');
  const tampered = JSON.parse(b64url(p).toString());
  tampered.sub = '01890000-0000-7000-8000-000000000043';
  assert.equal(verifyWithJwks(`${h}.${Buffer.from(JSON.stringify(tampered)).toString('base64url')}.${sig}`, jwks), false);
});

test('discovery and JWKS answer only GET and HEAD', async () => {
  for (const path of ['/.well-known/openid-configuration', '/.well-known/jwks.json']) {
    const r = await api(`${s.url}${path}`, { method: 'POST', body: {} });
    assert.equal(r.status, 405, path);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
    assert.equal(r.json.error.code, 'oidc.method_not_allowed');
    const h = await fetch(`${s.url}${path}`, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal((await h.text()).length, 0);
  }
});

function assertHtmlHeaders(r) {
  assert.match(r.headers.get('content-type'), /^text\/html; charset=utf-8$/);
  assert.equal(r.headers.get('content-security-policy'),
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.match(r.headers.get('vary'), /accept-language/i);
}

test('the login page is German by default and English when asked', async () => {
  const de = await api(`${s.url}/oidc/login`);
  assert.equal(de.status, 200);
  assertHtmlHeaders(de);
  assert.equal(de.headers.get('content-language'), 'de');
  assert.match(de.text, /^<!DOCTYPE html>\n<html lang="de">/);
  assert.match(de.text, /<h1>Anmelden<\/h1>/);
  assert.match(de.text, /<label for="username">Benutzername<\/label>/);
  assert.match(de.text, /autocomplete="current-password"/);
  assert.doesNotMatch(de.text, /<script/i);

  const en = await api(`${s.url}/oidc/login`, { headers: { 'accept-language': 'en-GB,en;q=0.9,de;q=0.5' } });
  assert.equal(en.status, 200);
  assertHtmlHeaders(en);
  assert.equal(en.headers.get('content-language'), 'en');
  assert.match(en.text, /<html lang="en">/);
  assert.match(en.text, /<h1>Sign in<\/h1>/);

  const browserDe = await api(`${s.url}/oidc/login`, { headers: { 'accept-language': 'de-DE,de;q=0.9,en;q=0.8' } });
  assert.match(browserDe.text, /<html lang="de">/);
  const ui = await api(`${s.url}/oidc/login?ui_locales=en`, { headers: { 'accept-language': 'de' } });
  assert.match(ui.text, /<html lang="en">/);
});

test('a hostile login_hint comes back as text, never as markup', async () => {
  const hint = '"><script>alert(1)</script><img src=x onerror=alert(2)>';
  const r = await api(`${s.url}/oidc/login?login_hint=${encodeURIComponent(hint)}`);
  assert.equal(r.status, 200);
  assert.doesNotMatch(r.text, /<script/i);
  assert.doesNotMatch(r.text, /<img/i);
  assert.ok(r.text.includes('value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"'),
    r.text);
});

test('the other pages render, and errors are pages too', async () => {
  const enroll = await api(`${s.url}/oidc/enroll`);
  assert.equal(enroll.status, 200);
  assertHtmlHeaders(enroll);
  assert.ok(enroll.text.includes('autocomplete="one-time-code"'));
  // consent exists only as the answer to a pending request
  const consent = await api(`${s.url}/oidc/consent`);
  assert.equal(consent.status, 405);
  assert.equal(consent.headers.get('allow'), 'POST');
  assertHtmlHeaders(consent);
  const missing = await api(`${s.url}/oidc/nothing-here`);
  assert.equal(missing.status, 404);
  assertHtmlHeaders(missing);
  assert.match(missing.text, /Diese Seite gibt es nicht/);

  // OAuth forbids repeated parameters; the page says so without echoing them
  const dup = await api(`${s.url}/oidc/login?login_hint=a&login_hint=%3Cb%3E`);
  assert.equal(dup.status, 400);
  assertHtmlHeaders(dup);
  assert.doesNotMatch(dup.text, /<b>/);

  for (const path of ['/oidc/nothing-here', '/oidc/error', '/oidc/login/x', '/oidc/authorizeX']) {
    const r = await api(`${s.url}${path}`);
    assert.equal(r.status, 404, path);
    assertHtmlHeaders(r);
  }

  // a form posted without the CSRF cookie changes nothing
  const post = await api(`${s.url}/oidc/login`, { method: 'POST', raw: 'username=a&password=b',
    headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(post.status, 403);
  assertHtmlHeaders(post);
  const put = await api(`${s.url}/oidc/login`, { method: 'PUT', raw: 'x' });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get('allow'), 'GET, HEAD, POST');
  assertHtmlHeaders(put);
});
