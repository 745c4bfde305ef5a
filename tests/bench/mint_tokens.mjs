// Refresh tokens for the refresh_token benchmark of `make bench`, each from
// its own authorization code flow, so every chain the load generator runs is
// a grant born the way a relying party's is. Prints one token per line.
//
//   node mint_tokens.mjs oidc-provider BASE CLIENT_ID SECRET REDIRECT_URI COUNT
//   node mint_tokens.mjs kreide BASE CLIENT_ID SECRET REDIRECT_URI COUNT KREIDECTL IDENTITY_URL USERNAME PASSWORD
//
// oidc-provider: each flow goes through its development sign-in and consent
// pages (devInteractions) over HTTP, with prompt=consent (it honours
// offline_access only then, OpenID Connect Core 1.0 section 11), and ends
// with an authorization_code grant at /token.
//
// kreide: the sign-in is identity's StartSession and the code its
// IssueAuthCode, called as the gateway does (`kreidectl rpc --service
// gateway`, which seals the envelope with KREIDE_INTERNAL_KEYS from the
// environment); the code is then redeemed at the gateway's /oidc/token like
// any relying party does. One session serves all COUNT codes.
import { execFileSync } from 'node:child_process';

const [kind, base, clientId, secret, redirectUri, countArg, ...rest] = process.argv.slice(2);
const count = Number(countArg);
if (!['oidc-provider', 'kreide'].includes(kind) || !base || !Number.isInteger(count) || count < 1) {
  console.error('usage: node mint_tokens.mjs oidc-provider|kreide BASE CLIENT_ID SECRET REDIRECT_URI COUNT [...]');
  process.exit(2);
}
const basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const scope = 'openid offline_access';

async function redeem(tokenPath, code) {
  const res = await fetch(new URL(tokenPath, base), {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri }),
  });
  const body = await res.json();
  if (res.status !== 200 || typeof body.refresh_token !== 'string') {
    throw new Error(`${tokenPath}: ${res.status} ${JSON.stringify(body)}`);
  }
  return body.refresh_token;
}

// A cookie jar just good enough for one provider on one host: names map to
// values, a cookie set with an expiry in the past is dropped.
class Jar {
  #cookies = new Map();

  take(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const expired = attrs.some((a) => /^\s*expires=.*1970/i.test(a) || /^\s*max-age=0\s*$/i.test(a));
      if (expired) this.#cookies.delete(name);
      else this.#cookies.set(name, pair.slice(eq + 1).trim());
    }
  }

  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

// Follows redirects by hand (fetch would drop the cookies) until one points
// at the client's redirect URI; `post` is the first request's form body.
async function walk(jar, url, post) {
  let next = new URL(url, base);
  let body = post;
  for (let hop = 0; hop < 10; hop++) {
    const res = await fetch(next, {
      method: body ? 'POST' : 'GET',
      redirect: 'manual',
      headers: { cookie: jar.header(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: body ? new URLSearchParams(body) : undefined,
    });
    jar.take(res);
    body = undefined;
    const loc = res.headers.get('location');
    if (res.status < 300 || res.status > 399 || !loc) {
      return { url: next, status: res.status, text: await res.text() };
    }
    await res.arrayBuffer();
    next = new URL(loc, next);
    if (next.href.startsWith(redirectUri)) return { url: next, status: res.status };
  }
  throw new Error('too many redirects');
}

async function mintOidcProvider(i) {
  const jar = new Jar();
  const auth = new URL('/auth', base);
  auth.search = new URLSearchParams({
    client_id: clientId, response_type: 'code', redirect_uri: redirectUri, scope, prompt: 'consent', state: `s${i}`,
  });
  // The login page, then its form, then the consent page and its form.
  let page = await walk(jar, auth);
  for (const prompt of ['login', 'consent']) {
    if (page.status !== 200 || !page.url.pathname.startsWith('/interaction/')) {
      throw new Error(`expected the ${prompt} page, got ${page.status} ${page.url}`);
    }
    const form = prompt === 'login' ? { prompt, login: `bench-${i}`, password: 'unused' } : { prompt };
    page = await walk(jar, page.url.pathname, form);
  }
  const code = page.url.searchParams.get('code');
  if (!code || !page.url.href.startsWith(redirectUri)) throw new Error(`no code: ${page.status} ${page.url}`);
  return redeem('/token', code);
}

function rpc(kreidectl, identityUrl, method, body) {
  const out = execFileSync(kreidectl, ['rpc', identityUrl, method, JSON.stringify(body), '--service', 'gateway'], {
    encoding: 'utf8',
  });
  const reply = JSON.parse(out);
  if (reply.status !== 'OK') throw new Error(`${method}: ${out}`);
  return reply.body;
}

async function mintKreide() {
  const [kreidectl, identityUrl, username, password] = rest;
  if (!kreidectl || !identityUrl || !username || !password) {
    throw new Error('kreide needs KREIDECTL IDENTITY_URL USERNAME PASSWORD');
  }
  const session = rpc(kreidectl, identityUrl, 'kreide.identity.Identity/StartSession', {
    username, password, client_address: '127.0.0.1',
  });
  const tokens = [];
  for (let i = 0; i < count; i++) {
    const { code } = rpc(kreidectl, identityUrl, 'kreide.identity.Identity/IssueAuthCode', {
      session_token: session.session_token, client_id: clientId, redirect_uri: redirectUri, scope,
      nonce: `n${i}`, consent_given: true,
    });
    tokens.push(await redeem('/oidc/token', code));
  }
  return tokens;
}

try {
  let tokens;
  if (kind === 'kreide') {
    tokens = await mintKreide();
  } else {
    tokens = [];
    for (let i = 0; i < count; i++) tokens.push(await mintOidcProvider(i));
  }
  process.stdout.write(`${tokens.join('\n')}\n`);
} catch (err) {
  console.error(`mint_tokens: ${err.message}`);
  process.exit(1);
}
