// Signing in: the portal is a public OpenID Connect client of Kreide's own
// provider (authorization code flow with PKCE S256, RFC 7636; OpenID Connect
// Core 1.0 section 3.1), and a device may hold several accounts.
//
// What is kept where (docs/portal.md):
//   memory only      access and ID tokens, per account (lost on reload)
//   localStorage     per account only sub, user name and display name, and
//                    which account is active: nothing secret, nothing else
//   sessionStorage   the pending request of one sign-in (state, nonce, PKCE
//                    verifier), removed when the answer comes back
// After a reload the tokens are got again with prompt=none and the
// account's login_hint: the single sign-on session (an httpOnly cookie the
// portal never sees) answers without showing a page.
import { signal } from './signal.js';
import { lang } from './i18n.js';

const ACCOUNTS_KEY = 'kreide.accounts';
const ACTIVE_KEY = 'kreide.active';
const PENDING_KEY = 'kreide.pending';
const SILENT_FAILED_KEY = 'kreide.silent_failed';
export const CALLBACK_PATH = '/auth/callback';
const SCOPE = 'openid profile school';
// Renew a little before the access token expires.
const EXPIRY_MARGIN_S = 20;

let config = null; // { client_id }
let discovery = null;
const tokens = new Map(); // sub -> { accessToken, idToken, claims, expiresAt }

// The signed-in account the app shows: { account, claims } or null.
export const session = signal(null);

export class AuthError extends Error {
  constructor(kind, detail = {}) {
    super(kind);
    this.kind = kind; // not_configured, stale, denied, failed, login_required, mismatch, redirecting
    Object.assign(this, detail);
  }
}

// ------------------------------------------------------------ storage

function readJSON(storage, key, fallback) {
  try {
    const v = JSON.parse(storage.getItem(key));
    return v ?? fallback;
  } catch {
    return fallback;
  }
}

function cleanAccount(a) {
  // Only these three fields are ever kept on the device.
  return { sub: String(a.sub), username: String(a.username || ''), name: String(a.name || a.username || '') };
}

export function accounts() {
  const list = readJSON(localStorage, ACCOUNTS_KEY, []);
  return Array.isArray(list) ? list.filter((a) => a && typeof a.sub === 'string').map(cleanAccount) : [];
}

function saveAccounts(list) {
  localStorage.setItem(ACCOUNTS_KEY, JSON.stringify(list.map(cleanAccount)));
}

export function activeAccount() {
  const sub = localStorage.getItem(ACTIVE_KEY);
  return accounts().find((a) => a.sub === sub) || null;
}

function setActive(sub) {
  if (sub) localStorage.setItem(ACTIVE_KEY, sub);
  else localStorage.removeItem(ACTIVE_KEY);
  publish();
}

function publish() {
  const account = activeAccount();
  const tok = account && tokens.get(account.sub);
  session.set(account && tok ? { account, claims: tok.claims } : null);
}

// ------------------------------------------------------------ provider

export async function loadProvider() {
  if (config && discovery) return;
  let res;
  try {
    res = await fetch('/portal-config.json', { cache: 'no-store' });
  } catch {
    throw new AuthError('network');
  }
  const c = res.ok ? await res.json().catch(() => null) : null;
  if (!c || typeof c.client_id !== 'string' || !c.client_id) throw new AuthError('not_configured');
  const d = await fetch('/.well-known/openid-configuration').then((r) => (r.ok ? r.json() : null)).catch(() => null);
  if (!d || !d.authorization_endpoint || !d.token_endpoint) throw new AuthError('not_configured');
  config = c;
  discovery = d;
}

function redirectUri() {
  return `${location.origin}${CALLBACK_PATH}`;
}

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n = 32) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(digest));
}

