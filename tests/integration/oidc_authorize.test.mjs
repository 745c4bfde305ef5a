// The browser's side of the OpenID Connect provider, driven like a browser:
// fetch without following redirects and a cookie jar of our own. A relying
// party sends the person to /oidc/authorize; the login page (CSRF token and
// the sealed pending request read from the HTML), the consent page and the
// SSO cookie lead to a code at the registered redirect URI, which identity
// then redeems. prompt, max_age, errors before and after the redirect URI
// matched, forged forms, and RP-Initiated Logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes, sign } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startSuite, api, redisDb } from '../lib/kreide.mjs';

let s;
let op;
const ids = {};
const clients = {};
const PASSWORD = 'drei kleine wolken am himmel';
const WIKI_CB = 'https://wiki.example.org/cb';
const APP_CB = 'http://127.0.0.1:4711/cb';

const sql = (query) => execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();
const s256 = (verifier) => createHash('sha256').update(verifier).digest('base64url');

// An identity RPC as the gateway sends it.
function gw(method, body) {
  return s.rpc(`kreide.identity.Identity/${method}`, JSON.stringify(body), { service: 'gateway' });
}

// RFC 6238 with HMAC-SHA1, 30-second steps, 6 digits.
function totp(secret, at = Date.now()) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac('sha1', secret).update(msg).digest();
  const off = mac[19] & 0x0f;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1e6).padStart(6, '0');
}

// ---------------------------------------------------------------- browser

const unescapeHtml = (v) => v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<')
  .replace(/&gt;/g, '>').replace(/&amp;/g, '&');

// The value of a form field in a page, or undefined.
function field(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  return m ? unescapeHtml(m[1]) : undefined;
}

// A browser of one person: cookies kept by name, redirects not followed.
class Browser {
  constructor(lang = 'de') {
    this.jar = new Map();
    this.set = []; // every Set-Cookie of the last response
    this.lang = lang;
  }
  cookieHeader() {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  remember(res) {
    this.set = res.headers.getSetCookie();
    for (const c of this.set) {
      const [pair, ...attrs] = c.split(';').map((x) => x.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (attrs.some((a) => /^max-age=0$/i.test(a)) || value === '') this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }
  async request(path, { method = 'GET', form, headers = {} } = {}) {
    const h = { 'accept-language': this.lang, ...headers };
    if (this.jar.size) h.cookie = this.cookieHeader();
    let body;
    if (form !== undefined) {
      body = typeof form === 'string' ? form : new URLSearchParams(form).toString();
      h['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(path.startsWith('http') ? path : `${s.url}${path}`, { method, headers: h, body, redirect: 'manual' });
    this.remember(res);
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, location: res.headers.get('location') };
  }
  get(path, opts) {
    return this.request(path, opts);
  }
  post(path, form, opts = {}) {
    return this.request(path, { ...opts, method: 'POST', form });
  }
  setCookie(name) {
    return this.set.find((c) => c.startsWith(`${name}=`));
  }
}

function authorizeUrl(params) {
  return `/oidc/authorize?${new URLSearchParams(params).toString()}`;
}

function wikiParams(extra = {}) {
  return {
    response_type: 'code', client_id: clients.wiki.client_id, redirect_uri: WIKI_CB, scope: 'openid profile',
    state: `st-${randomBytes(6).toString('hex')}`, nonce: `n-${randomBytes(6).toString('hex')}`, ...extra,
  };
}

function appParams(verifier, extra = {}) {
  return {
    response_type: 'code', client_id: clients.app.client_id, redirect_uri: APP_CB, scope: 'openid profile',
    state: `st-${randomBytes(6).toString('hex')}`, code_challenge: s256(verifier), code_challenge_method: 'S256', ...extra,
  };
}

function assertPage(r, status) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type'), /^text\/html; charset=utf-8$/);
  assert.equal(r.headers.get('content-security-policy'),
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'");
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.location, null);
}

function assertLoginPage(r, status = 200) {
  assertPage(r, status);
  assert.match(r.text, /<form method="post" action="\/oidc\/login">/);
  assert.ok(field(r.text, 'csrf'), 'the login form carries a CSRF token');
}

// The redirect back to a client: its parameters, checked for state and iss.
function callback(r, base, state) {
  assert.equal(r.status, 303, r.text);
  assert.ok(r.location, 'a Location header');
  assert.ok(r.location.startsWith(`${base}?`), r.location);
  const q = new URL(r.location).searchParams;
  assert.equal(q.get('iss'), s.url);
  if (state !== undefined) assert.equal(q.get('state'), state);
  return q;
}

// Signs in on a login page; returns the answer to the POST.
function login(b, page, { username = 'lena.schmidt', password = PASSWORD, totp: code } = {}) {
  const form = { username, password, csrf: field(page.text, 'csrf') };
  const request = field(page.text, 'request');
  if (request !== undefined) form.request = request;
  if (code !== undefined) form.totp = code;
  return b.post('/oidc/login', form);
}

function consent(b, page, decision) {
  return b.post('/oidc/consent', { csrf: field(page.text, 'csrf'), request: field(page.text, 'request'), decision });
}

// An ID token as the token endpoint signs it: ES256 with the suite's key.
function idToken(claims, key = readFileSync(path.join(s.keysDir, 'test1.pem'))) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'ES256', kid: 'test1', typ: 'JWT' })}.${enc(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

function redeem(client, code, redirectUri, verifier) {
  const body = { client_id: client.client_id, code, redirect_uri: redirectUri };
  if (verifier) body.code_verifier = verifier;
  return gw('RedeemAuthCode', body);
}

// ------------------------------------------------------------------ setup

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

async function client(body) {
  const r = await post('/api/v1/oidc/clients', body);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

before(async () => {
  s = await startSuite({ name: 'oidcauthz', env: { KREIDE_REDIS_URL: redisDb(13) } });
  op = s.token({ roles: ['operator'] });
  const school = await post('/api/v1/schools', { name: 'Grundschule am Hang', kind: 'SCHOOL', kennung: 'AUTHZ-1' });
  assert.equal(school.status, 201, school.text);
  ids.school = school.json.id;
  ids.lena = await person('lena.schmidt', 'Lena', 'Schmidt', 'PUPIL');
  ids.tom = await person('tom.lehrer', 'Tom', 'Lehmann', 'TEACHER');
  ids.paul = await person('paul.peters', 'Paul', 'Peters', 'PUPIL');
  clients.wiki = await client({
    name: 'Schulwiki „Am Hang“', type: 'CONFIDENTIAL', redirect_uris: [WIKI_CB],
    grant_types: ['authorization_code'], scopes: ['openid', 'profile', 'school'],
    post_logout_redirect_uris: ['https://wiki.example.org/bye'],
  });
  clients.app = await client({
    name: 'Kreide App', type: 'PUBLIC', redirect_uris: [APP_CB], scopes: ['openid', 'profile'], first_party: true,
  });
});
after(async () => s && s.stop());

// ------------------------------------------------------------------ tests

test('a first sign-in: the login page, consent, then a code identity redeems once', async () => {
  const b = new Browser('en');
  const params = wikiParams({ login_hint: 'lena.schmidt' });
  const page = await b.get(authorizeUrl(params));
  assertLoginPage(page);
  assert.match(page.text, /<html lang="en">/);
  assert.ok(page.text.includes('to continue to “Schulwiki „Am Hang“”'), page.text);
  assert.match(page.text, /name="username" type="text" autocomplete="username" required value="lena.schmidt"/);
  // the CSRF cookie the form's token must equal
  const csrfCookie = b.setCookie('kreide_csrf');
  assert.ok(csrfCookie, 'the page sets the CSRF cookie');
  assert.match(csrfCookie, /; Path=\/oidc; HttpOnly; SameSite=Lax$/);
  assert.equal(b.jar.get('kreide_csrf'), field(page.text, 'csrf'));
  assert.ok(field(page.text, 'request'), 'the pending request travels in the form');

  // a wrong password: the page again, with a message, and no session
  const wrong = await login(b, page, { password: 'falsches passwort' });
  assertLoginPage(wrong);
  assert.match(wrong.text, /<p class="error" role="alert" id="form-error">The user name or password is wrong.<\/p>/);
  assert.match(wrong.text, /value="lena.schmidt"/);
  assert.doesNotMatch(wrong.text, /falsches passwort/);
  assert.equal(b.jar.get('kreide_sso'), undefined);
  assert.equal(b.setCookie('kreide_csrf'), undefined, 'the CSRF cookie is kept');

  // the right one: a session cookie and, for a third-party client, consent
  const ok = await login(b, wrong);
  assertPage(ok, 200);
  const sso = b.setCookie('kreide_sso');
  assert.ok(sso, 'the session cookie is set');
  const maxAge = Number(sso.match(/; Max-Age=(\d+)/)[1]);
  assert.ok(maxAge > 43000 && maxAge <= 43200, sso);
  assert.match(sso, /^kreide_sso=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax$/); // no Secure on http
  assert.match(ok.text, /<form method="post" action="\/oidc\/consent">/);
  assert.ok(ok.text.includes('“Schulwiki „Am Hang“” would like to:'), ok.text);
  assert.match(ok.text, /first name, last name and user name/);
  const session = gw('GetSession', { session_token: b.jar.get('kreide_sso') });
  assert.equal(session.status, 'OK', JSON.stringify(session));
  assert.equal(session.body.user_id, ids.lena);

  const allowed = await consent(b, ok, 'allow');
  const q = callback(allowed, WIKI_CB, params.state);
  const code = q.get('code');
  assert.match(code, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(allowed.headers.get('cache-control'), 'no-store');

  // the code is identity's: bound to the client, the redirect URI and the nonce
  const grant = redeem(clients.wiki, code, WIKI_CB);
  assert.equal(grant.status, 'OK', JSON.stringify(grant));
  assert.equal(grant.body.claims.sub, ids.lena);
  assert.equal(grant.body.nonce, params.nonce);
  assert.equal(grant.body.scope, 'openid profile');
  assert.equal(grant.body.session_id, session.body.session_id);
  assert.equal(redeem(clients.wiki, code, WIKI_CB).status, 'FAILED_PRECONDITION'); // once
});

// A browser signed in as Lena, consent for the wiki given.
async function signedIn(user = 'lena.schmidt', lang = 'de') {
  const b = new Browser(lang);
  const page = await b.get(authorizeUrl(wikiParams()));
  assertLoginPage(page);
  const next = await login(b, page, { username: user });
  if (next.status === 200) {
    const done = await consent(b, next, 'allow');
    assert.equal(done.status, 303, done.text);
  } else {
    assert.equal(next.status, 303, next.text);
  }
  assert.ok(b.jar.get('kreide_sso'));
  return b;
}

test('single sign-on: with the session cookie the code comes at once', async () => {
  const b = await signedIn();
  const params = wikiParams({ scope: 'openid' }); // a subset of what was allowed
  const q = callback(await b.get(authorizeUrl(params)), WIKI_CB, params.state);
  assert.equal(redeem(clients.wiki, q.get('code'), WIKI_CB).body.claims.sub, ids.lena);

  // the first-party app never asks for consent; its public client proves PKCE
  const verifier = randomBytes(32).toString('base64url');
  const app = appParams(verifier);
  const r = callback(await b.get(authorizeUrl(app)), APP_CB, app.state);
  assert.equal(redeem(clients.app, r.get('code'), APP_CB, 'x'.repeat(43)).status, 'FAILED_PRECONDITION');
  const r2 = callback(await b.get(authorizeUrl(appParams(verifier, { state: app.state }))), APP_CB, app.state);
  const grant = redeem(clients.app, r2.get('code'), APP_CB, verifier);
  assert.equal(grant.status, 'OK', JSON.stringify(grant));
  assert.equal(grant.body.claims.sub, ids.lena);

  // an authorization request may also be a form post (Core 1.0 section 3.1.2.1)
  const form = wikiParams({ scope: 'openid' });
  callback(await b.post('/oidc/authorize', form), WIKI_CB, form.state);
});

test('a new scope asks for consent again; prompt=consent asks anyway; deny sends access_denied', async () => {
  const b = await signedIn();
  const params = wikiParams({ scope: 'openid profile school' });
  const page = await b.get(authorizeUrl(params));
  assertPage(page, 200);
  assert.match(page.text, /action="\/oidc\/consent"/);
  assert.match(page.text, /Schulen, Rollen/);
  const denied = callback(await consent(b, page, 'deny'), WIKI_CB, params.state);
  assert.equal(denied.get('error'), 'access_denied');
  assert.equal(denied.get('code'), null);

  // prompt=none cannot ask: consent_required
  const none = wikiParams({ scope: 'openid profile school', prompt: 'none' });
  assert.equal(callback(await b.get(authorizeUrl(none)), WIKI_CB, none.state).get('error'), 'consent_required');

  // prompt=consent shows the page although consent was given
  const again = await b.get(authorizeUrl(wikiParams({ prompt: 'consent' })));
  assertPage(again, 200);
  assert.match(again.text, /name="decision" value="allow"/);
  // ... but never for the first-party app
  const verifier = randomBytes(32).toString('base64url');
  const app = appParams(verifier, { prompt: 'consent' });
  callback(await b.get(authorizeUrl(app)), APP_CB, app.state);

  // an unknown decision changes nothing
  const odd = await consent(b, again, 'maybe');
  assertPage(odd, 400);
});

test('prompt=none without a session answers login_required; prompt=login and max_age ask again', async () => {
  const fresh = new Browser();
  const none = wikiParams({ prompt: 'none' });
  const q = callback(await fresh.get(authorizeUrl(none)), WIKI_CB, none.state);
  assert.equal(q.get('error'), 'login_required');
  assert.equal(q.get('code'), null);

  const b = await signedIn();
  const withSession = wikiParams({ prompt: 'none' });
  assert.ok(callback(await b.get(authorizeUrl(withSession)), WIKI_CB, withSession.state).get('code'));

  const relogin = await b.get(authorizeUrl(wikiParams({ prompt: 'login' })));
  assertLoginPage(relogin);
  // a sign-in on it leads on to the code, not to another login page
  const params = wikiParams({ prompt: 'login', state: 'after-relogin' });
  const page = await b.get(authorizeUrl(params));
  callback(await login(b, page), WIKI_CB, 'after-relogin');

  assertLoginPage(await b.get(authorizeUrl(wikiParams({ max_age: '0' }))));
  const young = wikiParams({ max_age: '3600' });
  assert.ok(callback(await b.get(authorizeUrl(young)), WIKI_CB, young.state).get('code'));
  // max_age with prompt=none: login_required when the sign-in is too old
  const old = wikiParams({ max_age: '0', prompt: 'none' });
  assert.equal(callback(await b.get(authorizeUrl(old)), WIKI_CB, old.state).get('error'), 'login_required');
});

test('until the redirect URI matched, errors are pages and never redirects', async () => {
  const b = new Browser('en');
  const cases = [
    [{ ...wikiParams(), redirect_uri: 'https://evil.example.org/cb' }, /return address that is not registered/],
    [{ ...wikiParams(), redirect_uri: `${WIKI_CB}/` }, /return address that is not registered/],
    [{ ...wikiParams(), redirect_uri: 'https://WIKI.example.org/cb' }, /return address that is not registered/],
    [{ ...wikiParams(), client_id: 'AAAAAAAAAAAAAAAAAAAAAA' }, /This application is not known here/],
    [{ ...wikiParams(), client_id: undefined }, /incomplete or malformed/],
    [{ ...wikiParams(), redirect_uri: undefined }, /incomplete or malformed/],
  ];
  for (const [params, message] of cases) {
    const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined));
    const r = await b.get(authorizeUrl(clean));
    assertPage(r, 400);
    assert.match(r.text, message);
  }
  // a repeated parameter: nothing of the request can be trusted
  const dup = await b.get(`${authorizeUrl(wikiParams())}&redirect_uri=${encodeURIComponent('https://evil.example.org/cb')}`);
  assertPage(dup, 400);
  const put = await b.request(authorizeUrl(wikiParams()), { method: 'PUT' });
  assertPage(put, 405);
});

test('after the redirect URI matched, errors go back to the client with state and iss', async () => {
  const b = await signedIn();
  const cases = [
    [{ response_type: 'token' }, 'unsupported_response_type'],
    [{ response_type: undefined }, 'invalid_request'],
    [{ scope: 'profile' }, 'invalid_scope'],
    [{ scope: 'openid calendar' }, 'invalid_scope'],
    [{ code_challenge: s256('v'.repeat(43)), code_challenge_method: 'plain' }, 'invalid_request'],
    [{ code_challenge: 'too-short', code_challenge_method: 'S256' }, 'invalid_request'],
    [{ prompt: 'none login' }, 'invalid_request'],
    [{ max_age: '-1' }, 'invalid_request'],
    [{ request: 'eyJhbGciOiJub25lIn0.e30.' }, 'request_not_supported'],
  ];
  for (const [extra, error] of cases) {
    const params = Object.fromEntries(Object.entries(wikiParams(extra)).filter(([, v]) => v !== undefined));
    const q = callback(await b.get(authorizeUrl(params)), WIKI_CB, params.state);
    assert.equal(q.get('error'), error, JSON.stringify(extra));
    assert.ok(q.get('error_description'));
    assert.equal(q.get('code'), null);
  }
  // a public client without PKCE
  const app = appParams('x'.repeat(43), { code_challenge: undefined, code_challenge_method: undefined });
  const clean = Object.fromEntries(Object.entries(app).filter(([, v]) => v !== undefined));
  assert.equal(callback(await b.get(authorizeUrl(clean)), APP_CB, app.state).get('error'), 'invalid_request');
});

test('forms need the CSRF cookie and an unaltered request', async () => {
  const b = new Browser();
  const params = wikiParams();
  const page = await b.get(authorizeUrl(params));
  assertLoginPage(page);
  const request = field(page.text, 'request');
  const csrf = field(page.text, 'csrf');

  // no token, another token, no cookie: refused before anything is checked
  for (const form of [
    { username: 'lena.schmidt', password: PASSWORD, request },
    { username: 'lena.schmidt', password: PASSWORD, request, csrf: randomBytes(32).toString('base64url') },
  ]) {
    const r = await b.post('/oidc/login', form);
    assertPage(r, 403);
    assert.equal(b.setCookie('kreide_sso'), undefined);
  }
  const stranger = new Browser();
  const noCookie = await stranger.post('/oidc/login', { username: 'lena.schmidt', password: PASSWORD, request, csrf });
  assertPage(noCookie, 403);
  assert.equal(stranger.jar.get('kreide_sso'), undefined);

  // a request changed anywhere: refused
  const [kid, payload, mac] = request.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  claims.redirect_uri = 'https://evil.example.org/cb';
  const forged = `${kid}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${mac}`;
  for (const bad of [forged, `${request}x`, 'k1.e30.AAAA', `${kid}.${payload}.${'A'.repeat(43)}`]) {
    const r = await b.post('/oidc/login', { username: 'lena.schmidt', password: PASSWORD, request: bad, csrf });
    assertPage(r, 403);
    assert.equal(b.setCookie('kreide_sso'), undefined);
    assert.equal(r.location, null);
  }
  const consentForged = await b.post('/oidc/consent', { csrf, request: forged, decision: 'allow' });
  assertPage(consentForged, 403);
  const consentNoCsrf = await b.post('/oidc/consent', { request, decision: 'deny' });
  assertPage(consentNoCsrf, 403);

  // the untouched one still works (Lena allowed the wiki before)
  callback(await login(b, page), WIKI_CB, params.state);
});

test('a person with a second factor is asked for the code', async () => {
  const secret = randomBytes(20);
  sql(`UPDATE identity.users SET totp_secret = decode('${secret.toString('hex')}', 'hex') WHERE id = '${ids.tom}'`);
  try {
    const b = new Browser('en');
    const params = wikiParams();
    const page = await b.get(authorizeUrl(params));
    const asked = await login(b, page, { username: 'tom.lehrer' });
    assertLoginPage(asked);
    assert.match(asked.text, /role="alert" id="form-error">This account is also protected with an authenticator app/);
    assert.match(asked.text, /<label for="totp">/);
    assert.match(asked.text, /autocomplete="one-time-code"/);
    assert.equal(b.jar.get('kreide_sso'), undefined);
    const wrongCode = String((Number(totp(secret)) + 1) % 1e6).padStart(6, '0');
    const wrong = await login(b, asked, { username: 'tom.lehrer', totp: wrongCode });
    assertLoginPage(wrong);
    assert.match(wrong.text, /The code from the app is not right/);
    assert.match(wrong.text, /<label for="totp">/);
    const code = totp(secret);
    const done = await login(b, wrong, { username: 'tom.lehrer', totp: `${code.slice(0, 3)} ${code.slice(3)}` });
    assertPage(done, 200); // consent for the wiki
    assert.ok(b.jar.get('kreide_sso'));
    const session = gw('GetSession', { session_token: b.jar.get('kreide_sso') });
    assert.equal(session.body.user_id, ids.tom);
    assert.ok(session.body.amr.includes('otp'), JSON.stringify(session.body));
  } finally {
    sql(`UPDATE identity.users SET totp_secret = NULL, totp_last_step = NULL WHERE id = '${ids.tom}'`);
  }
});

test('guessing is slowed down: the page says how long to wait, with 429', async () => {
  const b = new Browser();
  const page = await b.get('/oidc/login');
  assertLoginPage(page);
  let throttled;
  for (let i = 0; i < 12 && !throttled; i++) {
    const r = await login(b, page, { username: 'paul.peters', password: `falsch ${i}` });
    if (r.status === 429) throttled = r;
    else assertLoginPage(r);
  }
  assert.ok(throttled, 'no attempt was held back');
  assertLoginPage(throttled, 429);
  assert.match(throttled.text, /Zu viele Versuche. Bitte in \d+ (Sekunden?|Minuten) noch einmal versuchen./);
  assert.match(throttled.headers.get('retry-after'), /^\d+$/);
  assert.equal(b.jar.get('kreide_sso'), undefined);
});

test('the portal signs in without a client and lands on /', async () => {
  const b = new Browser();
  const page = await b.get('/oidc/login?login_hint=lena.schmidt&ui_locales=en');
  assertLoginPage(page);
  assert.match(page.text, /<html lang="en">/);
  assert.equal(field(page.text, 'request'), undefined);
  assert.doesNotMatch(page.text, /to continue to/);
  const r = await login(b, page);
  assert.equal(r.status, 303, r.text);
  assert.equal(r.location, '/');
  assert.ok(b.jar.get('kreide_sso'));
  // and that session serves a client afterwards; Lena allowed the wiki
  // before, in another session: consent belongs to the person
  const params = wikiParams();
  callback(await b.get(authorizeUrl(params)), WIKI_CB, params.state);
});

test('enrollment sets the password and signs in, keeping the pending request', async () => {
  const u = await post('/api/v1/users', {
    username: 'mia.meyer', given_name: 'Mia', family_name: 'Meyer', contexts: [{ school_id: ids.school, role: 'PUPIL' }],
  });
  assert.equal(u.status, 201, u.text);
  const code = await post(`/api/v1/users/${u.json.id}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
  assert.equal(code.status, 201, code.text);

  const b = new Browser();
  const verifier = randomBytes(32).toString('base64url');
  const params = appParams(verifier);
  const page = await b.get(authorizeUrl(params));
  assertLoginPage(page);
  const link = page.text.match(/<a href="(\/oidc\/enroll\?request=[^"]+)">/);
  assert.ok(link, 'the way to enrollment keeps the request');
  const enroll = await b.get(unescapeHtml(link[1]));
  assertPage(enroll, 200);
  assert.equal(field(enroll.text, 'request'), field(page.text, 'request'));
  const form = {
    csrf: field(enroll.text, 'csrf'), request: field(enroll.text, 'request'), username: 'mia.meyer', code: code.json.code,
    new_password: 'mein pferd heisst blitz', new_password2: 'mein pferd heisst blitz!',
  };
  const differ = await b.post('/oidc/enroll', form);
  assertPage(differ, 200);
  assert.match(differ.text, /Die beiden Passwörter sind nicht gleich/);
  const badCode = await b.post('/oidc/enroll', { ...form, code: 'AAAA-AAAA-AAAA', new_password2: form.new_password });
  assertPage(badCode, 200);
  assert.match(badCode.text, /Der Code stimmt nicht/);
  const done = await b.post('/oidc/enroll', { ...form, new_password2: form.new_password });
  const q = callback(done, APP_CB, params.state);
  assert.equal(redeem(clients.app, q.get('code'), APP_CB, verifier).body.claims.sub, u.json.id);
});

test('logout without a hint asks first, then ends the session everywhere', async () => {
  const b = await signedIn('lena.schmidt', 'en');
  const token = b.jar.get('kreide_sso');
  const ask = await b.get('/oidc/logout');
  assertPage(ask, 200);
  assert.match(ask.text, /<h1>Sign out\?<\/h1>/);
  assert.match(ask.text, /<form method="post" action="\/oidc\/logout">/);
  assert.equal(gw('GetSession', { session_token: token }).status, 'OK', 'asking ends nothing');
  // a confirmation without the CSRF token is refused
  const forged = await b.post('/oidc/logout', { csrf: randomBytes(32).toString('base64url') });
  assertPage(forged, 403);
  assert.equal(gw('GetSession', { session_token: token }).status, 'OK');

  const done = await b.post('/oidc/logout', { csrf: field(ask.text, 'csrf') });
  assertPage(done, 200);
  assert.match(done.text, /<h1>Signed out<\/h1>/);
  assert.match(b.setCookie('kreide_sso'), /^kreide_sso=; Path=\/; Max-Age=0; HttpOnly; SameSite=Lax$/);
  assert.equal(b.jar.get('kreide_sso'), undefined);
  assert.equal(gw('GetSession', { session_token: token }).status, 'NOT_FOUND');
  // the old cookie opens nothing any more
  const again = wikiParams({ prompt: 'none' });
  const stale = new Browser();
  stale.jar.set('kreide_sso', token);
  assert.equal(callback(await stale.get(authorizeUrl(again)), WIKI_CB, again.state).get('error'), 'login_required');
});

test('logout returns to a registered post_logout_redirect_uri only', async () => {
  const b = await signedIn();
  const token = b.jar.get('kreide_sso');
  const ask = await b.get(`/oidc/logout?${new URLSearchParams({
    client_id: clients.wiki.client_id, post_logout_redirect_uri: 'https://wiki.example.org/bye', state: 'bye-1',
  })}`);
  assertPage(ask, 200);
  assert.ok(ask.text.includes('„Schulwiki „Am Hang““ möchte die Anmeldung beenden.'), ask.text);
  assert.equal(field(ask.text, 'post_logout_redirect_uri'), 'https://wiki.example.org/bye');
  const form = {
    csrf: field(ask.text, 'csrf'), client_id: field(ask.text, 'client_id'),
    post_logout_redirect_uri: field(ask.text, 'post_logout_redirect_uri'), state: field(ask.text, 'state'),
  };
  const done = await b.post('/oidc/logout', form);
  assert.equal(done.status, 303, done.text);
  assert.equal(done.location, 'https://wiki.example.org/bye?state=bye-1');
  assert.equal(gw('GetSession', { session_token: token }).status, 'NOT_FOUND');

  // not registered, registered for no one, or without a client: a page, no redirect
  const c = await signedIn();
  for (const q of [
    { client_id: clients.wiki.client_id, post_logout_redirect_uri: 'https://evil.example.org/bye' },
    { client_id: clients.wiki.client_id, post_logout_redirect_uri: WIKI_CB },
    { client_id: clients.app.client_id, post_logout_redirect_uri: 'https://wiki.example.org/bye' },
    { post_logout_redirect_uri: 'https://wiki.example.org/bye' },
    { id_token_hint: 'not.a.token', post_logout_redirect_uri: 'https://wiki.example.org/bye' },
  ]) {
    const r = await c.get(`/oidc/logout?${new URLSearchParams(q)}`);
    assertPage(r, 400);
  }
  assert.equal(gw('GetSession', { session_token: c.jar.get('kreide_sso') }).status, 'OK', 'nothing was ended');
  // a cross-site POST comes without the session cookie: the page asks
  const crossSite = new Browser();
  const r = await crossSite.post('/oidc/logout', { client_id: clients.wiki.client_id });
  assertPage(r, 200);
  assert.match(r.text, /action="\/oidc\/logout"/);
});

test('logout with an id_token_hint of the person signed in ends the session at once', async () => {
  const b = await signedIn();
  const token = b.jar.get('kreide_sso');
  const session = gw('GetSession', { session_token: token }).body;
  const now = Math.floor(Date.now() / 1000);
  // long expired, as hints often are
  const hint = idToken({ iss: s.url, sub: ids.lena, aud: clients.wiki.client_id, azp: clients.wiki.client_id,
    iat: now - 7200, exp: now - 6600, sid: session.session_id });
  const r = await b.get(`/oidc/logout?${new URLSearchParams({
    id_token_hint: hint, post_logout_redirect_uri: 'https://wiki.example.org/bye', state: 's-1',
  })}`);
  assert.equal(r.status, 303, r.text);
  assert.equal(r.location, 'https://wiki.example.org/bye?state=s-1');
  assert.match(b.setCookie('kreide_sso'), /Max-Age=0/);
  assert.equal(gw('GetSession', { session_token: token }).status, 'NOT_FOUND');

  // another person's hint does not end Tom's session without asking
  const t = await signedIn('tom.lehrer');
  const ask = await t.get(`/oidc/logout?${new URLSearchParams({ id_token_hint: hint })}`);
  assertPage(ask, 200);
  assert.match(ask.text, /action="\/oidc\/logout"/);
  assert.equal(field(ask.text, 'id_token_hint'), hint);
  assert.equal(gw('GetSession', { session_token: t.jar.get('kreide_sso') }).status, 'OK');

  // hints that are not our ID tokens for that client: a page, nothing ended
  const other = idToken({ iss: s.url, sub: ids.tom, aud: clients.wiki.client_id, exp: now + 600 },
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']));
  const bad = [
    [{ id_token_hint: other }, 'another key'],
    [{ id_token_hint: idToken({ iss: 'https://evil.example.org', sub: ids.tom, aud: clients.wiki.client_id, exp: now + 600 }) },
      'another issuer'],
    [{ id_token_hint: idToken({ iss: s.url, sub: ids.tom, aud: clients.wiki.client_id, exp: now + 600 }),
      client_id: clients.app.client_id }, 'another client'],
    [{ id_token_hint: s.token({ sub: ids.tom }) }, 'an access token'],
  ];
  for (const [q, what] of bad) {
    const x = await t.get(`/oidc/logout?${new URLSearchParams(q)}`);
    assert.equal(x.status, 400, what);
    assert.equal(x.location, null, what);
  }
  assert.equal(gw('GetSession', { session_token: t.jar.get('kreide_sso') }).status, 'OK');
});

test('several accounts in one browser: login_hint picks the account, logout with a hint ends only that one', async () => {
  // Lena signs in, then Tom on the same browser (prompt=login: "add account").
  const b = await signedIn('lena.schmidt');
  const add = await b.get(authorizeUrl(wikiParams({ prompt: 'login', login_hint: 'tom.lehrer' })));
  assertLoginPage(add);
  const next = await login(b, add, { username: 'tom.lehrer' });
  if (next.status === 200) assert.equal((await consent(b, next, 'allow')).status, 303);
  else assert.equal(next.status, 303, next.text);
  const tokens = b.jar.get('kreide_sso').split('.');
  assert.equal(tokens.length, 2, 'both sessions are kept, newest first');
  assert.equal(gw('GetSession', { session_token: tokens[0] }).body.user_id, ids.tom);
  assert.equal(gw('GetSession', { session_token: tokens[1] }).body.user_id, ids.lena);

  // Silent sign-ins answer for the account named, by user name or id; without a hint, the newest.
  const codeFor = async (extra) => {
    const p = wikiParams({ prompt: 'none', ...extra });
    return redeem(clients.wiki, callback(await b.get(authorizeUrl(p)), WIKI_CB, p.state).get('code'), WIKI_CB).body.claims.sub;
  };
  assert.equal(await codeFor({ login_hint: 'lena.schmidt' }), ids.lena);
  assert.equal(await codeFor({ login_hint: ids.tom }), ids.tom);
  assert.equal(await codeFor({}), ids.tom);
  // Someone not signed in here is never answered with another person's session.
  const p = wikiParams({ prompt: 'none', login_hint: 'niemand.hier' });
  const q = callback(await b.get(authorizeUrl(p)), WIKI_CB, p.state);
  assert.equal(q.get('error'), 'login_required');
  assert.equal(q.get('code'), null);

  // A session ended elsewhere is dropped from the cookie on the way.
  assert.equal(gw('EndSession', { session_token: tokens[0] }).status, 'OK');
  assert.equal(await codeFor({ login_hint: 'lena.schmidt' }), ids.lena);
  assert.deepEqual(b.jar.get('kreide_sso').split('.'), [tokens[1]]);

  // Logout with Lena's ID token ends hers only; Tom (signed in again) stays.
  const again = await b.get(authorizeUrl(wikiParams({ prompt: 'login', login_hint: 'tom.lehrer' })));
  const n2 = await login(b, again, { username: 'tom.lehrer' });
  assert.equal(n2.status, 303, n2.text);
  const [tom, lena] = b.jar.get('kreide_sso').split('.');
  assert.equal(lena, tokens[1]);
  const session = gw('GetSession', { session_token: lena }).body;
  const now = Math.floor(Date.now() / 1000);
  const hint = idToken({ iss: s.url, sub: ids.lena, aud: clients.wiki.client_id, iat: now, exp: now + 600, sid: session.session_id });
  const out = await b.get(`/oidc/logout?${new URLSearchParams({ id_token_hint: hint })}`);
  assertPage(out, 200);
  assert.equal(gw('GetSession', { session_token: lena }).status, 'NOT_FOUND');
  assert.equal(gw('GetSession', { session_token: tom }).status, 'OK');
  assert.equal(b.jar.get('kreide_sso'), tom);
  // Logout confirmed on our page without a hint: everybody on this browser.
  const ask = await b.get('/oidc/logout');
  assert.match(ask.text, /action="\/oidc\/logout"/);
  const bye = await b.post('/oidc/logout', { csrf: field(ask.text, 'csrf') });
  assertPage(bye, 200);
  assert.equal(gw('GetSession', { session_token: tom }).status, 'NOT_FOUND');
  assert.equal(b.jar.get('kreide_sso'), undefined);
});