function decodeJwtPayload(jwt) {
  const part = String(jwt).split('.')[1];
  if (!part) throw new AuthError('failed');
  const bin = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// Sends the browser to the provider. `prompt`: 'none' (silent, with the
// account's login_hint), 'login' (always the sign-in page) or undefined.
// `expectSub`: the account a silent sign-in is for.
export async function signIn({ prompt, loginHint, expectSub, returnTo = '/', intent = '' } = {}) {
  await loadProvider();
  const verifier = randomString(32);
  const pending = {
    state: randomString(16),
    nonce: randomString(16),
    verifier,
    prompt: prompt || '',
    hint: loginHint || '',
    expectSub: expectSub || '',
    returnTo: safeReturn(returnTo),
    intent,
    at: Date.now(),
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: SCOPE,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await s256(verifier),
    code_challenge_method: 'S256',
    ui_locales: lang.get(),
  });
  if (prompt) q.set('prompt', prompt);
  if (loginHint) q.set('login_hint', loginHint);
  location.assign(`${discovery.authorization_endpoint}?${q}`);
  throw new AuthError('redirecting');
}

// Only paths of this portal, never another site or a sign-in endpoint.
function safeReturn(p) {
  return typeof p === 'string' && /^\/(?!\/)/.test(p) && !p.startsWith(CALLBACK_PATH) ? p : '/';
}

// Handles the provider's answer at /auth/callback; returns where to go on.
export async function completeSignIn(search) {
  const params = new URLSearchParams(search);
  const pending = readJSON(sessionStorage, PENDING_KEY, null);
  sessionStorage.removeItem(PENDING_KEY); // one answer per request
  if (!pending || !params.get('state') || params.get('state') !== pending.state) throw new AuthError('stale');
  await loadProvider();
  // RFC 9207: the answer must come from our provider.
  if (params.has('iss') && params.get('iss') !== discovery.issuer) throw new AuthError('failed');
  const account = accounts().find((a) => a.sub === pending.expectSub) || null;
  const error = params.get('error');
  if (pending.intent === 'signout' && pending.expectSub && error) {
    // No session of that account here: forgetting it on this device is all.
    forget(pending.expectSub);
    return pending.returnTo;
  }
  if (error) {
    if (pending.prompt === 'none' && ['login_required', 'interaction_required', 'consent_required', 'account_selection_required'].includes(error)) {
      if (pending.expectSub) sessionStorage.setItem(SILENT_FAILED_KEY, pending.expectSub);
      throw new AuthError('login_required', { account, returnTo: pending.returnTo });
    }
    throw new AuthError(error === 'access_denied' ? 'denied' : 'failed', { error });
  }
  const code = params.get('code');
  if (!code) throw new AuthError('failed');

  let res;
  try {
    res = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirectUri(),
        client_id: config.client_id,
        code_verifier: pending.verifier,
      }),
      cache: 'no-store',
    });
  } catch {
    throw new AuthError('failed', { error: 'network' });
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.access_token || !body.id_token) throw new AuthError('failed', { error: body.error || `HTTP ${res.status}` });

  // The ID token came straight from the token endpoint of this origin, so
  // TLS vouches for its signature (OpenID Connect Core 1.0 section
  // 3.1.3.7, item 6); its claims are checked here.
  const claims = decodeJwtPayload(body.id_token);
  const now = Date.now() / 1000;
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== discovery.issuer || !aud.includes(config.client_id) || claims.nonce !== pending.nonce ||
      !(claims.exp > now) || typeof claims.sub !== 'string') {
    throw new AuthError('failed', { error: 'id_token' });
  }
  // A silent sign-in for one account that the provider answered for
  // another (the device's single sign-on session belongs to someone
  // else): these tokens are not used at all.
  if (pending.prompt === 'none' && pending.expectSub && claims.sub !== pending.expectSub) {
    revoke(body.access_token);
    if (pending.intent === 'signout') {
      // The session here is someone else's: the account has none to end.
      forget(pending.expectSub);
      return pending.returnTo;
    }
    throw new AuthError('mismatch', { account, returnTo: pending.returnTo });
  }
  tokens.set(claims.sub, {
    accessToken: body.access_token,
    idToken: body.id_token,
    claims,
    expiresAt: now + (Number(body.expires_in) || 300),
  });
  const list = accounts().filter((a) => a.sub !== claims.sub);
  list.push({ sub: claims.sub, username: claims.preferred_username || '', name: claims.name || claims.preferred_username || '' });
  saveAccounts(list);
  sessionStorage.removeItem(SILENT_FAILED_KEY);
  if (pending.intent === 'signout') {
    await signOut(claims.sub); // now with its ID token: ends its session
    return pending.returnTo;
  }
  setActive(claims.sub);
  return pending.returnTo;
}

// At start (any page but the callback): the active account's tokens are
// only in memory, so after a reload they are fetched again silently, once
// per tab; a failed try shows the sign-in start with that account offered.
export async function resume(returnTo) {
  publish();
  const account = activeAccount();
  if (!account || tokens.has(account.sub)) return;
  if (sessionStorage.getItem(SILENT_FAILED_KEY) === account.sub) return;
  await signIn({ prompt: 'none', loginHint: account.username, expectSub: account.sub, returnTo });
}

export async function switchTo(sub, returnTo = '/') {
  const account = accounts().find((a) => a.sub === sub);
  if (!account) return;
  const tok = tokens.get(sub);
  if (tok && tok.expiresAt - EXPIRY_MARGIN_S > Date.now() / 1000) {
    setActive(sub);
    return;
  }
  sessionStorage.removeItem(SILENT_FAILED_KEY);
  localStorage.setItem(ACTIVE_KEY, sub);
  await signIn({ prompt: 'none', loginHint: account.username, expectSub: sub, returnTo });
}

export function addAccount() {
  return signIn({ prompt: 'login', returnTo: '/' });
}

function revoke(token) {
  if (!discovery || !discovery.revocation_endpoint || !token) return Promise.resolve();
  return fetch(discovery.revocation_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token', client_id: config.client_id }),
    keepalive: true,
  }).catch(() => {});
}

// Removes an account from this device: tokens, entry, active mark.
function forget(sub) {
  tokens.delete(sub);
  saveAccounts(accounts().filter((a) => a.sub !== sub));
  if (localStorage.getItem(ACTIVE_KEY) === sub) localStorage.removeItem(ACTIVE_KEY);
  if (sessionStorage.getItem(SILENT_FAILED_KEY) === sub) sessionStorage.removeItem(SILENT_FAILED_KEY);
  publish();
}

// Signs one account out of this device: its access token is revoked, the
// account forgotten, and its single sign-on session ended at the provider
// (RP-Initiated Logout 1.0, with its ID token as id_token_hint), which
// returns to the start page. Without its tokens in memory (after a
// reload) a silent sign-in for it comes first: it tells whether this
// device holds a session of that account at all, and brings the hint.
export async function signOut(sub) {
  await loadProvider();
  const account = accounts().find((a) => a.sub === sub);
  const tok = tokens.get(sub);
  if (!tok && account) {
    await signIn({ prompt: 'none', loginHint: account.username, expectSub: sub, returnTo: '/accounts', intent: 'signout' });
    return;
  }
  forget(sub);
  if (tok) await revoke(tok.accessToken);
  if (tok && discovery.end_session_endpoint) {
    const q = new URLSearchParams({
      client_id: config.client_id,
      id_token_hint: tok.idToken,
      post_logout_redirect_uri: `${location.origin}/`,
      ui_locales: lang.get(),
    });
    location.assign(`${discovery.end_session_endpoint}?${q}`);
    throw new AuthError('redirecting');
  }
}

// The active account's access token, renewing it (a silent round trip to
// the provider that comes back to `returnTo`) when it is about to expire.
export async function accessToken(returnTo) {
  const account = activeAccount();
  if (!account) throw new AuthError('login_required');
  const tok = tokens.get(account.sub);
  if (tok && tok.expiresAt - EXPIRY_MARGIN_S > Date.now() / 1000) return tok.accessToken;
  tokens.delete(account.sub);
  sessionStorage.removeItem(SILENT_FAILED_KEY);
  return signIn({ prompt: 'none', loginHint: account.username, expectSub: account.sub, returnTo });
}

export function expire(sub) {
  tokens.delete(sub);
}

export function idTokenClaims() {
  const s = session.get();
  return s ? s.claims : null;
}
